"""Layer-wise knockout-minus-clean PID differences with paired intervals: parallel, cached, tidy."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pidlib.analysis.fits import CachedFits
from pidlib.analysis.layerwise import _as_list, _digest, job_seed, notes_of, warn_once
from pidlib.analysis.parallel import backend
from pidlib.config.profiles import ParallelSpec, PIDSpec
from pidlib.core.cache import ArrayCache, cache_key
from pidlib.core.stages import stage
from pidlib.core.threads import one_thread
from pidlib.extract.features import Features
from pidlib.pid.paired import MAPS
from pidlib.pid.result import ATOMS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TRANSFORMS", "DELTA_COLUMNS", "layerwise_difference", "layerwise_differences"]

#: How the knocked-out activations are measured, by :data:`pidlib.pid.paired.MAPS`: PCA and
#: flows refit on them, or the clean run's reused (in this order in every table and claim list).
TRANSFORMS: dict[str, str] = {"refit": "refit", "clean": "clean maps reused"}

#: Columns of a difference table: bits; ``lo`` / ``hi`` the paired 95% interval of ``delta``,
#: ``lo_indep`` / ``hi_indep`` the interval if the two runs were independent (for comparison).
DELTA_COLUMNS: tuple[str, ...] = (
    "model", "task", "layer", "n_layers", "depth", "measure", "atom", "transforms",
    "value_clean", "value_ko", "delta", "lo", "hi", "lo_indep", "hi_indep", "n", "seed",
)  # fmt: skip

_KIND = "knockout-difference"
_CODE: tuple[str, ...] = ("pidlib.analysis.paired", "pidlib.pid")
_FIELDS = ("clean", "changed", "delta", "lo", "hi", "lo_indep", "hi_indep")


def _run_job(clean: tuple, changed: dict[str, tuple], seed: int, spec: dict, label: str,
             maps: dict[str, tuple[str, ...]], fits: CachedFits | None = None) -> dict:  # fmt: skip
    """One (model, task, layer), every changed run of ``changed`` (in a worker): per run, arrays
    ``(maps, measures, atoms)`` per field and the job's warnings; the clean fits from ``fits``
    when the clean layer-wise job kept them there."""
    from pidlib.pid.paired import pid_flow_difference

    try:
        with one_thread(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rest = {k: v for k, v in spec.items() if k != "measures"}
            out = pid_flow_difference(clean, changed, measure=tuple(spec["measures"]), seed=seed,
                                      maps=maps, fit_store=fits, **rest)  # fmt: skip
    except (ValueError, RuntimeError) as err:
        raise type(err)(f"{label}: {err}") from err
    nan = (math.nan, math.nan)
    per_run = {}
    for r, vs in maps.items():
        res = {f: np.full((len(vs), len(spec["measures"]), len(ATOMS)), np.nan) for f in _FIELDS}
        for i, v in enumerate(vs):
            for j, m in enumerate(spec["measures"]):
                d = out[r][v][m]
                for a, atom in enumerate(ATOMS):
                    ci = (d.ci or {}).get(atom, nan)
                    ind = (d.ci_independent or {}).get(atom, nan)
                    for f, x in zip(_FIELDS, (d.clean[atom], d.changed[atom], d.delta[atom],
                                              *ci, *ind), strict=True):  # fmt: skip
                        res[f][i, j, a] = x
        res["warnings"] = notes_of(caught)
        per_run[r] = res
    return per_run


def layerwise_difference(
    clean: Sequence[Features] | Mapping[Any, Features],
    knocked: Sequence[Features] | Mapping[Any, Features],
    *,
    maps: Sequence[str] = MAPS,
    **kwargs: Any,
) -> pd.DataFrame:
    """Knockout minus clean PID per (model, task, layer), measured through each of ``maps``
    (:data:`~pidlib.pid.paired.MAPS`: "refit", "clean"; in :data:`TRANSFORMS` order).

    ``clean`` and ``knocked`` hold the same (model, task) pairs on the same questions (row
    ``i`` of both is one question). Each job calls
    :func:`~pidlib.pid.paired.pid_flow_difference` with the profile's PID settings and the seed
    :func:`~pidlib.analysis.layerwise.job_seed` of the clean layer-wise job, so ``value_clean``
    equals the clean table's value. One row per transforms variant, measure and atom, columns
    :data:`DELTA_COLUMNS`. Jobs are cached and run in parallel like
    :func:`~pidlib.analysis.layerwise.layerwise_pid`; ``kwargs``: those of
    :func:`layerwise_differences` (one run).
    """
    table = layerwise_differences(clean, {"": knocked}, maps=maps, **kwargs)
    return table.drop(columns="run")


def layerwise_differences(
    clean: Sequence[Features] | Mapping[Any, Features],
    runs: Mapping[str, Sequence[Features] | Mapping[Any, Features]],
    *,
    pid_spec: PIDSpec | None = None,
    layers: Sequence[int] | None = None,
    parallel: ParallelSpec | None = None,
    cache: ArrayCache | bool = True,
    seed: int = 0,
    maps: Sequence[str] | Mapping[str, Sequence[str]] = MAPS,
) -> pd.DataFrame:
    """:func:`layerwise_difference` of several changed runs of the same questions at once
    (``runs``: label -> knocked-out features, e.g. one knockout per flow; ``maps``: the same
    for every run, or per label), in a ``run`` column, run by run. One job per (model, task,
    layer) measures every run: the clean run's fits, latents and half-subsample replicates are
    made once (:func:`~pidlib.pid.paired.pid_flow_difference` with several runs), and each
    run's rows equal its own :func:`layerwise_difference`'s. Each run is cached under the key
    its own call would use, so a later call with fewer runs (one flow) reads them back, and a
    job measures only the runs it does not find there."""
    import joblib
    import pandas as pd

    if not runs:
        raise ValueError("layerwise_differences: no knocked-out run")
    by_run = {r: {(g.model, g.task): g for g in _as_list(k)} for r, k in runs.items()}
    items = _as_list(clean)
    for r, by_key in by_run.items():
        missing = [(f.model, f.task) for f in items if (f.model, f.task) not in by_key]
        if missing:
            raise ValueError(f"layerwise_difference: knocked-out features{f' ({r})' if r else ''}"
                             f" lack {missing}")  # fmt: skip
    per_run = maps if isinstance(maps, Mapping) else dict.fromkeys(runs, maps)
    if set(per_run) != set(runs):
        raise ValueError(f"layerwise_differences: maps for {sorted(per_run)}, runs {sorted(runs)}")
    run_maps = {}
    for r in runs:
        m = (per_run[r],) if isinstance(per_run[r], str) else tuple(per_run[r])
        bad = [v for v in m if v not in MAPS]
        if bad or not m:
            raise ValueError(f"layerwise_difference: maps must be some of {MAPS}, got {list(m)}")
        run_maps[r] = tuple(v for v in MAPS if v in m)
    spec = pid_spec or PIDSpec()
    spec.validate()
    spec_d = dataclasses.asdict(spec)
    store = ArrayCache() if cache is True else (cache or None)
    plan = []  # per (model, task, layer): each run's cache key, as its own call would key it
    for f in items:
        gs, n_states = {r: by_run[r][f.model, f.task] for r in runs}, f.V.shape[1]
        for r, g in gs.items():
            if list(g.qid) != list(f.qid):
                raise ValueError(f"{f.model} {f.task}: the knocked-out run{f' ({r})' if r else ''}"
                                 " has other questions")  # fmt: skip
        for layer in range(n_states) if layers is None else layers:
            layer = int(layer) % n_states
            s = job_seed(seed, f.model, f.task, layer)
            base = {"clean": _digest(f.V[:, layer], f.L[:, layer], f.Y), "model": f.model,
                    "task": f.task, "layer": layer, "target": f.target, "pid": spec_d,
                    "seed": s}  # fmt: skip
            params = {r: {**base, "knocked": _digest(g.V[:, layer], g.L[:, layer], g.Y),
                          "maps": list(run_maps[r])} for r, g in gs.items()}  # fmt: skip
            keys = {r: cache_key(_KIND, p, _CODE) for r, p in params.items()}
            plan.append((f, gs, layer, s, keys, params))
    done = {}
    for *_, keys, _ in plan:
        for key in keys.values():
            hit = store.load(_KIND, key) if store is not None and key not in done else None
            if hit is not None:
                done[key] = hit[0]
    # a job per (model, task, layer) with a run missing, measuring the missing runs only
    todo = {}
    for f, gs, layer, s, keys, params in plan:
        missing = tuple(r for r in runs if keys[r] not in done)
        if missing:
            job = (f, gs, layer, s, keys, params, missing)
            todo.setdefault(tuple(keys[r] for r in missing), job)
    with stage("knockout PID jobs"), backend(parallel or ParallelSpec()):
        calls = (
            joblib.delayed(_run_job)(
                (f.V[:, layer], f.L[:, layer], f.Y),
                {r: (gs[r].V[:, layer], gs[r].L[:, layer], gs[r].Y) for r in missing},
                s,
                spec_d,
                f"{f.model} {f.task} layer {layer}",
                {r: run_maps[r] for r in missing},
                None if store is None else CachedFits(store.root),
            )  # fmt: skip
            for f, gs, layer, s, _, _, missing in todo.values()
        )
        for (f, _, _, _, keys, params, _), per_run in zip(
            todo.values(), joblib.Parallel(return_as="generator")(calls), strict=True
        ):
            for r, res in per_run.items():
                if store is not None:
                    store.save(_KIND, keys[r], res, params[r],
                               {"model_name": f.model, "task": f.task})  # fmt: skip
                done[keys[r]] = res
    warn_once([done[key] for key in dict.fromkeys(k for p in plan for k in p[4].values())],
              "knockout PID")  # fmt: skip
    rows = []
    for r, vs in run_maps.items():
        for f, _, layer, s, keys, _ in plan:
            res, n_layers = done[keys[r]], f.V.shape[1] - 1
            for i, v in enumerate(vs):
                for j, m in enumerate(spec.measures):
                    for a, atom in enumerate(ATOMS):
                        rows.append((r, f.model, f.task, layer, n_layers, layer / n_layers, m,
                                     atom, TRANSFORMS[v], *(float(res[x][i, j, a])
                                                            for x in _FIELDS), f.n, s))  # fmt: skip
    return pd.DataFrame.from_records(rows, columns=["run", *DELTA_COLUMNS])
