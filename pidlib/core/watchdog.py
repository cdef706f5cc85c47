"""Worker processes that end with their parent: a daemon thread polls it, exits when it dies."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

__all__ = ["exit_with_parent", "local_workers"]


def _parent_alive(parent: int, direct: bool) -> bool:
    if direct:  # a child is re-parented when its parent dies: immune to pid reuse
        return os.getppid() == parent
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, but another user's
        return True
    return True


def exit_with_parent(parent: int, interval: float = 0.5) -> None:
    """Start a daemon thread that ends this process (``os._exit(1)``) within ``interval``
    seconds of the process ``parent`` ending (``kill -9`` included), even mid-computation.

    A joblib/loky worker initializer: orphaned workers would otherwise finish their jobs,
    writing cache entries, and idle for minutes holding their memory. POSIX only (a no-op
    on Windows, where loky ends its workers itself).
    """
    if os.name == "nt":
        return
    direct = os.getppid() == parent

    def watch() -> None:
        while _parent_alive(parent, direct):
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="pidlib-exit-with-parent", daemon=True).start()


@contextlib.contextmanager
def local_workers(n_jobs: int, backend: str = "loky") -> Iterator[None]:
    """joblib's configuration for ``joblib.Parallel()`` inside the block: ``n_jobs`` local
    workers (``backend`` "loky", "threading" or "sequential"); loky workers run
    :func:`exit_with_parent` for this process, so none outlives it."""
    import joblib

    watch = (
        {"initializer": exit_with_parent, "initargs": (os.getpid(),)} if backend == "loky" else {}
    )
    n = 1 if backend == "sequential" else n_jobs
    with joblib.parallel_config(backend=backend, n_jobs=n, **watch):
        yield
