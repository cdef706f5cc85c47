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

__all__ = ["TRANSFORMS", "DELTA_COLUMNS", "layerwise_difference"]

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


def _run_job(clean: tuple, changed: tuple, seed: int, spec: dict, label: str,
             maps: tuple[str, ...], fits: CachedFits | None = None) -> dict:  # fmt: skip
    """One (model, task, layer): arrays ``(maps, measures, atoms)`` per field (in a worker);
    the clean fits from ``fits`` when the clean layer-wise job kept them there."""
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
    res = {f: np.full((len(maps), len(spec["measures"]), len(ATOMS)), np.nan) for f in _FIELDS}
    for i, v in enumerate(maps):
        for j, m in enumerate(spec["measures"]):
            d = out[v][m]
            for a, atom in enumerate(ATOMS):
                ci, ind = (d.ci or {}).get(atom, nan), (d.ci_independent or {}).get(atom, nan)
                for f, x in zip(_FIELDS, (d.clean[atom], d.changed[atom], d.delta[atom], *ci,
                                          *ind), strict=True):  # fmt: skip
                    res[f][i, j, a] = x
    res["warnings"] = notes_of(caught)
    return res


def layerwise_difference(
    clean: Sequence[Features] | Mapping[Any, Features],
    knocked: Sequence[Features] | Mapping[Any, Features],
    *,
    pid_spec: PIDSpec | None = None,
    layers: Sequence[int] | None = None,
    parallel: ParallelSpec | None = None,
    cache: ArrayCache | bool = True,
    seed: int = 0,
    maps: Sequence[str] = MAPS,
) -> pd.DataFrame:
    """Knockout minus clean PID per (model, task, layer), measured through each of ``maps``
    (:data:`~pidlib.pid.paired.MAPS`: "refit", "clean"; in :data:`TRANSFORMS` order).

    ``clean`` and ``knocked`` hold the same (model, task) pairs on the same questions (row
    ``i`` of both is one question). Each job calls
    :func:`~pidlib.pid.paired.pid_flow_difference` with the profile's PID settings and the seed
    :func:`~pidlib.analysis.layerwise.job_seed` of the clean layer-wise job, so ``value_clean``
    equals the clean table's value. One row per transforms variant, measure and atom, columns
    :data:`DELTA_COLUMNS`. Jobs are cached and run in parallel like
    :func:`~pidlib.analysis.layerwise.layerwise_pid`.
    """
    import joblib
    import pandas as pd

    by_key = {(g.model, g.task): g for g in _as_list(knocked)}
    items = _as_list(clean)
    missing = [(f.model, f.task) for f in items if (f.model, f.task) not in by_key]
    if missing:
        raise ValueError(f"layerwise_difference: knocked-out features lack {missing}")
    maps = (maps,) if isinstance(maps, str) else tuple(maps)
    bad = [m for m in maps if m not in MAPS]
    if bad or not maps:
        raise ValueError(f"layerwise_difference: maps must be some of {MAPS}, got {list(maps)}")
    maps = tuple(m for m in MAPS if m in maps)
    spec = pid_spec or PIDSpec()
    spec.validate()
    spec_d = dataclasses.asdict(spec)
    store = ArrayCache() if cache is True else (cache or None)
    plan = []
    for f in items:
        g, n_states = by_key[f.model, f.task], f.V.shape[1]
        if list(g.qid) != list(f.qid):
            raise ValueError(f"{f.model} {f.task}: the knocked-out run has other questions")
        for layer in range(n_states) if layers is None else layers:
            layer = int(layer) % n_states
            s = job_seed(seed, f.model, f.task, layer)
            params = {"clean": _digest(f.V[:, layer], f.L[:, layer], f.Y),
                      "knocked": _digest(g.V[:, layer], g.L[:, layer], g.Y), "model": f.model,
                      "task": f.task, "layer": layer, "target": f.target, "pid": spec_d,
                      "seed": s, "maps": list(maps)}  # fmt: skip
            plan.append((f, g, layer, s, cache_key(_KIND, params, _CODE), params))
    done = {}
    for *_, key, _ in plan:
        hit = store.load(_KIND, key) if store is not None and key not in done else None
        if hit is not None:
            done[key] = hit[0]
    todo = list({p[4]: p for p in plan if p[4] not in done}.values())
    with stage("knockout PID jobs"), backend(parallel or ParallelSpec()):
        calls = (
            joblib.delayed(_run_job)(
                (f.V[:, layer], f.L[:, layer], f.Y),
                (g.V[:, layer], g.L[:, layer], g.Y),
                s,
                spec_d,
                f"{f.model} {f.task} layer {layer}",
                maps,
                None if store is None else CachedFits(store.root),
            )  # fmt: skip
            for f, g, layer, s, _, _ in todo
        )
        for (f, _, _, _, key, params), res in zip(
            todo, joblib.Parallel(return_as="generator")(calls), strict=True
        ):
            if store is not None:
                store.save(_KIND, key, res, params, {"model_name": f.model, "task": f.task})
            done[key] = res
    warn_once([done[key] for key in dict.fromkeys(p[4] for p in plan)], "knockout PID")
    rows = []
    for f, _, layer, s, key, _ in plan:
        res, n_layers = done[key], f.V.shape[1] - 1
        for i, v in enumerate(maps):
            for j, m in enumerate(spec.measures):
                for a, atom in enumerate(ATOMS):
                    rows.append((f.model, f.task, layer, n_layers, layer / n_layers, m, atom,
                                 TRANSFORMS[v], *(float(res[x][i, j, a]) for x in _FIELDS),
                                 f.n, s))  # fmt: skip
    return pd.DataFrame.from_records(rows, columns=list(DELTA_COLUMNS))
