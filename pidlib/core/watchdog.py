"""Worker processes that end with their parent: a daemon thread polls it, exits when it dies."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

__all__ = ["LEAK_BYTES", "exit_with_parent", "local_workers"]

#: Growth of a worker's memory after its first call above which loky restarts it as leaking
#: (its default is 300 MB). Workers keep the models they loaded for a chapter's later calls on
#: purpose; measured from a light first call (a warm-up, or the Methods chapter's small BROJA
#: check), that alone reached the default and restarted workers mid-chapter with jobs pending,
#: losing their models, warning in the chapter's log and doubling a stage's time.
LEAK_BYTES = 2**31


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
    on Windows, where loky ends its workers itself). It also raises loky's memory-leak
    threshold in the worker to :data:`LEAK_BYTES`.
    """
    if os.name == "nt":
        return
    direct = os.getppid() == parent
    with contextlib.suppress(ImportError):  # a private loky setting, where it exists
        from joblib.externals.loky import process_executor

        if hasattr(process_executor, "_MAX_MEMORY_LEAK_SIZE"):
            limit = process_executor._MAX_MEMORY_LEAK_SIZE
            process_executor._MAX_MEMORY_LEAK_SIZE = max(limit, LEAK_BYTES)

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
