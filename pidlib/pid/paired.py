"""Paired PID Flow differences: a changed run minus a clean run on the same rows (bits).

A knockout is measured on the questions of the clean run, so both estimates carry the same
sampling noise of those questions. Treating them as independent (half-widths added in
quadrature) counts that noise twice. :func:`pid_flow_difference` resamples both runs together:
the same cross-fitting folds and flow seeds, and the same half-subsample indices drawn from
both runs' held-out latents. The standard error of the difference comes from the differences
of those paired replicates (and of the paired split estimates), so the shared noise cancels;
identical runs give a zero difference with a zero-width interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from pidlib.pid.flow import _check_int
from pidlib.pid.flow_nets import FlowConfig
from pidlib.pid.maps import FitStore, PIDFlow, _as_data, _pid_replicates, _pids, fit_maps
from pidlib.pid.result import measures_of
from pidlib.pid.uncertainty import (
    CI_KEYS,
    fold_indices,
    half_size,
    half_subsamples,
    interval_strata,
    too_few_for_halves,
)

__all__ = ["MAPS", "PIDDifference", "pid_flow_difference"]

#: How the changed run's latents are made: "refit" (PCA and flows fitted on its own training
#: folds) or "clean" (the clean run's maps of the same fold applied to its held-out rows).
MAPS: tuple[str, ...] = ("refit", "clean")


@dataclass(frozen=True)
class PIDDifference:
    """Changed minus clean, per key of :data:`~pidlib.pid.uncertainty.CI_KEYS` (bits).

    ``clean``, ``changed``: each run's cross-fitted estimate; ``delta`` = changed - clean;
    ``ci``: the paired interval of ``delta`` (not clipped: a difference may be negative);
    ``ci_independent``: the interval the two runs' own standard errors would give if they were
    independent (half-widths in quadrature), for comparison. Intervals are ``None`` with neither
    half-subsamples nor several splits.
    """

    measure: str
    maps: str
    clean: Mapping[str, float]
    changed: Mapping[str, float]
    delta: Mapping[str, float]
    ci: Mapping[str, tuple[float, float]] | None
    ci_independent: Mapping[str, tuple[float, float]] | None
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)


def _variance(reps: np.ndarray, between: np.ndarray, factor: float) -> np.ndarray:
    """Squared standard error from half-subsample replicates ``(R, K)`` (times ``factor``,
    :func:`~pidlib.pid.uncertainty.wald_ci`) and split estimates ``(S, K)``."""
    var = factor * np.var(reps, axis=0, ddof=1) if len(reps) > 1 else np.zeros(reps.shape[1])
    if len(between) > 1:
        var = var + np.var(between, axis=0, ddof=1) / len(between)
    return var


def _interval(point: np.ndarray, var: np.ndarray, level: float) -> dict[str, tuple[float, float]]:
    half = float(special.ndtri(0.5 + level / 2)) * np.sqrt(var)
    return {k: (float(p - h), float(p + h)) for k, p, h in zip(CI_KEYS, point, half, strict=True)}


def _vector(pid: Any) -> np.ndarray:
    return np.array([getattr(pid, k) for k in CI_KEYS])


def pid_flow_difference(
    clean: Sequence[Any],
    changed: Sequence[Any] | Mapping[str, Sequence[Any]],
    *,
    measure: str | Sequence[str] = "mmi",
    maps: str | Sequence[str] | Mapping[str, str | Sequence[str]] = MAPS,
    pca_variance: float = 0.95,
    max_dims: int = 32,
    seed: int = 0,
    flow: bool = True,
    n_bootstrap: int = 0,
    n_seeds: int = 1,
    bias_correction: bool = True,
    flow_config: FlowConfig | None = None,
    scheme: str = "crossfit",
    n_folds: int = 2,
    ci_level: float = 0.95,
    fit_store: FitStore | None = None,
) -> dict[str, dict[str, PIDDifference]]:
    """The PID of ``changed = (x1, x2, y)`` minus that of ``clean``, same rows, paired intervals.

    Row ``i`` of both runs is the same question. Both runs are cross-fitted as in
    :func:`~pidlib.pid.flow.pid_flow` (``scheme="crossfit"``, the only scheme here) with the
    same folds (stratified by the clean ``y``), the same flow seeds and the same half-subsample
    indices, so the clean estimate equals ``pid_flow(*clean, ...)`` with the same arguments.
    ``maps``: "refit" and / or "clean" (:data:`MAPS`). Returns ``{maps: {measure:
    PIDDifference}}``. ``fit_store``: the clean run's fits are taken from there when the
    clean layer-wise job stored them (:func:`~pidlib.pid.flow.fit_maps`), and kept there
    otherwise; the changed run's are always fitted.

    Several changed runs of the same rows (``changed``: ``{label: (x1, x2, y)}``, e.g. one
    knockout per flow; ``maps`` then the same for every run or ``{label: maps}``) share one
    pass over the clean run: its fits, latents, split estimates and half-subsample replicates
    are made once, and each run's result equals its own call's (the same folds, flow seeds
    and half-subsamples; a run whose latents are too few for half-subsamples has no interval,
    as alone). Returns ``{label: {maps: {measure: PIDDifference}}}`` then.
    """
    measures = measures_of(measure)
    several = isinstance(changed, Mapping)
    runs = dict(changed) if several else {"": changed}
    if not runs:
        raise ValueError("changed: no run to compare with the clean run")

    def variants_of(v: Any) -> tuple[str, ...]:
        got = (v,) if isinstance(v, str) else tuple(v)
        if not got or any(x not in MAPS for x in got):
            raise ValueError(f"maps must be some of {MAPS}, got {v!r}")
        return got

    if isinstance(maps, Mapping):
        if set(maps) != set(runs):
            raise ValueError(f"maps: give the maps of each changed run {sorted(runs)}, got "
                             f"{sorted(maps)}")  # fmt: skip
        run_maps = {r: variants_of(maps[r]) for r in runs}
    else:
        run_maps = dict.fromkeys(runs, variants_of(maps))
    if scheme != "crossfit":
        raise ValueError(f"paired differences need scheme='crossfit', got {scheme!r}")
    n_rep, n_seeds = _check_int("n_bootstrap", n_bootstrap, 0), _check_int("n_seeds", n_seeds, 1)
    _check_int("n_folds", n_folds, 2)
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level!r}")
    c = _as_data(*clean)
    n = len(c[0])
    ks = {r: _as_data(*x) for r, x in runs.items()}
    for r, k in ks.items():
        if len(k[0]) != n:
            raise ValueError(
                f"clean has {n} rows, changed{f' ({r})' if r else ''} {len(k[0])}: "
                "a paired difference needs the same rows (questions) in both runs"
            )
    labels, n_rep, no_ci = interval_strata(c[2], n_folds, n_rep)

    def fitted(j: int, rows: list[np.ndarray], store: FitStore | None = None) -> PIDFlow:
        template = PIDFlow(flow_config, pca_variance=pca_variance, max_dims=max_dims, flow=flow,
                           seed=seed + j)  # fmt: skip
        return fit_maps(template, rows, store)

    def latents(f: PIDFlow, rows: list[np.ndarray]) -> tuple[tuple, np.ndarray]:
        return f.dims, np.concatenate(f.transform(*rows), 1)

    # per split, per fold: {run: (dims, held-out latents)} and the held-out class labels; the
    # runs: "clean run", and each changed run through its own maps ("refit") or the clean run's
    parts: list[list[tuple[dict[Any, tuple], np.ndarray | None]]] = []
    for s in range(n_seeds):
        rng, split = np.random.default_rng([seed, s]), []
        for j, held in enumerate(folds := fold_indices(n, n_folds, rng, labels)):
            train = np.sort(np.concatenate([f for i, f in enumerate(folds) if i != j]))
            fc = fitted(s * n_folds + j, [a[train] for a in c], fit_store)
            z: dict[Any, tuple] = {"clean run": latents(fc, [a[held] for a in c])}
            for r, k in ks.items():
                if "clean" in run_maps[r]:
                    z[r, "clean"] = latents(fc, [a[held] for a in k])
                if "refit" in run_maps[r]:
                    fk = fitted(s * n_folds + j, [a[train] for a in k])
                    z[r, "refit"] = latents(fk, [a[held] for a in k])
            split.append((z, None if labels is None else labels[held]))
        parts.append(split)
    names = ["clean run", *((r, v) for r in runs for v in MAPS if v in run_maps[r])]

    def pids(z: dict) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for name in names:
            dims, lat = z[name]
            out[name] = {m: _vector(p) for m, p in _pids(lat, dims, measures,
                                                          bias_correction).items()}  # fmt: skip
        return out

    # split estimates (S, K) per run and measure: the mean over the split's folds
    per_fold = [[pids(z) for z, _ in split] for split in parts]
    # each changed run's interval as its own call would have it: none when its latents (or the
    # clean run's) are too few for half-subsamples; the others' half-subsamples are the same
    why = {r: no_ci for r in runs}
    if n_rep and not no_ci:
        for r in runs:
            why[r] = too_few_for_halves(
                [(half_size(len(z[name][1]), lab), sum(z[name][0])) for split in parts
                 for z, lab in split for name in ("clean run", *((r, v) for v in run_maps[r]))]
            )  # fmt: skip
    for reason in dict.fromkeys(w for w in why.values() if w):
        warnings.warn(reason, stacklevel=2)
    with_halves = [name for name in names if name == "clean run" or not why[name[0]]]
    n_draw = n_rep if len(with_halves) > 1 else 0
    rng = np.random.default_rng([seed, 7919])  # the same stream as pid_flow's half-subsamples
    reps: list[dict] = []  # per split and fold: {run: {measure: (n_rep, K)}}
    factors = []
    for split in parts:
        for z, lab in split:
            size = len(z["clean run"][1])
            m = half_size(size, lab)
            factors.append(m / (size - m))
            halves = list(half_subsamples(size, n_draw, rng, lab))
            reps.append({name: _pid_replicates(z[name][1], z[name][0], measures,
                                               bias_correction, halves)
                         for name in with_halves})  # fmt: skip
    factor = float(np.mean(factors))

    def stack(run: Any, m: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        between = np.array([np.mean([f[run][m] for f in split], 0) for split in per_fold])
        rep = np.mean([r[run][m] for r in reps], axis=0) if run in with_halves else None
        return between.mean(0), between, rep if rep is None else rep.reshape(-1, len(CI_KEYS))

    out: dict[str, dict[str, dict[str, PIDDifference]]] = {}
    for r, v in names[1:]:
        r_rep = 0 if why[r] else n_rep
        has_ci = not why[r] and (r_rep >= 2 or n_seeds >= 2)
        info = {"scheme": "crossfit", "n_folds": n_folds, "n_seeds": n_seeds,
                "n_bootstrap": r_rep, "bias_correction": bias_correction,
                "ci_level": ci_level, "flow": flow, "seed": seed,
                **({"interval": why[r]} if why[r] else {})}  # fmt: skip
        for m in measures:
            (pc, bc, rc), (pk, bk, rk) = stack("clean run", m), stack((r, v), m)
            ci = ci_ind = None
            if has_ci:  # then the run has its half-subsamples (rk)
                ci = _interval(pk - pc, _variance(rk - rc, bk - bc, factor), ci_level)
                var_ind = _variance(rc, bc, factor) + _variance(rk, bk, factor)
                ci_ind = _interval(pk - pc, var_ind, ci_level)
            out.setdefault(r, {}).setdefault(v, {})[m] = PIDDifference(
                m, v, dict(zip(CI_KEYS, pc.tolist(), strict=True)),
                dict(zip(CI_KEYS, pk.tolist(), strict=True)),
                dict(zip(CI_KEYS, (pk - pc).tolist(), strict=True)), ci, ci_ind, info,
            )  # fmt: skip
    return out if several else out[""]
