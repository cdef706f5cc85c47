"""joblib backends for the PID stage: local processes, threads, or a Dask / Ray cluster."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from pidlib.config.profiles import ParallelSpec
from pidlib.core.watchdog import local_workers

__all__ = ["backend", "warm_workers"]


@contextlib.contextmanager
def backend(parallel: ParallelSpec) -> Iterator[None]:
    """joblib's backend for ``parallel``; dask / ray connect to ``parallel.address`` (or start a
    local cluster), and need their packages. Local (loky) workers watch this process and exit
    when it dies (:func:`~pidlib.core.watchdog.local_workers`)."""
    import joblib

    parallel.validate()
    name = parallel.backend
    if name == "dask":
        try:
            from dask.distributed import Client
        except ImportError:
            raise ValueError("parallel.backend 'dask' needs dask.distributed: "
                             "pip install 'dask[distributed]'") from None  # fmt: skip
        with Client(parallel.address) if parallel.address else Client(processes=True) as _client:
            with joblib.parallel_config(backend="dask", n_jobs=parallel.n_jobs):
                yield
        return
    if name == "ray":
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError:
            raise ValueError(
                "parallel.backend 'ray' needs ray: pip install 'ray[default]'"
            ) from None
        register_ray()
        ray.init(address=parallel.address, ignore_reinit_error=True)
        with joblib.parallel_config(backend="ray", n_jobs=parallel.n_jobs):
            yield
        return
    # local worker processes end with this one, even after kill -9
    with local_workers(parallel.n_jobs, name):
        yield


#: The warm-up calls, each read to its end by a daemon thread (an unread joblib generator
#: warns at exit that its results went unused).
_WARMING: list = []


def _import_worker(models: bool) -> int:
    """A worker's first call: import what the jobs need (torch, PID Flow; with ``models`` the
    model code, transformers included), so that the first real job finds it loaded."""
    import os

    import pidlib.pid.flow  # noqa: F401  (torch too)

    if models:
        import pidlib.models.load  # noqa: F401
    return os.getpid()


def warm_workers(parallel: ParallelSpec, *, models: bool = False) -> None:
    """Start ``parallel``'s local worker processes now, in the background, each importing
    what the jobs need (:func:`_import_worker`); returns at once. Feature extraction calls it
    when features are missing (a cold chapter), so that the workers start while the chapter's
    own process extracts: a fresh worker costs seconds (beside a busy process, about as much
    as the smoke book's PID jobs), and joblib reuses the same workers for every later call
    with these settings. Not on a warm read, where the workers would only compete with it
    (9 s more for a warm cpu book, 73 against 65 s). Does nothing for other backends or one
    worker."""
    import joblib

    parallel.validate()
    if parallel.backend != "loky" or parallel.n_jobs == 1:
        return
    with local_workers(parallel.n_jobs, "loky"):
        n = joblib.effective_n_jobs(parallel.n_jobs)
        calls = (joblib.delayed(_import_worker)(models) for _ in range(n))
        results = joblib.Parallel(return_as="generator_unordered")(calls)
    pids: list[int] = []
    _WARMING.append(pids)
    threading.Thread(target=pids.extend, args=(results,), daemon=True).start()
