"""The one chapter runner: a jupytext chapter executed by papermill with a profile and parameters.

``scripts/build_book.py`` and the notebook tests both call :func:`execute_chapter`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pidlib.core.paths import REPO_ROOT
from pidlib.core.stages import ENV as STAGES_ENV

__all__ = [
    "CHAPTER_DIR", "BUILDS_FILE", "SIDE_LANE", "LAST", "chapters", "lanes", "execute_chapter",
    "stage_log", "stage_table", "cache_state", "record_build", "build_history",
]  # fmt: skip

#: Where the chapters' jupytext sources live.
CHAPTER_DIR = REPO_ROOT / "notebooks"

_KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def chapters(only: list[str] | None = None) -> list[Path]:
    """The chapter sources in book order (``NN_name.py``), or those whose stems are in ``only``."""
    sources = sorted(CHAPTER_DIR.glob("[0-9]*.py"))
    if only:
        unknown = sorted(set(only) - {s.stem for s in sources})
        if unknown:
            raise ValueError(
                f"no such chapter: {', '.join(unknown)} (have {[s.stem for s in sources]})"
            )
        sources = [s for s in sources if s.stem in only]
    return sources


#: Chapters that read no model, feature or result of another chapter and share no cache entry
#: with them (the data gallery, the Methods chapter's canonical systems, the training report):
#: a build runs them in a second process beside the model chapters, whose single-threaded
#: stretches (kernel start, forwards, tables, charts) leave a core idle. Each chapter still
#: pins its own threads and workers.
SIDE_LANE = ("00_data_and_models", "01_methods", "98_training")
#: Chapters that read every other chapter's output (the recorded claims, the stage logs and
#: timings): run last, after both lanes.
LAST = ("90_scorecard", "99_reproducibility")


def lanes(sources: list[Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """``sources`` (book order) split into the main lane, the side lane (:data:`SIDE_LANE`),
    which may run beside the main lane, and the chapters run after both (:data:`LAST`)."""
    side = [s for s in sources if s.stem in SIDE_LANE]
    last = [s for s in sources if s.stem in LAST]
    return [s for s in sources if s not in side and s not in last], side, last


def execute_chapter(
    src: Path, out: Path, parameters: Mapping[str, Any], *, figures: Path | None = None
) -> float:
    """Convert ``src`` to a notebook next to ``out`` (``src/<stem>.ipynb``), execute it with
    papermill in the repository root with ``parameters`` injected, write the executed notebook to
    ``out``; returns the wall-clock seconds. Figures go to ``figures`` (``$PIDBOOK_FIGURES``).
    Any error in any cell stops it (``PapermillExecutionError``)."""
    import jupytext
    import papermill

    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = dict(_KERNEL)
    raw = out.parent / "src" / f"{Path(src).stem}.ipynb"
    raw.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(nb, raw)
    before = os.environ.get("PIDBOOK_FIGURES")
    if figures is not None:
        os.environ["PIDBOOK_FIGURES"] = str(figures)
    stages = stage_log(out)
    stages.parent.mkdir(parents=True, exist_ok=True)
    stages.write_text("")  # this run's stages replace the last run's
    before_stages = os.environ.get(STAGES_ENV)
    os.environ[STAGES_ENV] = str(stages)
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(str(raw), str(out), parameters=dict(parameters),
                                   cwd=str(REPO_ROOT), kernel_name="python3",
                                   progress_bar=False, log_output=False)  # fmt: skip
    finally:
        for name, value in (("PIDBOOK_FIGURES", before), (STAGES_ENV, before_stages)):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return time.perf_counter() - t0


def stage_log(executed: Path) -> Path:
    """The stage log (:mod:`pidlib.core.stages`) of the chapter executed to ``executed``:
    ``stages/<stem>.jsonl`` beside it."""
    return Path(executed).parent / "stages" / f"{Path(executed).stem}.jsonl"


def stage_table(build: Path):
    """Seconds per chapter (rows) and stage (columns) of the last execution of each chapter in
    the build folder ``build``, from the stage logs and ``timings.json``; ``other`` is what no
    stage covers (kernel start, tables, charts, uncached cells) and ``chapter`` the total. A
    stage run inside another (model loading inside feature extraction) has its own column and
    is part of the enclosing one's seconds, counted once. A DataFrame (empty when nothing has
    run)."""
    import json

    import pandas as pd

    from pidlib.core.stages import read_stages

    timings_file = Path(build) / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    rows = {}
    for chapter, t in sorted(timings.items()):
        if not isinstance(t, dict) or "seconds" not in t:
            continue
        per: dict[str, float] = {}
        covered = 0.0
        for record in read_stages(Path(build) / "stages" / f"{chapter}.jsonl"):
            per[record["stage"]] = per.get(record["stage"], 0.0) + record["seconds"]
            covered += 0.0 if record.get("within") else record["seconds"]
        per["other"] = max(0.0, t["seconds"] - covered)
        per["chapter"] = t["seconds"]
        rows[chapter] = per
    table = pd.DataFrame.from_dict(rows, orient="index").fillna(0.0)
    if table.empty:
        return table
    first = [c for c in table.columns if c not in ("other", "chapter")]
    return table[sorted(first) + ["other", "chapter"]].round(1)


#: One line per build of a profile (``build/<profile>/builds.jsonl``), newest last.
BUILDS_FILE = "builds.jsonl"


def cache_state(root: Path) -> dict[str, Any]:
    """How full the result cache ``root`` is when a build starts: ``entries`` (result entries
    over every kind) and ``cache``: "cold" (none: every result is computed) or "warm"."""
    kinds = [k for k in root.iterdir() if k.is_dir()] if root.is_dir() else []
    entries = sum(1 for kind in kinds for e in kind.iterdir() if not e.name.startswith("."))
    return {"cache": "warm" if entries else "cold", "entries": entries}


def record_build(build: Path, record: Mapping[str, Any]) -> None:
    """Append one build's ``record`` (chapter seconds, HTML seconds, cache state, commit) to
    ``build/<profile>/builds.jsonl``: the history ``make bench`` reads cold and warm times from."""
    import json

    build.mkdir(parents=True, exist_ok=True)
    with (build / BUILDS_FILE).open("a") as f:
        f.write(json.dumps(dict(record), default=str) + "\n")


def build_history(build: Path) -> list[dict[str, Any]]:
    """The builds :func:`record_build` recorded for a profile, oldest first (unreadable lines,
    e.g. from an interrupted write, are skipped)."""
    import json

    path = Path(build) / BUILDS_FILE
    out = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("chapters"), dict):
            out.append(rec)
    return out
