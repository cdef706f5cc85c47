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

__all__ = ["CHAPTER_DIR", "chapters", "execute_chapter"]

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
    t0 = time.perf_counter()
    try:
        papermill.execute_notebook(str(raw), str(out), parameters=dict(parameters),
                                   cwd=str(REPO_ROOT), kernel_name="python3",
                                   progress_bar=False, log_output=False)  # fmt: skip
    finally:
        if before is None:
            os.environ.pop("PIDBOOK_FIGURES", None)
        else:
            os.environ["PIDBOOK_FIGURES"] = before
    return time.perf_counter() - t0
