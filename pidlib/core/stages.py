"""Where a chapter's time goes: named stages (feature extraction, layer-wise PID jobs, cached
experiments, knockout forwards) timed where they run and appended, one JSON line each, to the
file that ``$PIDBOOK_STAGES`` names; the book's runner sets it per chapter. Nothing is written
when it is unset (tests, interactive use)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["ENV", "stage", "read_stages"]

#: The environment variable naming the stage log of the chapter that is running.
ENV = "PIDBOOK_STAGES"


#: The stages open in this process, outermost first.
_OPEN: list[str] = []


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the block (wall clock and this process's CPU) as stage ``name``; stages may nest,
    and a nested stage's time also counts in the enclosing one: its record names that stage
    (``"within"``), so that a chapter's time is not counted twice."""
    t0, c0 = time.perf_counter(), time.process_time()
    within = _OPEN[-1] if _OPEN else None
    _OPEN.append(name)
    try:
        yield
    finally:
        _OPEN.pop()
        path = os.environ.get(ENV)
        if path:
            record = {"stage": name, "seconds": round(time.perf_counter() - t0, 3),
                      "cpu_seconds": round(time.process_time() - c0, 3),
                      **({"within": within} if within else {})}  # fmt: skip
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")


def read_stages(path: str | Path) -> list[dict]:
    """The records of one stage log (``[]`` when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
