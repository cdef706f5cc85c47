"""Discrete-target cross-check: BROJA/MMI PID (bits) of sources discretised by probes or k-means.

After the discretise-then-solve estimator of Liang et al. (NeurIPS 2023; their BATCH variant
learns the coupling with networks instead), for a discrete answer Y: each source is mapped to a
few levels, the empirical joint distribution of (D1, D2, Y) is formed, and its PID is computed
exactly (:func:`pidlib.pid.broja.pmf_pid`: BROJA with a duality-gap certificate, MMI in closed
form). Unlike PID Flow it makes no Gaussian assumption, so it sees XOR-like synergy -- when the
discretisation keeps the bits that carry it.

Discretisers (per source, :func:`discretise`):

- ``"levels"``: the source already takes at most ``max_levels`` distinct values (rows); they are
  used as they are.
- ``"probe"``: ``n_folds``-fold cross-fitted (stratified) logistic regression of Y on the
  standardised source; each row gets the log-probabilities predicted by the probe that did not
  see it (out of fold), and these vectors (the log-odds, for a binary Y) are grouped by k-means
  into at most ``n_levels`` levels. ``p(y | x_i)`` is a sufficient statistic of ``x_i`` for Y,
  so the probe keeps ``I(X_i; Y)`` up to the probe's fit and the grouping; out-of-fold
  predictions keep the probe from memorising its own rows, and k-means (unlike quantile bins,
  which cut through a group whenever its share is not a multiple of ``1 / n_levels``) puts
  the level boundaries in the gaps of the predictions. It is blind by construction to
  information that a source carries only jointly with the other (XOR: each source alone says
  nothing about Y).
- ``"kmeans"``: k-means with ``n_levels`` clusters of the source as given (k-means is unchanged
  by shifts, rotations and a common scale; rescale columns with different units first:
  per-column standardisation would shrink exactly the high-variance directions that separate
  clusters). Y is never seen, so the partition is a function of the sources alone and the
  plug-in on its cells has no selection bias: no cross-fitting is needed (cluster labels of
  separately fitted folds would also not be comparable). It keeps synergy when the relevant
  bits are cluster structure and loses it when they are not (a sign bit of an isotropic
  Gaussian, ``gauss_xor``).
- ``"auto"`` (default): "levels" when the source has at most ``max_levels`` distinct rows,
  else "probe".

The estimate is the plug-in PID of the discretised sample: every MI is biased upward by about
``(cells - 1) / (2 n ln 2)`` bits (Miller-Madow; ``info["plugin_bias_total"]`` for the total).
``n_bootstrap`` resamples of the discretised rows (discretisation held fixed) give percentile
intervals; ``info["bootstrap_mean"]`` shows the resampling bias next to them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from pidlib.pid.broja import pmf_pid
from pidlib.pid.result import PID, measures_of

__all__ = ["DISCRETISERS", "discrete_pid", "discretise", "empirical_pmf", "target_codes"]

#: The discretisers of :func:`discretise`.
DISCRETISERS: tuple[str, ...] = ("auto", "levels", "probe", "kmeans")

_CI_KEYS = (*PID.ATOMS, "total", "mi_1", "mi_2")


def target_codes(y: Any, max_classes: int = 64) -> np.ndarray:
    """Labels ``y`` ``(n,)`` (any hashable dtype) as int64 codes ``0..ky-1`` in sorted order."""
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or len(arr) == 0:
        raise ValueError(f"y must be a non-empty 1-D array of labels, got shape {arr.shape}")
    classes, codes = np.unique(arr, return_inverse=True)
    if len(classes) > max_classes:
        raise ValueError(
            f"y has {len(classes)} distinct values; the cross-check needs a discrete target "
            f"(at most {max_classes} classes)"
        )
    return codes.astype(np.int64)


def _as_source(x: Any, name: str, n: int) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    arr = arr.reshape(len(arr), -1) if arr.ndim in (1, 2) else arr
    if arr.ndim != 2 or len(arr) != n:
        raise ValueError(f"{name} must be (n,) or (n, d) with n = {n}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return arr


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means labels ``(n,)`` of the rows of ``x`` (at most ``k`` clusters; one BLAS thread)."""
    k = min(k, len(np.unique(x, axis=0)))
    if k < 2:
        return np.zeros(len(x), dtype=np.int64)
    from sklearn.cluster import KMeans  # here, as the probes below: see _probe_codes

    with threadpool_limits(limits=1):
        return KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x).labels_


def _probe_codes(
    x: np.ndarray, y: np.ndarray, n_levels: int, n_folds: int, seed: int
) -> tuple[np.ndarray, dict]:
    counts = np.bincount(y)
    if len(counts) < 2:
        raise ValueError("probe discretisation: y has a single class; nothing to predict")
    if counts.min() < n_folds:
        raise ValueError(
            f"probe discretisation: every class of y needs >= n_folds={n_folds} rows for the "
            f"cross-fitting; class counts are {counts.tolist()}"
        )
    # imported here: sklearn costs a chapter that reads its cross-checks from the cache 1.4 s
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    proba = np.zeros((len(y), len(counts)))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with threadpool_limits(limits=1):
        for train, test in folds.split(x, y):
            probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
            probe.fit(x[train], y[train])
            proba[test] = probe.predict_proba(x[test])
    accuracy = float(np.mean(proba.argmax(1) == y))
    logp = np.log(np.clip(proba, 1e-12, None))
    scores = logp[:, 1:] - logp[:, :1]  # log-odds against the first class, (n, ky - 1)
    raw = _kmeans(scores, n_levels, seed)
    return raw, {"probe_accuracy": accuracy}


def discretise(
    x: Any,
    y: Any,
    *,
    method: str = "auto",
    n_levels: int = 4,
    n_folds: int = 5,
    max_levels: int = 16,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Codes ``(n,)`` (int64, ``0..k-1``) of the source ``x`` ``(n, d)`` and what was done.

    ``y`` ``(n,)`` labels (used by "probe" only). See the module docstring for the methods.
    The info dict has ``method`` (the one used), ``levels`` (k) and method diagnostics.
    """
    if method not in DISCRETISERS:
        raise ValueError(f"unknown discretiser {method!r}; expected one of {DISCRETISERS}")
    if n_levels < 2 or n_folds < 2:
        raise ValueError(f"need n_levels >= 2 and n_folds >= 2, got {n_levels}, {n_folds}")
    codes_y = target_codes(y)
    arr = _as_source(x, "x", len(codes_y))
    distinct, inverse = np.unique(arr, axis=0, return_inverse=True)
    if method == "auto":
        method = "levels" if len(distinct) <= max_levels else "probe"
    info: dict[str, Any] = {"method": method}
    if method == "levels":
        if len(distinct) > max_levels:
            raise ValueError(
                f"levels: x has {len(distinct)} distinct rows > max_levels={max_levels}; "
                "use 'probe' or 'kmeans'"
            )
        raw = inverse.reshape(-1)
    elif method == "probe":
        raw, extra = _probe_codes(arr, codes_y, n_levels, n_folds, seed)
        info.update(extra, n_folds=n_folds)
    else:
        raw = _kmeans(arr, n_levels, seed)
    codes = np.unique(raw, return_inverse=True)[1].reshape(-1).astype(np.int64)
    info["levels"] = int(codes.max()) + 1
    return codes, info


def empirical_pmf(
    d1: np.ndarray, d2: np.ndarray, y: np.ndarray, shape: tuple[int, int, int] | None = None
) -> np.ndarray:
    """Empirical pmf ``p[d1, d2, y]`` ``(k1, k2, ky)`` of three int code arrays ``(n,)``.

    ``shape`` defaults to ``1 + max`` of each code array.
    """
    shape = shape or (int(d1.max()) + 1, int(d2.max()) + 1, int(y.max()) + 1)
    counts = np.zeros(shape)
    np.add.at(counts, (d1, d2, y), 1.0)
    return counts / counts.sum()


def discrete_pid(
    x1: Any,
    x2: Any,
    y: Any,
    *,
    measure: str | Sequence[str] = "broja",
    discretiser: str | tuple[str, str] = "auto",
    n_levels: int = 4,
    n_folds: int = 5,
    max_levels: int = 16,
    seed: int = 0,
    n_bootstrap: int = 0,
    ci_level: float = 0.95,
) -> PID | dict[str, PID]:
    """Cross-check PID (bits) of ``I(X1, X2; Y)`` for a discrete target.

    ``x1`` ``(n, d1)``, ``x2`` ``(n, d2)`` continuous or discrete; ``y`` ``(n,)`` labels.
    ``discretiser`` names one method for both sources or a pair; ``n_levels`` is the number of
    probe bins / clusters per source. Returns a :class:`PID` for one ``measure`` ("broja" or
    "mmi") or a dict measure -> PID for several, all from the same discretised sample. ``info``
    records the discretisation of each source, the cell counts ``(k1, k2, ky)``, ``n``, the
    Miller-Madow bias scale of the total and (BROJA) the solver's certificate ``broja_gap``.
    ``n_bootstrap > 0`` adds ``ci``: percentile intervals (``ci_level``) over resamples of the
    discretised rows. They hold the discretisation fixed (its own variability is left out) and
    do not remove the plug-in's upward bias; ``info["bootstrap_mean"]`` shows it beside them.
    Same arguments -> identical results.
    """
    measures = measures_of(measure)
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level!r}")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
    codes_y = target_codes(y)
    n = len(codes_y)
    methods = (discretiser, discretiser) if isinstance(discretiser, str) else tuple(discretiser)
    kwargs = {"n_levels": n_levels, "n_folds": n_folds, "max_levels": max_levels, "seed": seed}
    d1, info1 = discretise(_as_source(x1, "x1", n), codes_y, method=methods[0], **kwargs)
    d2, info2 = discretise(_as_source(x2, "x2", n), codes_y, method=methods[1], **kwargs)
    shape = (info1["levels"], info2["levels"], int(codes_y.max()) + 1)
    cells = shape[0] * shape[1]
    info = {
        "estimator": "discretised plug-in",
        "discretisation": (info1, info2),
        "cells": shape,
        "n": n,
        "n_levels": n_levels,
        "seed": seed,
        "plugin_bias_total": (cells - 1) * (shape[2] - 1) / (2 * n * math.log(2)),
    }
    pmf = empirical_pmf(d1, d2, codes_y, shape)
    out = {m: pmf_pid(pmf, m, info=info) for m in measures}
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        reps = {m: [] for m in measures}
        for _ in range(n_bootstrap):
            idx = rng.integers(0, n, n)
            p = empirical_pmf(d1[idx], d2[idx], codes_y[idx], shape)
            for m in measures:
                rep = pmf_pid(p, m)
                reps[m].append([getattr(rep, k) for k in _CI_KEYS])
        q = 100 * np.array([(1 - ci_level) / 2, (1 + ci_level) / 2])
        for m in measures:
            vals = np.asarray(reps[m])
            lo, hi = np.percentile(vals, q, axis=0)
            ci = {k: (float(a), float(b)) for k, a, b in zip(_CI_KEYS, lo, hi, strict=True)}
            mean = dict(zip(_CI_KEYS, vals.mean(0).tolist(), strict=True))
            extra = {"n_bootstrap": n_bootstrap, "ci_level": ci_level, "bootstrap_mean": mean}
            out[m] = replace(out[m], ci=ci, info={**out[m].info, **extra})
    return out if not isinstance(measure, str) else out[measure]
