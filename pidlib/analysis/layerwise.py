"""Layer-wise PID of I(Y; V, L) per (model, task, layer): parallel through joblib, cached, tidy."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pidlib.analysis.fits import CachedFits
from pidlib.analysis.parallel import backend
from pidlib.config.profiles import ParallelSpec, PIDSpec
from pidlib.core.cache import ArrayCache, cache_key
from pidlib.core.stages import stage
from pidlib.core.threads import one_thread
from pidlib.extract.features import Features
from pidlib.pid.result import ATOMS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "CODE", "job_seed", "layerwise_pid", "check_intervals", "notes_of",
           "warn_once"]  # fmt: skip

#: Columns of a layer-wise table: ``value`` in bits; ``depth`` = layer / n_layers (0 = embeddings,
#: 1 = last layer); ``lo`` / ``hi``: 95% interval (NaN without one); ``dims_*``: the PCA
#: dimensions kept for V, L and Y; ``seed``: the job's seed; ``no_interval``: True where an
#: interval was asked for but the rows were too few for one (the estimate's ``info["interval"]``
#: says why): such an estimate cannot pass an information floor.
COLUMNS: tuple[str, ...] = (
    "model", "task", "layer", "n_layers", "depth", "measure", "atom", "value", "lo", "hi", "n",
    "dims_1", "dims_2", "dims_y", "seed", "no_interval",
)  # fmt: skip

_FOUR = ATOMS[:4]
#: Code whose source versions every cached job (plus the estimator's own module).
CODE: tuple[str, ...] = ("pidlib.analysis.layerwise", "pidlib.pid")
_KIND = "layerwise-pid"


def job_seed(seed: int, model: str, task: str, layer: int) -> int:
    """A 31-bit seed derived from (seed, model, task, layer) alone: the same in every worker,
    whatever the schedule, so parallel and serial runs give identical numbers."""
    digest = hashlib.sha256(f"{int(seed)}|{model}|{task}|{int(layer)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _estimator_code(estimator: Callable) -> tuple[str, tuple[str, ...]]:
    """The estimator's name and the modules whose source versions the cache key."""
    module = getattr(estimator, "__module__", None) or "?"
    name = f"{module}.{getattr(estimator, '__qualname__', repr(estimator))}"
    spec = importlib.util.find_spec(module) if module not in ("?", "__main__") else None
    return name, (*CODE, module) if spec is not None and spec.origin else CODE


def _run_job(
    x1: np.ndarray, x2: np.ndarray, y: np.ndarray, seed: int, spec: dict, estimator: Callable,
    extra: Mapping[str, Any], label: str, fit_on: tuple | None = None,
    fits: CachedFits | None = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """One (model, task, layer): the PID of each measure as arrays (runs in a worker).

    Torch and BLAS are held to one thread here, in workers and in a serial run alike, so that
    results do not depend on where the job ran. ``fits``: where PID Flow keeps its fitted maps
    (for the knockout's paired differences, which refit the same clean folds).
    """
    if fit_on is not None:
        extra = {**extra, "fit_on": fit_on}
    if fits is not None:
        extra = {**extra, "fit_store": fits}
    try:
        with one_thread(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = estimator(
                x1, x2, y, measure=tuple(spec["measures"]), seed=seed,
                **{k: v for k, v in spec.items() if k != "measures"}, **extra,
            )  # fmt: skip
    except (ValueError, RuntimeError) as err:  # name the job that failed
        raise type(err)(f"{label}: {err}") from err
    if not isinstance(out, Mapping):
        out = {spec["measures"][0]: out}
    values, lo, hi, dims, missing = [], [], [], [], []
    for m in spec["measures"]:
        pid = out[m]
        missing.append(bool((pid.info or {}).get("interval")))
        ci = pid.ci or {}
        values.append([getattr(pid, a) for a in ATOMS])
        lo.append([ci.get(a, (math.nan, math.nan))[0] for a in ATOMS])
        hi.append([ci.get(a, (math.nan, math.nan))[1] for a in ATOMS])
        d = (pid.info or {}).get("dims") or (math.nan, math.nan, math.nan)
        dims.append([float(v) for v in d][:3])
    return {"value": np.array(values), "lo": np.array(lo), "hi": np.array(hi),
            "dims": np.array(dims), "no_interval": np.array(missing),
            "warnings": notes_of(caught)}  # fmt: skip


def notes_of(caught: Sequence[warnings.WarningMessage]) -> np.ndarray:
    """The distinct warnings a job recorded, as a string array a cached result can hold."""
    return np.array(sorted({f"{w.category.__name__}: {w.message}" for w in caught}), dtype=str)


def warn_once(results: Sequence[Mapping[str, np.ndarray]], what: str) -> None:
    """Emit each distinct warning the jobs of ``results`` recorded (under ``"warnings"``) once,
    with the number of jobs that gave it, instead of once per job and worker."""
    counts: dict[str, int] = {}
    for res in results:
        for note in res.get("warnings", ()):
            counts[str(note)] = counts.get(str(note), 0) + 1
    for note, k in counts.items():
        warnings.warn(f"{what}: {k} of {len(results)} jobs: {note}", UserWarning, stacklevel=3)


def _as_list(features: Features | Sequence[Features] | Mapping[Any, Features]) -> list[Features]:
    from pidlib.extract.features import Features

    items = list(features.values()) if isinstance(features, Mapping) else features
    items = [items] if isinstance(items, Features) else list(items)
    if not items or not all(isinstance(f, Features) for f in items):
        raise ValueError(
            "layerwise_pid: expected Features, a list of them or a {key: Features} map"
        )
    seen = [(f.model, f.task) for f in items]
    if len(set(seen)) != len(seen):
        raise ValueError(f"layerwise_pid: (model, task) given twice among {seen}")
    return items


def _fit_rows(fit_by: Mapping, f: Features, layer: int) -> tuple | None:
    g = fit_by.get((f.model, f.task))
    return None if g is None else (g.V[:, layer], g.L[:, layer], g.Y)


def _describe(value: Any) -> Any:
    """A JSON-able description of an estimator option (dataclasses by their fields)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **dataclasses.asdict(value)}
    return value


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.float32)
        h.update(str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:24]


def layerwise_pid(
    features: Features | Sequence[Features] | Mapping[Any, Features],
    *,
    pid_spec: PIDSpec | None = None,
    layers: Sequence[int] | None = None,
    parallel: ParallelSpec | None = None,
    cache: ArrayCache | bool = True,
    seed: int = 0,
    estimator: Callable | None = None,
    estimator_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
    fit_features: Sequence[Features] | Mapping[Any, Features] | None = None,
) -> pd.DataFrame:
    """The PID of ``I(Y; V, L)`` at each layer, for each model and task: a tidy table.

    Per (model, task, layer): ``estimator(V[:, layer], L[:, layer], Y, measure=..., seed=...,
    **pid_spec, **estimator_kwargs)`` (default :func:`pidlib.pid.flow.pid_flow`; e.g.
    ``estimator_kwargs={"flow_config": FlowConfig(max_epochs=50)}``), X1 = V, X2 = L, Y the
    features' target; one row per measure and atom in :data:`ATOMS` (``unique_1`` = U_V,
    ``unique_2`` = U_L) with the columns :data:`COLUMNS`, values in bits. ``layers``:
    hidden-state indices (default all; negative counts from the end). For a profile::

        layerwise_pid(load_features(profile), pid_spec=profile.pid, layers=profile.layers,
                      parallel=profile.parallel, seed=profile.seed)

    Jobs run through joblib with ``parallel`` (a :class:`~pidlib.config.profiles.ParallelSpec`):
    "loky" (local processes), "threading", "sequential", or "dask" / "ray" when installed. For
    a cluster, start its scheduler and set ``parallel: {backend: dask, address:
    "tcp://host:8786", n_jobs: -1}`` (ray: ``address: "ray://host:10001"`` or ``"auto"``);
    without an address a local cluster is started. Each job's seed is :func:`job_seed` ``(seed,
    model, task, layer)`` and it runs with one torch / BLAS thread, so parallel and serial runs
    agree exactly. Each job's result is cached (``cache``: an ArrayCache, True = default,
    False = none) under the hash of its inputs, the PID settings, the seed, the estimator and
    the code version, as soon as it arrives; an interrupted run resumes where it stopped.

    ``fit_features`` (same models and tasks as ``features``, same layers): fit each job's
    transforms (PCA, flows) on these features' layer and measure ``features`` through them
    (the estimator's ``fit_on``), e.g. knocked-out activations through the clean run's maps.
    """
    import joblib
    import pandas as pd
    from tqdm import tqdm

    items = _as_list(features)
    fit_by = {(g.model, g.task): g for g in _as_list(fit_features)} if fit_features else {}
    missing = [(f.model, f.task) for f in items if fit_features and (f.model, f.task) not in fit_by]
    if missing:
        raise ValueError(f"layerwise_pid: fit_features lack {missing}")
    spec = pid_spec or PIDSpec()
    spec.validate()
    parallel = parallel or ParallelSpec()
    from pidlib.pid.flow import pid_flow

    estimator = estimator or pid_flow
    est, code = _estimator_code(estimator)
    spec_d = dataclasses.asdict(spec)
    extra = dict(estimator_kwargs or {})
    clash = sorted(set(extra) & {*spec_d, "measure", "seed"})
    if clash:
        raise ValueError(f"estimator_kwargs: {clash} are set by pid_spec / seed, not here")
    described = {k: _describe(v) for k, v in sorted(extra.items())}
    store = ArrayCache() if cache is True else (cache or None)
    fits = CachedFits(store.root) if store is not None and estimator is pid_flow else None
    plan = []  # (features, layer, seed, key, params) for every row group
    for f in items:
        n_states = f.V.shape[1]
        for layer in range(n_states) if layers is None else layers:
            if isinstance(layer, bool) or not isinstance(layer, int | np.integer):
                raise ValueError(f"layers: expected integers, got {layer!r}")
            if not -n_states <= layer < n_states:
                raise ValueError(f"layer {layer} outside 0..{n_states - 1} for {f.model}")
            layer = int(layer) % n_states
            s = job_seed(seed, f.model, f.task, layer)
            params = {"inputs": _digest(f.V[:, layer], f.L[:, layer], f.Y), "model": f.model,
                      "task": f.task, "layer": layer, "target": f.target, "pid": spec_d,
                      "seed": s, "estimator": est, "estimator_kwargs": described}  # fmt: skip
            if fit_by:
                g = fit_by[f.model, f.task]
                if g.V.shape[1] != n_states:
                    raise ValueError(
                        f"layerwise_pid: fit_features of {f.model} {f.task} have "
                        f"{g.V.shape[1]} hidden states, features {n_states}"
                    )
                params["fit_on"] = _digest(g.V[:, layer], g.L[:, layer], g.Y)
            plan.append((f, layer, s, cache_key(_KIND, params, code), params))
    done: dict[str, dict[str, np.ndarray]] = {}
    for _, _, _, key, _ in plan:
        hit = store.load(_KIND, key) if store is not None and key not in done else None
        if hit is not None:
            done[key] = hit[0]
    todo = list({key: job for job in plan if (key := job[3]) not in done}.values())
    bar = tqdm(total=len(todo), desc="layer-wise PID", unit="job", disable=not progress or not todo)
    with stage("layer-wise PID jobs"), backend(parallel):
        calls = (
            joblib.delayed(_run_job)(
                f.V[:, layer],
                f.L[:, layer],
                f.Y,
                s,
                spec_d,
                estimator,
                extra,
                f"{f.model} {f.task} layer {layer}",
                _fit_rows(fit_by, f, layer),
                fits,
            )  # fmt: skip
            for f, layer, s, _, _ in todo
        )
        results = joblib.Parallel(return_as="generator")(calls)
        for (f, _, _, key, params), res in zip(todo, results, strict=True):
            if store is not None:
                store.save(_KIND, key, res, params, {"model_name": f.model, "task": f.task})
            done[key] = res
            bar.update()
    bar.close()
    warn_once([done[key] for key in dict.fromkeys(job[3] for job in plan)], "layer-wise PID")
    rows = []
    for f, layer, s, key, _ in plan:
        res, n_layers = done[key], f.V.shape[1] - 1
        missing = res.get("no_interval", np.zeros(len(spec.measures), bool))
        for i, m in enumerate(spec.measures):
            d1, d2, dy = res["dims"][i]
            for j, atom in enumerate(ATOMS):
                rows.append((f.model, f.task, layer, n_layers, layer / n_layers, m, atom,
                             res["value"][i, j], res["lo"][i, j], res["hi"][i, j], f.n,
                             d1, d2, dy, s, bool(missing[i])))  # fmt: skip
    table = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    check_intervals(table)
    return table


def check_intervals(table: pd.DataFrame) -> None:
    """Raise ``ValueError`` naming the rows whose estimate lies outside its own interval (a
    resampling scheme that allows this, like the percentile bootstrap of latent rows, is not
    valid for PID Flow: see :mod:`pidlib.pid.uncertainty`)."""
    has = table["lo"].notna() & table["hi"].notna()
    tol = 1e-9 * (1.0 + table["value"].abs())
    bad = table[has & ((table["value"] < table["lo"] - tol) | (table["value"] > table["hi"] + tol))]
    if len(bad):
        rows = "; ".join(f"{r.model} {r.task} layer {r.layer} {r.measure} {r.atom}: {r.value:.4f} "
                         f"[{r.lo:.4f}, {r.hi:.4f}]" for r in bad.head(5).itertuples())  # fmt: skip
        raise ValueError(f"{len(bad)} estimates lie outside their own interval ({rows}); use the "
                         "cross-fitted scheme (pid.scheme: crossfit)")  # fmt: skip


# --------------------------------------------------------------------------- summaries
