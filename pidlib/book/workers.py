"""Model work of a chapter (extraction, knockout forwards, sweeps) on a CPU profile's local workers,
each worker loading a model once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pidlib.config.profiles import Profile
from pidlib.core.threads import pinned_threads
from pidlib.core.watchdog import local_workers
from pidlib.models.load import load_model
from pidlib.models.loaded import LoadedModel

__all__ = ["MIN_FORWARDS", "ModelCall", "run_model_calls"]

#: ``(model name, function, positional arguments, keyword arguments)``: the call
#: ``function(model, *args, **kwargs)`` with the model loaded under the profile's settings.
ModelCall = tuple[str, Callable[..., Any], tuple, dict]

#: Models loaded in a worker process by :func:`_in_worker`, by (name, dtype).
_WORKER_MODELS: dict[tuple[str, str], LoadedModel] = {}


def _in_worker(name: str, dtype: str, threads: int, fn: Callable, args: tuple, kw: dict) -> Any:
    """One call in a CPU worker process, on ``threads`` threads (its model loaded once)."""
    with pinned_threads(threads):
        if (name, dtype) not in _WORKER_MODELS:
            _WORKER_MODELS[name, dtype] = load_model(name, dtype=dtype, device="cpu")
        return fn(_WORKER_MODELS[name, dtype], *args, **kw)


#: Fewest question forwards (over all calls) worth worker processes: a fresh worker imports
#: torch and loads its models, 5-20 s beside a busy process, about the cost of 2,000 forwards of
#: a tiny model here (the smoke book's 1,080 extraction forwards took 19 s on fresh workers).
MIN_FORWARDS = 2000


def run_model_calls(
    profile: Profile,
    calls: Sequence[ModelCall],
    local: Callable[[str], LoadedModel],
    forwards: int,
) -> list[Any]:
    """The results of ``calls`` (:data:`ModelCall`), in order; ``forwards``: about how many
    question forwards they make in all.

    On a CPU profile with local workers (``parallel.backend`` not "sequential"), with more than
    one call and at least :data:`MIN_FORWARDS` forwards, they run on ``parallel.n_jobs`` worker
    processes at ``parallel.threads`` threads each, every worker loading a model the first time
    a call needs it: the chapter's own process would run them one after another while the
    workers idle. Otherwise (a GPU, one call, little work) they run here in order, with the
    model from ``local(name)``, on ``parallel.threads`` threads. Functions and arguments must
    pickle (module-level functions, plain data).
    """
    par = profile.parallel
    big = len(calls) > 1 and forwards >= MIN_FORWARDS
    if big and profile.device == "cpu" and par.backend != "sequential":
        import joblib

        job = joblib.delayed(_in_worker)
        todo = [job(name, profile.dtype, par.threads, fn, args, kw) for name, fn, args, kw in calls]
        with local_workers(min(par.n_jobs, len(calls)) if par.n_jobs > 0 else par.n_jobs):
            return list(joblib.Parallel()(todo))
    with pinned_threads(par.threads):
        return [fn(local(name), *args, **kw) for name, fn, args, kw in calls]
