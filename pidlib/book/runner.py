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

__all__ = ["CHAPTER_DIR", "chapters", "execute_chapter", "stage_log", "stage_table"]

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
    DataFrame (empty when nothing has run)."""
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
        for record in read_stages(Path(build) / "stages" / f"{chapter}.jsonl"):
            per[record["stage"]] = per.get(record["stage"], 0.0) + record["seconds"]
        per["other"] = max(0.0, t["seconds"] - sum(per.values()))
        per["chapter"] = t["seconds"]
        rows[chapter] = per
    table = pd.DataFrame.from_dict(rows, orient="index").fillna(0.0)
    if table.empty:
        return table
    first = [c for c in table.columns if c not in ("other", "chapter")]
    return table[sorted(first) + ["other", "chapter"]].round(1)
