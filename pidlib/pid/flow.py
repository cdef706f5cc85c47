"""PID Flow: the estimator :func:`pid_flow` (cross-fitted maps of :mod:`pidlib.pid.maps`, the
Gaussian PID of their latents, and its interval by :mod:`pidlib.pid.uncertainty`), in bits."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from pidlib.pid.flow_nets import OBJECTIVES, TRANSFORMS, FlowConfig, RQSpline
from pidlib.pid.maps import FitStore, PIDFlow, _as_data, _pid_replicates, _pids, fit_maps
from pidlib.pid.result import PID, measures_of
from pidlib.pid.uncertainty import (
    CI_KEYS,
    SCHEMES,
    fold_indices,
    half_size,
    half_subsamples,
    interval_strata,
    mean_pid,
    too_few_for_halves,
    wald_ci,
)

__all__ = [
    "OBJECTIVES", "SCHEMES", "TRANSFORMS", "FitStore", "FlowConfig", "PIDFlow", "RQSpline",
    "fit_maps", "pid_flow",
]  # fmt: skip


def _check_int(name: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    return int(v)


def pid_flow(
    x1: Any,
    x2: Any,
    y: Any,
    *,
    measure: str | Sequence[str] = "mmi",
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
    refit_bootstrap: bool = False,
    ci_level: float = 0.95,
    fit_on: tuple[Any, Any, Any] | None = None,
    fit_store: FitStore | None = None,
) -> PID | dict[str, PID]:
    """PID Flow estimate of the PID of ``I(X1, X2; Y)`` in bits (see :class:`PIDFlow`).

    ``x1`` ``(n, d1)``, ``x2`` ``(n, d2)``, ``y`` ``(n,)`` or ``(n, dy)``. Returns a
    :class:`~pidlib.pid.result.PID` for one ``measure`` ("mmi" or "broja") or, for a sequence of
    measures, a dict measure -> PID computed from the same latent covariance. ``flow=False`` is the
    plain Gaussian plug-in on the PCA scores.

    ``scheme="crossfit"`` (default): the rows are split into ``n_folds`` folds (within classes
    when ``y`` is discrete); the maps (marginals, PCA, flows) fitted on the other folds give each
    fold's latents, so no latent is measured by maps fitted on it. The estimate is the mean of
    the folds' Gaussian PIDs, averaged over ``n_seeds`` independent splits and flow seeds
    (repeated cross-fitting). Its interval (``PID.ci``, every atom, ``total``, ``mi_1``,
    ``mi_2``; level ``ci_level``) is ``estimate ± z · se`` clipped at 0, where ``se`` combines
    ``n_bootstrap`` half-subsamples of every fold's latents (without replacement, each bias
    corrected with its own size: :mod:`pidlib.pid.uncertainty`) and the spread over splits.
    Rows too few for that (a half-subsample of ``m`` rows needs ``m > d + 1`` for ``d`` latent
    dimensions, and each class of a discrete ``y`` twice the rows the folds need) give the
    estimate without an interval (``ci=None``), ``info["interval"]`` saying why, and a warning.

    ``scheme="bootstrap"``: the earlier estimator, kept to show why it was replaced: maps fitted
    on all rows, the estimate from the same rows, and a percentile interval over ``n_bootstrap``
    resamples of the latent rows (``refit_bootstrap=True``: maps refitted per resample) crossed
    with ``n_seeds`` flow seeds. Its resamples repeat rows, so their plug-in bias exceeds the
    correction for the nominal ``n`` and the interval can exclude its own estimate.

    ``bias_correction=True`` passes the rows' number to
    :func:`~pidlib.pid.gaussian.gaussian_pid`, which subtracts the finite-sample bias of the
    Gaussian plug-in's log-determinants (exact for Gaussian latents). ``info`` records the kept
    ``dims``, explained variances, training log and the resampling. Same arguments and thread
    count -> bit-identical results.

    ``fit_on=(x1_fit, x2_fit, y_fit)`` fits PCA and flows on those rows instead (same columns,
    any number of rows) and measures ``(x1, x2, y)`` through the fitted maps: e.g. a knocked-out
    run seen through the clean run's transforms. Those maps never saw ``(x1, x2, y)``, so the
    estimate uses all its rows (no folds) and half-subsamples of them give the interval.

    ``fit_store`` (a :class:`FitStore`): keep every flow fit there and reuse one fitted before
    on the same rows with the same settings (:func:`fit_maps`); the estimate does not change.
    """
    measures = measures_of(measure)
    n_bootstrap, n_seeds = (
        _check_int("n_bootstrap", n_bootstrap, 0),
        _check_int("n_seeds", n_seeds, 1),
    )
    _check_int("n_folds", n_folds, 2)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level!r}")
    data = _as_data(x1, x2, y)
    if fit_on is not None and (not isinstance(fit_on, tuple | list) or len(fit_on) != 3):
        raise ValueError("fit_on: expected a tuple (x1, x2, y) of arrays")
    if fit_on is not None and refit_bootstrap:
        raise ValueError("fit_on: maps are fitted once on fit_on; refit_bootstrap must be False")
    fit_data = data if fit_on is None else _as_data(*fit_on)

    def fitted(k: int, rows: list[np.ndarray], store: FitStore | None = fit_store) -> PIDFlow:
        template = PIDFlow(
            flow_config, pca_variance=pca_variance, max_dims=max_dims, flow=flow, seed=seed + k
        )
        return fit_maps(template, rows, store)

    if scheme == "bootstrap":
        return _bootstrap(data, fit_data, fitted, measures, measure, n_bootstrap,
                          n_seeds if flow else 1, bias_correction, refit_bootstrap, ci_level,
                          seed, fit_on is not None)  # fmt: skip
    return _crossfit(data, fit_data if fit_on is not None else None, fitted, measures, measure,
                     n_bootstrap, n_seeds, n_folds, bias_correction, ci_level, seed)  # fmt: skip


def _crossfit(data, fit_data, fitted, measures, measure, n_rep, n_seeds, n_folds, bias, level,
              seed):  # fmt: skip
    """The cross-fitted estimate and its subsampling interval (see :func:`pid_flow`)."""
    n = len(data[0])
    labels, n_rep, no_ci = interval_strata(data[2], 1 if fit_data is not None else n_folds, n_rep)
    # (fit, latents of the rows it never saw, their class labels) per split and fold
    parts: list[list[tuple[PIDFlow, np.ndarray, np.ndarray | None]]] = []
    for s in range(n_seeds):
        if fit_data is not None:
            f = fitted(s, fit_data)
            parts.append([(f, np.concatenate(f.transform(*data), 1), labels)])
            continue
        rng = np.random.default_rng([seed, s])
        split = []
        for k, held in enumerate(folds := fold_indices(n, n_folds, rng, labels)):
            train = np.sort(np.concatenate([f for j, f in enumerate(folds) if j != k]))
            f = fitted(s * n_folds + k, [a[train] for a in data])
            z = np.concatenate(f.transform(*[a[held] for a in data]), 1)
            split.append((f, z, None if labels is None else labels[held]))
        parts.append(split)
    per_split = [[_pids(z, f.dims, measures, bias) for f, z, _ in split] for split in parts]
    if n_rep and (no_ci := too_few_for_halves(
        [(half_size(len(z), lab), sum(f.dims)) for split in parts for f, z, lab in split]
    )):  # fmt: skip
        n_rep = 0
    if no_ci:
        warnings.warn(no_ci, stacklevel=3)
    rng = np.random.default_rng([seed, 7919])
    reps: list[dict[str, np.ndarray]] = []  # per split and fold: {measure: (n_rep, K)}
    factors = []
    for split in parts:
        for f, z, lab in split:
            m = half_size(len(z), lab)
            factors.append(m / (len(z) - m))
            halves = list(half_subsamples(len(z), n_rep, rng, lab))
            reps.append(_pid_replicates(z, f.dims, measures, bias, halves))
    f0 = parts[0][0][0]
    extra = {"scheme": "crossfit", "n_folds": n_folds if fit_data is None else 0,
             "n_seeds": n_seeds, "n_bootstrap": n_rep, "bias_correction": bias,
             "ci_level": level, "fit_on": "the data" if fit_data is None else "given rows",
             "fold_dims": [list(f.dims) for split in parts for f, _, _ in split],
             **({"interval": no_ci} if no_ci else {})}  # fmt: skip
    out = {}
    for m in measures:
        splits = [mean_pid([d[m] for d in split]) for split in per_split]
        point = mean_pid(splits)
        ci = None
        if not no_ci and (n_rep >= 2 or n_seeds >= 2):
            rep = np.mean([r[m] for r in reps], axis=0)  # each replicate's mean over folds
            between = np.array([[getattr(p, k) for k in CI_KEYS] for p in splits])
            ci = wald_ci(
                point, rep.reshape(-1, len(CI_KEYS)), between, level, float(np.mean(factors))
            )
        out[m] = replace(f0._attach(point, extra), ci=ci)
    return out if not isinstance(measure, str) else out[measure]


def _bootstrap(data, fit_data, fitted, measures, measure, n_bootstrap, n_fits, bias,
               refit_bootstrap, level, seed, given):  # fmt: skip
    """The earlier scheme: maps fitted on all rows, a percentile bootstrap of the latents."""
    n = len(data[0])
    fits = [fitted(k, fit_data) for k in range(n_fits)]
    latents = [np.concatenate(f.transform(*data), 1) for f in fits]
    reps: list[dict[str, PID]] = []
    rng = np.random.default_rng(seed)
    for idx in (rng.integers(0, n, n) for _ in range(n_bootstrap)):
        for k, (f, z) in enumerate(zip(fits, latents, strict=True)):
            if refit_bootstrap:
                rows = [a[idx] for a in data]
                f = fitted(k, rows, None)
                z = np.concatenate(f.transform(*rows), 1)
            reps.append(_pids(z if refit_bootstrap else z[idx], f.dims, measures, bias))
    if n_bootstrap == 0 and len(fits) > 1:
        reps = [_pids(z, f.dims, measures, bias) for f, z in zip(fits, latents, strict=True)]
    extra = {"scheme": "bootstrap", "n_seeds": len(fits), "n_bootstrap": n_bootstrap,
             "refit_bootstrap": refit_bootstrap, "bias_correction": bias,
             "n_replicates": len(reps), "ci_level": level,
             "fit_on": "given rows" if given else "the data"}  # fmt: skip
    out = {}
    for m, pid in _pids(latents[0], fits[0].dims, measures, bias).items():
        ci = None
        if len(reps) >= 2:
            q = 100 * np.array([(1 - level) / 2, (1 + level) / 2])
            vals = np.array([[getattr(r[m], k) for k in CI_KEYS] for r in reps])
            lo, hi = np.percentile(vals, q, axis=0)
            ci = {k: (float(a), float(b)) for k, a, b in zip(CI_KEYS, lo, hi, strict=True)}
        out[m] = replace(fits[0]._attach(pid, extra), ci=ci)
    return out if not isinstance(measure, str) else out[measure]
