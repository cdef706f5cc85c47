"""joblib backends for the PID stage: local processes, threads, or a Dask / Ray cluster."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pidlib.config.profiles import ParallelSpec
from pidlib.core.watchdog import local_workers

__all__ = ["backend"]


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
