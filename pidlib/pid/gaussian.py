"""Gaussian mutual information and the MMI and BROJA partial information decompositions (bits)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np
from scipy.linalg.blas import dtrsm
from scipy.linalg.lapack import dgesdd, dpotrf, dsyevd
from scipy.special import digamma

from pidlib.pid.result import MEASURES, PID

__all__ = ["gaussian_mi", "gaussian_pid", "logdet_bias", "mi_bias"]

_LN2 = math.log(2.0)
_SYM_TOL = 1e-9  # relative asymmetry |C - C^T| / max|C| tolerated (then symmetrised)
_PIVOT_TOL = 1e-12  # smallest relative conditional variance (Cholesky pivot) of a PD block


# --------------------------------------------------------------------------- validation


def _check_dims(dims: Sequence[int], size: int, n_blocks: int | None) -> tuple[int, ...]:
    try:
        out = tuple(dims)
    except TypeError:
        raise ValueError(f"dims must be a sequence of block sizes, got {dims!r}") from None
    if n_blocks is not None and len(out) != n_blocks:
        raise ValueError(f"dims must have {n_blocks} entries (d1, d2, dy), got {out!r}")
    if len(out) < 2:
        raise ValueError(f"dims must name at least two blocks, got {out!r}")
    for d in out:
        if isinstance(d, bool) or not isinstance(d, int | np.integer):
            raise ValueError(f"dims must be integers, got {out!r}")
        if d < 1:
            raise ValueError(f"every dimension must be >= 1, got dims={out!r}")
    if sum(out) != size:
        raise ValueError(f"dims {out!r} sum to {sum(out)} but cov is {size}x{size}")
    return tuple(int(d) for d in out)


def _check_cov(cov: Any) -> np.ndarray:
    try:
        raw = np.asarray(cov)
        c = None if np.iscomplexobj(raw) else raw.astype(float)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"cov must be a square matrix of real numbers; got {cov!r:.60} ({err})"
        ) from None
    if c is None:
        raise ValueError("cov is complex: a Gaussian PID needs a real covariance matrix")
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"cov must be a square 2-D matrix, got shape {c.shape}")
    if not math.isfinite(float(c.sum())) and not np.all(np.isfinite(c)):
        raise ValueError("cov contains NaN or inf")
    scale = float(np.max(np.abs(c))) if c.size else 0.0
    asym = float(np.max(np.abs(c - c.T))) if c.size else 0.0
    if asym > _SYM_TOL * max(scale, 1e-300):
        raise ValueError(
            f"cov is not symmetric (max |C - C^T| = {asym:.3g}, max |C| = {scale:.3g})"
        )
    return 0.5 * (c + c.T)


def _block_names(dims: tuple[int, ...]) -> list[str]:
    return {2: ["A", "B"], 3: ["X1", "X2", "Y"]}.get(len(dims), [f"#{i}" for i in range(len(dims))])


def _chol(corr: np.ndarray, idx: np.ndarray, label: str) -> np.ndarray:
    """Lower Cholesky factor of ``corr[idx, idx]``; ValueError naming ``label`` if not PD."""
    sub = corr.take(idx, 0).take(idx, 1)
    low, status = dpotrf(sub, lower=1, clean=1)
    if status != 0 or np.min(np.diag(low)) ** 2 < _PIVOT_TOL:
        lam = float(np.linalg.eigvalsh(sub)[0])
        kind = "not positive semi-definite" if lam < 0 else "singular (not positive definite)"
        raise ValueError(
            f"the {label} block of cov is {kind}: smallest eigenvalue of its correlation "
            f"matrix is {lam:.3g}"
        )
    return low


def _correlation(c: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    var = np.diag(c).copy()
    if np.any(var <= 0):
        i = int(np.argmin(var))
        owner = _block_names(dims)[int(np.searchsorted(np.cumsum(dims), i, side="right"))]
        raise ValueError(
            f"the {owner} block of cov is not positive definite: variance {i} is {var[i]:.3g}"
        )
    s = 1.0 / np.sqrt(var)
    return c * s[:, None] * s[None, :]


def _diagnose(corr: np.ndarray, dims: tuple[int, ...]) -> None:
    """Raise a ValueError naming the first marginal block, pair or joint that is not PD."""
    names = _block_names(dims)
    edges = np.concatenate([[0], np.cumsum(dims)])
    blocks = [np.arange(edges[i], edges[i + 1]) for i in range(len(dims))]
    for name, b in zip(names, blocks, strict=True):
        _chol(corr, b, name)
    for i in range(len(dims)):
        for j in range(i + 1, len(dims)):
            _chol(corr, np.concatenate([blocks[i], blocks[j]]), f"({names[i]}, {names[j]})")
    _chol(corr, np.arange(corr.shape[0]), "joint")


def _logdet_tri(low: np.ndarray) -> float:
    return 2.0 * float(np.sum(np.log(np.diag(low))))


# --------------------------------------------------------------------------- bias correction


def logdet_bias(d: int, n: int) -> float:
    """Bias ``E[ln|S|] - ln|Sigma|`` (nats) of the log-determinant of a d x d sample covariance.

    ``S`` is the unbiased sample covariance (divisor ``n - 1``, mean estimated) of ``n`` Gaussian
    draws, so ``(n - 1) S ~ Wishart_d(n - 1, Sigma)`` and
    ``E ln|S| = ln|Sigma| + sum_{i=1..d} psi((n - i) / 2) + d ln(2 / (n - 1))``.
    """
    if n <= d:
        raise ValueError(f"the bias correction needs n > d (got n={n}, d={d})")
    i = np.arange(1, d + 1)
    return float(np.sum(digamma((n - i) / 2.0)) + d * math.log(2.0 / (n - 1)))


def mi_bias(d_a: int, d_b: int, n: int) -> float:
    """Expected excess (bits) of the plug-in Gaussian ``I(A;B)`` over the truth, dims ``d_a, d_b``.

    The plug-in is ``(ln|S_A| + ln|S_B| - ln|S_AB|) / (2 ln 2)``; subtracting this makes it
    exactly unbiased for Gaussian data.
    """
    return (logdet_bias(d_a, n) + logdet_bias(d_b, n) - logdet_bias(d_a + d_b, n)) / (2 * _LN2)


def _check_n(n: Any, total_dim: int) -> int | None:
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise ValueError(f"n must be an integer sample size or None, got {n!r}")
    if n <= total_dim + 1:
        raise ValueError(
            f"n={n} samples cannot give a non-singular {total_dim}x{total_dim} covariance"
        )
    return int(n)


# --------------------------------------------------------------------------- estimators


def gaussian_mi(cov: Any, dims: Sequence[int], *, n: int | None = None) -> float:
    """Gaussian mutual information ``I(A;B) = 1/2 log2(|S_A| |S_B| / |S_AB|)`` in bits.

    ``cov`` is the joint covariance of the blocks listed in ``dims``; the last block is B and all
    the others together are A (so ``dims=(d1, d2, dy)`` gives ``I(X1, X2; Y)``). With ``n`` (the
    sample size ``cov`` was estimated from, unbiased covariance) the plug-in bias
    :func:`mi_bias` is subtracted and the result clipped at 0.
    """
    c = _check_cov(cov)
    dims = _check_dims(dims, c.shape[0], None)
    n = _check_n(n, c.shape[0])
    corr = _correlation(c, dims)
    d_a = sum(dims[:-1])
    a, b = np.arange(d_a), np.arange(d_a, c.shape[0])
    try:
        lds = [_logdet_tri(_chol(corr, i, "joint")) for i in (a, b, np.arange(c.shape[0]))]
    except ValueError:
        _diagnose(corr, dims)
        raise
    mi = (lds[0] + lds[1] - lds[2]) / (2 * _LN2)
    return max(mi - (mi_bias(d_a, dims[-1], n) if n is not None else 0.0), 0.0)


def _terms(corr: np.ndarray, dims: tuple[int, int, int]) -> dict[str, Any]:
    """Cholesky factors of Sigma_Y and of Cov(Y | X1), Cov(Y | X2), Cov(Y | X1, X2)."""
    d1, d2, dy = dims
    x1, x2, y = np.arange(d1), np.arange(d1, d1 + d2), np.arange(d1 + d2, d1 + d2 + dy)
    l_full = _chol(corr, np.arange(d1 + d2 + dy), "joint")
    l_y = _chol(corr, y, "Y")
    l_1 = _chol(corr, np.concatenate([x1, y]), "(X1, Y)")[d1:, d1:]
    l_2 = _chol(corr, np.concatenate([x2, y]), "(X2, Y)")[d2:, d2:]
    return {"y": l_y, "y|1": l_1, "y|2": l_2, "y|12": l_full[d1 + d2 :, d1 + d2 :]}


def _union_information(l_y, l_1, l_2, tol: float) -> tuple[float, dict[str, Any]]:
    """BROJA union information (bits) of a Gaussian system, in closed form, with a certificate.

    Theorem. Let S_i = Cov(Y | X_i) and S_Y = Cov(Y). The union information
    U = min over couplings q with q(x1, y) = p(x1, y), q(x2, y) = p(x2, y) of I_q(X1, X2; Y) is
        U = 1/2 log|S_Y| - max{ 1/2 log|S| : 0 < S <= S_1, S <= S_2 }        (Loewner order).
    (>=) For any coupling q (Gaussian or not) the linear-MMSE error covariance E of Y given
    (X1, X2) satisfies E <= S_i, because the best estimator from X_i alone is one candidate and its
    error covariance S_i is fixed by q's (X_i, Y) marginal; by maximum entropy
    h(Y | X1, X2) <= 1/2 log((2 pi e)^dy |E|), so I_q >= 1/2 log(|S_Y| / |E|) >= the right side.
    (<=) Take any feasible S and let P = S^-1 - S_Y^-1, P_i = S_i^-1 - S_Y^-1 (Fisher information
    of X_i about Y); S <= S_i gives P >= P_i >= 0. Let T = P Y + w, w ~ N(0, P), so that
    Cov(Y | T) = S. In p, T_i = A_i' N_i^-1 X_i (A_i = Sigma_{X_i Y} S_Y^-1, N_i = Cov(X_i | Y)) is
    sufficient for Y and is distributed as P_i Y + N(0, P_i). Build q: Y -> T -> T_i = P_i P^+ T
    + v_i with independent v_i ~ N(0, P_i - P_i P^+ P_i) (>= 0 because P_i <= P), then draw X_i
    from p(x_i | t_i), which does not depend on y by sufficiency. Then q(x_i, y) = p(x_i, y), and
    by data processing I_q(X1, X2; Y) <= I(T; Y) = 1/2 log(|S_Y| / |S|). The coupling is Gaussian,
    so Gaussian couplings lose nothing, and only the part of each source explained by Y (its
    sufficient statistic, of rank <= dy) matters: the problem lives in dy x dy matrices.
    Closed form. With S_1 = L1 L1' and L1^-1 L2 = U diag(s) V', the congruence by T = L1 U maps
    the constraints to S' <= I, S' <= diag(s^2). The diagonal of a feasible S' is bounded by
    min(1, s_j^2), Hadamard's inequality gives |S'| <= prod_j S'_jj, and diag(min(1, s_j^2)) is
    feasible; hence max log|S| = log|S_1| + sum_j log min(1, s_j^2) and
        U = I(X1;Y) + sum_j log+(1/s_j),  unique_1 = sum_j log+(s_j),  unique_2 = sum_j log+(1/s_j)
    (s_j^2: ratios of posterior variances along the common principal directions). For dy = 1 this
    is max(I(X1;Y), I(X2;Y)), i.e. BROJA = MMI (Barrett 2015).
    Certificate. The primal point S* = T diag(min(1, s^2)) T' and the Lagrange multipliers
    Z1 = T^-T diag([s_j >= 1]) T^-1, Z2 = T^-T diag([s_j < 1] / s_j^2) T^-1 of the max-det problem
    are formed explicitly; the duality gap between log|S*| and the dual bound
    -log|Z1 + Z2| - dy + tr(Z1 S_1) + tr(Z2 S_2), and the largest violation of S* <= S_i, measure
    the floating-point accuracy of the result.
    """
    dy = l_1.shape[0]
    k = dtrsm(1.0, l_1, l_2, lower=1)  # BLAS trsm: LAPACK trtrs stalls under threaded OpenBLAS
    u, s, _, status = dgesdd(k, compute_uv=1)
    if status != 0:  # LAPACK's divide and conquer failed: fall back to numpy's driver
        u, s, _ = np.linalg.svd(k)
    i1 = (_logdet_tri(l_y) - _logdet_tri(l_1)) / (2 * _LN2)
    union = i1 + float(np.sum(np.maximum(-np.log(s), 0.0))) / _LN2
    # certificate, in the correlation coordinates of Y
    t = l_1 @ u
    s_star = (t * np.minimum(1.0, s * s)) @ t.T
    sigma_1, sigma_2 = l_1 @ l_1.T, l_2 @ l_2.T
    t_inv = dtrsm(1.0, l_1, np.eye(dy), lower=1).T @ u  # T^-T
    z1 = (t_inv * (s >= 1.0)) @ t_inv.T
    z2 = (t_inv * np.where(s < 1.0, 1.0 / (s * s), 0.0)) @ t_inv.T
    primal = np.linalg.slogdet(s_star)[1]
    dual = -np.linalg.slogdet(z1 + z2)[1] - dy + np.sum(z1 * sigma_1) + np.sum(z2 * sigma_2)
    gap = abs(dual - primal) / (2 * _LN2)
    resid = 0.0
    for low, sig in ((l_1, sigma_1), (l_2, sigma_2)):
        w = dtrsm(1.0, low, sig - s_star, lower=1)
        w = dtrsm(1.0, low, w.T.copy(), lower=1)
        resid = max(resid, -float(dsyevd(0.5 * (w + w.T), compute_v=0)[0][0]))
    converged = bool(gap <= tol * max(1.0, union) and resid <= max(tol, 1e-12))
    info = {
        "method": "closed form (generalized eigenvalues)",
        "iterations": 0,
        "converged": converged,
        "gap": float(gap),
        "residual": max(resid, 0.0),
        "variance_ratios": tuple(float(v) for v in np.sort(s**2)),
    }
    return union, info


def gaussian_pid(
    cov: Any,
    dims: Sequence[int],
    measure: str = "mmi",
    *,
    n: int | None = None,
    tol: float = 1e-10,
) -> PID:
    """Partial information decomposition of ``I(X1, X2; Y)`` for a jointly Gaussian system (bits).

    ``cov`` is the joint covariance ordered ``[X1, X2, Y]`` with ``dims=(d1, d2, dy)``.
    ``measure="mmi"``: redundancy ``min(I(X1;Y), I(X2;Y))`` (the paper's). ``measure="broja"``:
    the BROJA union information ``U`` (minimum of ``I_q(X1, X2; Y)`` over couplings with the
    pairwise marginals of ``p``), computed exactly in closed form (see
    :func:`_union_information`); then ``S = I12 - U``, ``R = I1 + I2 - U``, ``U1 = U - I2``,
    ``U2 = U - I1``. ``info`` records the method, ``iterations`` (0), ``converged``, the duality
    ``gap`` (bits) and feasibility ``residual`` of the certificate; ``converged`` is False, with
    a ``RuntimeWarning``, when the gap exceeds ``tol * max(1, U)`` (ill-conditioned input).

    ``n``: sample size behind ``cov`` (unbiased covariance). Each of ``I(X1;Y)``, ``I(X2;Y)``,
    ``I(X1,X2;Y)`` then has its exact plug-in bias :func:`mi_bias` subtracted and is clipped at 0,
    with ``I(X1,X2;Y)`` raised to at least ``max(I(X1;Y), I(X2;Y))``. BROJA's union information
    has no known exact bias; it is scaled by the same factor as ``I(X1,X2;Y)``,
    ``U_c = U * I12_c / I12`` (the convention of Venkatesh et al., NeurIPS 2023, which had the
    smallest atom bias of the corrections we simulated), then clipped into
    ``[max(I1, I2), min(I1 + I2, I12)]`` of the corrected terms, so every atom stays >= 0 and the
    atoms still sum to the corrected total. Near ties (``I(X1;Y) ~ I(X2;Y)`` for MMI, posterior
    variance ratios ~ 1 for BROJA) the min/max has an O(n^-1/2) bias that no such correction
    removes.
    """
    if measure not in MEASURES:
        raise ValueError(f"unknown PID measure {measure!r}; expected one of {MEASURES}")
    if not (isinstance(tol, Real) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    c = _check_cov(cov)
    d1, d2, dy = _check_dims(dims, c.shape[0], 3)
    n = _check_n(n, c.shape[0])
    corr = _correlation(c, (d1, d2, dy))
    try:
        f = _terms(corr, (d1, d2, dy))
    except ValueError:
        _diagnose(corr, (d1, d2, dy))
        raise
    ld_y = _logdet_tri(f["y"])
    i1 = max((ld_y - _logdet_tri(f["y|1"])) / (2 * _LN2), 0.0)
    i2 = max((ld_y - _logdet_tri(f["y|2"])) / (2 * _LN2), 0.0)
    i12 = max((ld_y - _logdet_tri(f["y|12"])) / (2 * _LN2), i1, i2)
    info: dict[str, Any] = {"method": "closed form", "iterations": 0, "converged": True, "gap": 0.0}
    union = None
    if measure == "broja":
        union, info = _union_information(f["y"], f["y|1"], f["y|2"], tol)
        info["tol"] = tol
        info["union_information"] = float(union)
        if not info["converged"]:
            warnings.warn(
                f"gaussian_pid: BROJA certificate gap {info['gap']:.3g} bits exceeds "
                f"tol={tol:g} x max(1, U) (ill-conditioned covariance?)",
                RuntimeWarning,
                stacklevel=2,
            )
    if n is not None:
        b12 = mi_bias(d1 + d2, dy, n)
        info["bias"] = {"mi_1": mi_bias(d1, dy, n), "mi_2": mi_bias(d2, dy, n), "total": b12}
        i1 = max(i1 - info["bias"]["mi_1"], 0.0)
        i2 = max(i2 - info["bias"]["mi_2"], 0.0)
        i12_c = max(i12 - b12, i1, i2)
        if union is not None:
            union = union * i12_c / i12 if i12 > 0 else union
        i12 = i12_c
    return PID.from_terms(i1, i2, i12, measure, union=union, info=info)
