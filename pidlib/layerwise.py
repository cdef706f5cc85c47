"""Layer-wise PID of I(Y; V, L) per (model, task, layer): parallel through joblib, cached, tidy."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pidlib.cache import ArrayCache, cache_key
from pidlib.profiles import ParallelSpec, PIDSpec

if TYPE_CHECKING:
    import pandas as pd

    from pidlib.features import Features

__all__ = [
    "ATOMS",
    "ATOM_LABELS",
    "COLUMNS",
    "job_seed",
    "layerwise_pid",
    "shares",
    "peak_layers",
    "last_layer_shares",
    "trajectory_correlation",
]

#: The quantities of each row, in bits: the four atoms, I(V,L;Y), I(V;Y), I(L;Y).
ATOMS: tuple[str, ...] = ("redundancy", "unique_1", "unique_2", "synergy", "total", "mi_1", "mi_2")

#: Display names with X1 = V (vision) and X2 = L (language).
ATOM_LABELS: dict[str, str] = {
    "redundancy": "R", "unique_1": "U_V", "unique_2": "U_L", "synergy": "S",
    "total": "I(V,L;Y)", "mi_1": "I(V;Y)", "mi_2": "I(L;Y)",
}  # fmt: skip

#: Columns of :func:`layerwise_pid`'s table. ``depth`` = layer / n_layers (0 = embeddings,
#: 1 = last layer); ``lo`` / ``hi``: 95% interval (NaN without bootstrap); ``dims_*``: the PCA
#: dimensions kept for V, L and Y; ``seed``: the job's seed.
COLUMNS: tuple[str, ...] = (
    "model", "task", "layer", "n_layers", "depth", "measure", "atom", "value", "lo", "hi", "n",
    "dims_1", "dims_2", "dims_y", "seed",
)  # fmt: skip

_FOUR = ATOMS[:4]
_CODE = ("pidlib.layerwise", "pidlib.gaussian", "pidlib.flow_nets")  # + the estimator's module
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
    return name, (*_CODE, module) if spec is not None and spec.origin else _CODE


def _run_job(
    x1: np.ndarray, x2: np.ndarray, y: np.ndarray, seed: int, spec: dict, estimator: Callable,
    extra: Mapping[str, Any], label: str, fit_on: tuple | None = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """One (model, task, layer): the PID of each measure as arrays (runs in a worker).

    Torch and BLAS are held to one thread here, in workers and in a serial run alike, so that
    results do not depend on where the job ran.
    """
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    if fit_on is not None:
        extra = {**extra, "fit_on": fit_on}
    try:
        with threadpool_limits(1):
            out = estimator(
                x1, x2, y, measure=tuple(spec["measures"]), seed=seed,
                **{k: v for k, v in spec.items() if k != "measures"}, **extra,
            )  # fmt: skip
    except (ValueError, RuntimeError) as err:  # name the job that failed
        raise type(err)(f"{label}: {err}") from err
    finally:
        torch.set_num_threads(threads)
    if not isinstance(out, Mapping):
        out = {spec["measures"][0]: out}
    values, lo, hi, dims = [], [], [], []
    for m in spec["measures"]:
        pid = out[m]
        ci = pid.ci or {}
        values.append([getattr(pid, a) for a in ATOMS])
        lo.append([ci.get(a, (math.nan, math.nan))[0] for a in ATOMS])
        hi.append([ci.get(a, (math.nan, math.nan))[1] for a in ATOMS])
        d = (pid.info or {}).get("dims") or (math.nan, math.nan, math.nan)
        dims.append([float(v) for v in d][:3])
    return {"value": np.array(values), "lo": np.array(lo), "hi": np.array(hi),
            "dims": np.array(dims)}  # fmt: skip


@contextlib.contextmanager
def _backend(parallel: ParallelSpec) -> Iterator[None]:
    """joblib's backend for ``parallel``; dask / ray connect to ``parallel.address`` (or start a
    local cluster), and need their packages."""
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
    with joblib.parallel_config(
        backend=name, n_jobs=1 if name == "sequential" else parallel.n_jobs
    ):
        yield


def _as_list(features: Features | Sequence[Features] | Mapping[Any, Features]) -> list[Features]:
    from pidlib.features import Features

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
    **pid_spec, **estimator_kwargs)`` (default :func:`pidlib.flow.pid_flow`; e.g.
    ``estimator_kwargs={"flow_config": FlowConfig(max_epochs=50)}``), X1 = V, X2 = L, Y the
    features' target; one row per measure and atom in :data:`ATOMS` (``unique_1`` = U_V,
    ``unique_2`` = U_L) with the columns :data:`COLUMNS`, values in bits. ``layers``:
    hidden-state indices (default all; negative counts from the end). For a profile::

        layerwise_pid(load_features(profile), pid_spec=profile.pid, layers=profile.layers,
                      parallel=profile.parallel, seed=profile.seed)

    Jobs run through joblib with ``parallel`` (a :class:`~pidlib.profiles.ParallelSpec`):
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
    from tqdm.auto import tqdm

    items = _as_list(features)
    fit_by = {(g.model, g.task): g for g in _as_list(fit_features)} if fit_features else {}
    missing = [(f.model, f.task) for f in items if fit_features and (f.model, f.task) not in fit_by]
    if missing:
        raise ValueError(f"layerwise_pid: fit_features lack {missing}")
    spec = pid_spec or PIDSpec()
    spec.validate()
    parallel = parallel or ParallelSpec()
    if estimator is None:
        from pidlib.flow import pid_flow as estimator
    est, code = _estimator_code(estimator)
    spec_d = dataclasses.asdict(spec)
    extra = dict(estimator_kwargs or {})
    clash = sorted(set(extra) & {*spec_d, "measure", "seed"})
    if clash:
        raise ValueError(f"estimator_kwargs: {clash} are set by pid_spec / seed, not here")
    described = {k: _describe(v) for k, v in sorted(extra.items())}
    store = ArrayCache() if cache is True else (cache or None)
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
    with _backend(parallel):
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
    rows = []
    for f, layer, s, key, _ in plan:
        res, n_layers = done[key], f.V.shape[1] - 1
        for i, m in enumerate(spec.measures):
            d1, d2, dy = res["dims"][i]
            for j, atom in enumerate(ATOMS):
                rows.append((f.model, f.task, layer, n_layers, layer / n_layers, m, atom,
                             res["value"][i, j], res["lo"][i, j], res["hi"][i, j], f.n,
                             d1, d2, dy, s))  # fmt: skip
    return pd.DataFrame.from_records(rows, columns=list(COLUMNS))


# --------------------------------------------------------------------------- summaries


def _measure(df: pd.DataFrame, measure: str) -> pd.DataFrame:
    missing = sorted(set(COLUMNS) - set(df.columns))
    if missing:
        raise ValueError(f"not a layerwise_pid table: columns {missing} are missing")
    if measure not in set(df["measure"]):
        raise ValueError(f"measure {measure!r} not in the table ({sorted(set(df['measure']))})")
    return df[df["measure"] == measure]


def shares(df: pd.DataFrame) -> pd.DataFrame:
    """The four atoms' rows with ``share`` = value / I(V,L;Y) at the same (model, task, layer,
    measure); NaN where the total is 0."""
    keys = ["model", "task", "layer", "measure"]
    total = df[df["atom"] == "total"][[*keys, "value"]].rename(columns={"value": "_total"})
    out = df[df["atom"].isin(_FOUR)].merge(total, on=keys, how="left")
    out["share"] = out["value"] / out["_total"].where(out["_total"] > 0)
    return out.drop(columns="_total").reset_index(drop=True)


def peak_layers(df: pd.DataFrame, atom: str = "unique_1", measure: str = "mmi") -> pd.DataFrame:
    """Per (model, task): the layer (and relative depth) where ``atom`` peaks, and its value.

    The default, U_V, tests the paper's claim that vision-unique information peaks early.
    Ties go to the shallowest layer.
    """
    if atom not in ATOMS:
        raise ValueError(f"atom {atom!r} is not one of {ATOMS}")
    sub = _measure(df, measure)
    sub = sub[sub["atom"] == atom].sort_values(["model", "task", "layer"])
    idx = sub.groupby(["model", "task"], sort=False)["value"].idxmax()
    cols = ["model", "task", "layer", "n_layers", "depth", "value"]
    return sub.loc[idx, cols].reset_index(drop=True)


def last_layer_shares(df: pd.DataFrame, measure: str = "mmi") -> pd.DataFrame:
    """Per (model, task): each atom's share of I(V,L;Y) at the last layer (wide: one column per
    atom). The paper's "82%" is the ``unique_2`` (U_L) column averaged over tasks."""
    sub = shares(_measure(df, measure))
    sub = sub[sub["layer"] == sub["n_layers"]]
    wide = sub.pivot_table(index=["model", "task"], columns="atom", values="share", sort=False)
    return wide.reindex(columns=list(_FOUR)).reset_index().rename_axis(columns=None)


def _trajectory(sub: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    sub = sub.sort_values("layer")
    return sub["depth"].to_numpy(float), sub[column].to_numpy(float)


def trajectory_correlation(
    df: pd.DataFrame,
    models: Sequence[str] | None = None,
    *,
    measure: str = "mmi",
    atoms: Sequence[str] = (*_FOUR, "total"),
    column: str = "value",
) -> pd.DataFrame:
    """Pearson correlation over depth of each atom's trajectory in two models, per task.

    ``models``: the two models (default: the table's two). ``column``: "value" (bits) or
    "share" (fraction of I(V,L;Y)). Trajectories are aligned on relative depth (layer /
    n_layers): with equal layer counts layer by layer; otherwise the deeper model's trajectory
    is linearly interpolated at the shallower model's depths, so each of its layers counts
    once. Columns: task, atom, model_a, model_b, r, n_points (NaN r for a constant trajectory).
    """
    sub = _measure(df, measure)
    if column == "share":
        sub = shares(sub)
    elif column != "value":
        raise ValueError(f"column must be 'value' or 'share', got {column!r}")
    names = list(dict.fromkeys(sub["model"])) if models is None else list(models)
    if len(names) != 2 or any(m not in set(sub["model"]) for m in names):
        raise ValueError(
            f"need two models from the table ({sorted(set(sub['model']))}), got {names}"
        )
    bad = [a for a in atoms if a not in ATOMS or (column == "share" and a not in _FOUR)]
    if bad:
        raise ValueError(f"atoms {bad} not available for column {column!r}")
    rows = []
    tasks = [
        t for t in dict.fromkeys(sub["task"]) if set(sub[sub["task"] == t]["model"]) >= set(names)
    ]
    for task in tasks:
        for atom in atoms:
            sel = sub[(sub["task"] == task) & (sub["atom"] == atom)]
            (da, va), (db, vb) = (_trajectory(sel[sel["model"] == m], column) for m in names)
            if len(da) > len(db):
                va = np.interp(db, da, va)
            elif len(db) > len(da):
                vb = np.interp(da, db, vb)
            ok = np.isfinite(va) & np.isfinite(vb)
            va, vb = va[ok], vb[ok]
            r = np.nan
            if len(va) > 2 and np.std(va) > 0 and np.std(vb) > 0:
                r = float(np.corrcoef(va, vb)[0, 1])
            rows.append((task, atom, names[0], names[1], r, len(va)))
    import pandas as pd

    return pd.DataFrame(rows, columns=["task", "atom", "model_a", "model_b", "r", "n_points"])
