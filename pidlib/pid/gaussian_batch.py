"""The Gaussian MMI and BROJA PIDs of many covariances at once (bits): the half-subsample
replicates of an interval, in a few stacked LAPACK calls instead of one call chain each."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pidlib.pid.gaussian import gaussian_pid, mi_bias
from pidlib.pid.result import MEASURES, PID

__all__ = ["KEYS", "pid_vectors"]

#: The order of a vector's entries: the four atoms, I(X1,X2;Y), I(X1;Y), I(X2;Y).
KEYS: tuple[str, ...] = (*PID.ATOMS, "total", "mi_1", "mi_2")

_LN2 = math.log(2.0)
_PIVOT_TOL = 1e-12  # as gaussian.py: smallest squared Cholesky pivot of a PD correlation block


def _logdets(chol: np.ndarray, start: int) -> np.ndarray:
    """Log-determinants ``(R,)`` of the trailing diagonal blocks (from ``start``) of stacked
    lower Cholesky factors ``(R, k, k)``, i.e. of the conditional covariances."""
    return 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)[:, start:]).sum(1)


def _cholesky(corr: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stacked Cholesky factors of ``corr[:, idx][:, :, idx]`` and a mask ``(R,)`` of the
    matrices that are positive definite with every pivot above the tolerance."""
    sub = corr[:, idx][:, :, idx]
    ok = np.ones(len(sub), bool)
    try:
        low = np.linalg.cholesky(sub)
    except np.linalg.LinAlgError:  # at least one is not PD: factor one by one
        low = np.zeros_like(sub)
        for r, s in enumerate(sub):
            try:
                low[r] = np.linalg.cholesky(s)
            except np.linalg.LinAlgError:
                ok[r], low[r] = False, np.eye(len(idx))
    piv = np.diagonal(low, axis1=1, axis2=2).min(1)
    return low, ok & (piv * piv >= _PIVOT_TOL)


def pid_vectors(
    covs: np.ndarray, dims: Sequence[int], measures: Sequence[str], n: int | None = None
) -> dict[str, np.ndarray]:
    """``{measure: (R, 7)}``: the :func:`~pidlib.pid.gaussian.gaussian_pid` of each covariance of
    ``covs`` ``(R, D, D)`` (ordered ``[X1, X2, Y]``, ``dims = (d1, d2, dy)``), as vectors in
    :data:`KEYS` order, with the bias correction for ``n`` rows when ``n`` is given.

    The same formulas as :func:`~pidlib.pid.gaussian.gaussian_pid` on stacked matrices (equal to
    it within floating-point rounding, about 1e-12 bits; tested); BROJA's certificate is not
    formed. A covariance that is not positive definite, or has a zero variance, is passed to
    :func:`~pidlib.pid.gaussian.gaussian_pid` alone, which raises the error naming the block.
    """
    bad = [m for m in measures if m not in MEASURES]
    if bad:
        raise ValueError(f"unknown PID measure {bad[0]!r}; expected one of {MEASURES}")
    covs = np.asarray(covs, dtype=float)
    d1, d2, dy = (int(d) for d in dims)
    total = d1 + d2 + dy
    if covs.ndim != 3 or covs.shape[1:] != (total, total):
        raise ValueError(f"pid_vectors: covs must be (R, {total}, {total}), got {covs.shape}")
    var = np.diagonal(covs, axis1=1, axis2=2)
    good = (var > 0).all(1)
    s = 1.0 / np.sqrt(np.where(var > 0, var, 1.0))
    corr = 0.5 * (covs + covs.transpose(0, 2, 1)) * s[:, :, None] * s[:, None, :]
    x1, x2 = np.arange(d1), np.arange(d1, d1 + d2)
    y = np.arange(d1 + d2, total)
    l_y, ok_y = _cholesky(corr, y)
    l_1, ok_1 = _cholesky(corr, np.concatenate([x1, y]))
    l_2, ok_2 = _cholesky(corr, np.concatenate([x2, y]))
    l_12, ok_12 = _cholesky(corr, np.arange(total))
    good &= ok_y & ok_1 & ok_2 & ok_12
    ld_y = _logdets(l_y, 0)
    raw_1 = (ld_y - _logdets(l_1, d1)) / (2 * _LN2)
    i1 = np.maximum(raw_1, 0.0)
    i2 = np.maximum((ld_y - _logdets(l_2, d2)) / (2 * _LN2), 0.0)
    i12 = np.maximum.reduce([(ld_y - _logdets(l_12, d1 + d2)) / (2 * _LN2), i1, i2])
    union = None
    if "broja" in measures:  # raw I(X1;Y) + sum log+(1/s_j), s: singular values of L1^-1 L2
        c1, c2 = l_1[:, d1:, d1:], l_2[:, d2:, d2:]
        sv = np.linalg.svd(np.linalg.solve(c1, c2), compute_uv=False)
        union = raw_1 + np.maximum(-np.log(sv), 0.0).sum(1) / _LN2
    if n is not None:
        i1 = np.maximum(i1 - mi_bias(d1, dy, n), 0.0)
        i2 = np.maximum(i2 - mi_bias(d2, dy, n), 0.0)
        i12_c = np.maximum.reduce([i12 - mi_bias(d1 + d2, dy, n), i1, i2])
        if union is not None:
            scale = np.divide(i12_c, i12, out=np.ones_like(i12), where=i12 > 0)
            union = np.where(i12 > 0, union * scale, union)
        i12 = i12_c
    out = {}
    for m in measures:
        u = np.maximum(i1, i2) if m == "mmi" else np.maximum.reduce([union, i1, i2])
        u = np.minimum.reduce([u, i1 + i2, i12])
        out[m] = np.stack([i1 + i2 - u, u - i2, u - i1, i12 - u, i12, i1, i2], 1)
    for r in np.flatnonzero(~good):  # raises the scalar path's error, naming the block
        for m in measures:
            pid = gaussian_pid(covs[r], (d1, d2, dy), m, n=n)
            out[m][r] = [getattr(pid, k) for k in KEYS]
    return out
