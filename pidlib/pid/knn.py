"""k-nearest-neighbour mutual information (bits): KSG for continuous pairs, Ross for a discrete Y.

For low-dimensional variables (a few columns: projections, probe scores), where no Gaussian or
flow model is assumed. Both estimators work in the max-norm on columns standardised to unit
variance (mutual information is unchanged by per-column affine maps; the k-NN estimate is not,
so a fixed convention is needed), after a seeded 1e-10 jitter that breaks ties (the
estimators assume continuous x; duplicated rows would give zero distances).

- :func:`ksg_mi`: Kraskov, Stoegbauer & Grassberger (2004), estimator 1:
  ``psi(k) + psi(n) - < psi(n_x + 1) + psi(n_y + 1) >``.
- :func:`mixed_mi`: Ross (2014), continuous x and discrete y:
  ``psi(n) - < psi(n_y) > + psi(k) - < psi(m) >`` (rows of classes with one member dropped).
- :func:`knn_pid`: MMI PID from the three k-NN mutual informations of a discrete target.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma

from pidlib.pid.result import PID

__all__ = ["knn_pid", "ksg_mi", "mixed_mi"]

_LN2 = math.log(2.0)


def _prepare(x: Any, name: str, seed: int, jitter: float = 1e-10) -> np.ndarray:
    """``x`` as a standardised float ``(n, d)`` array with a seeded tie-breaking jitter."""
    arr = np.asarray(x, dtype=float)
    arr = arr.reshape(len(arr), -1) if arr.ndim in (1, 2) else arr
    if arr.ndim != 2 or len(arr) < 2:
        raise ValueError(f"{name} must be (n,) or (n, d) with n >= 2, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf values")
    sd = arr.std(0)
    arr = (arr - arr.mean(0)) / np.where(sd > 0, sd, 1.0)
    return arr + jitter * np.random.default_rng(seed).standard_normal(arr.shape)


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k < n:
        raise ValueError(f"k must be an integer in [1, n), got {k!r} with n = {n}")
    return int(k)


def _count_within(points: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Number of other rows strictly closer (max-norm) than ``radius[i]`` to row ``i``."""
    tree = cKDTree(points)
    r = np.nextafter(radius, 0)
    return tree.query_ball_point(points, r, p=np.inf, return_length=True) - 1


def ksg_mi(x: Any, y: Any, k: int = 3, *, seed: int = 0) -> float:
    """KSG estimate (estimator 1) of ``I(X; Y)`` in bits; ``x`` ``(n, dx)``, ``y`` ``(n, dy)``.

    Nearly unbiased for low dimensions (``dx + dy`` up to ~6) and moderate dependence; it can
    be slightly negative when ``X`` and ``Y`` are independent. Not clipped.
    """
    xs, ys = _prepare(x, "x", seed), _prepare(y, "y", seed + 1)
    n = len(xs)
    if len(ys) != n:
        raise ValueError(f"x and y have different numbers of rows: {n} and {len(ys)}")
    k = _check_k(k, n)
    joint = np.hstack([xs, ys])
    eps = cKDTree(joint).query(joint, k=k + 1, p=np.inf)[0][:, -1]
    nx, ny = _count_within(xs, eps), _count_within(ys, eps)
    mi = digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(ny + 1))
    return float(mi / _LN2)


def mixed_mi(x: Any, y: Any, k: int = 3, *, seed: int = 0) -> float:
    """Ross (2014) estimate of ``I(X; Y)`` in bits for ``x`` ``(n, dx)`` and labels ``y`` ``(n,)``.

    For each row, the distance to its k-th nearest neighbour within its own class (``k`` capped
    at class size - 1) sets a radius; ``m`` counts the rows of any class within it. Rows whose
    class has a single member carry no neighbour and are dropped, as in scikit-learn.
    """
    xs = _prepare(x, "x", seed)
    labels = np.asarray(y).reshape(-1)
    if len(labels) != len(xs):
        raise ValueError(f"x and y have different numbers of rows: {len(xs)} and {len(labels)}")
    _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    codes = codes.reshape(-1)
    keep = counts[codes] > 1
    xs, codes = xs[keep], codes[keep]
    n = len(xs)
    _check_k(k, max(n, 2))
    radius = np.zeros(n)
    k_row = np.zeros(n)
    for c in np.unique(codes):
        rows = np.flatnonzero(codes == c)
        kc = min(k, len(rows) - 1)
        d = cKDTree(xs[rows]).query(xs[rows], k=kc + 1, p=np.inf)[0]
        radius[rows], k_row[rows] = d.reshape(len(rows), -1)[:, -1], kc
    m = _count_within(xs, radius) + 1  # the point itself, as in Ross's m_i with a strict radius
    n_class = np.bincount(codes)[codes]
    mi = digamma(n) + np.mean(digamma(k_row)) - np.mean(digamma(n_class)) - np.mean(digamma(m))
    return float(mi / _LN2)


def knn_pid(x1: Any, x2: Any, y: Any, k: int = 3, *, seed: int = 0) -> PID:
    """MMI PID (bits) from Ross k-NN estimates of ``I(X1;Y)``, ``I(X2;Y)``, ``I(X1,X2;Y)``.

    ``x1`` ``(n, d1)``, ``x2`` ``(n, d2)`` continuous (low-dimensional), ``y`` ``(n,)`` labels.
    Each estimate is clipped at 0 and the total raised to ``max(mi_1, mi_2)`` if sampling noise
    put it below (``info["raised_total"]``), so every atom is >= 0.
    """
    a1 = np.asarray(x1, dtype=float).reshape(len(x1), -1)
    a2 = np.asarray(x2, dtype=float).reshape(len(x2), -1)
    mi_1 = max(mixed_mi(a1, y, k, seed=seed), 0.0)
    mi_2 = max(mixed_mi(a2, y, k, seed=seed), 0.0)
    raw_total = max(mixed_mi(np.hstack([a1, a2]), y, k, seed=seed), 0.0)
    total = max(raw_total, mi_1, mi_2)
    info = {"estimator": "k-NN (Ross 2014)", "k": k, "raised_total": total - raw_total}
    return PID.from_terms(mi_1, mi_2, total, "mmi", info=info)
