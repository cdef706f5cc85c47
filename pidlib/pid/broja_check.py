"""The Gaussian BROJA closed form checked against direct numerical optimisation (bits).

The union information of a Gaussian system is ``U = ½ log|Σ_Y| − max ½ log|S|`` over
``0 ≺ S ⪯ Cov(Y | X1)``, ``S ⪯ Cov(Y | X2)`` (see :func:`pidlib.pid.gaussian.gaussian_pid`).
Here the max-determinant problem is solved by a generic constrained optimiser (SLSQP over the
Cholesky factor of ``S``, constraints: smallest eigenvalues of ``Cov(Y | X_i) − S`` >= 0) and
compared with the closed form's ``U = I(X1,X2;Y) − S``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import joblib
import numpy as np
import pandas as pd
from scipy.optimize import minimize

from pidlib.core.watchdog import local_workers
from pidlib.pid import canonical
from pidlib.pid.gaussian import gaussian_pid

__all__ = ["conditional_covariance", "numeric_union", "broja_numeric_check"]


def conditional_covariance(cov: np.ndarray, target: slice, given: slice) -> np.ndarray:
    """``Cov(Y | X) = Σ_YY − Σ_YX Σ_XX⁻¹ Σ_XY`` for the blocks ``target`` (Y) and ``given`` (X)."""
    syy, syx, sxx = cov[target, target], cov[target, given], cov[given, given]
    return syy - syx @ np.linalg.solve(sxx, syx.T)


def numeric_union(cov: np.ndarray, dims: tuple[int, int, int]) -> float:
    """Union information (bits) by a numerical interior-point solve of the max-determinant
    problem: maximise ``log|S| + μ (log|S1 − S| + log|S2 − S|)`` over the Cholesky factor of
    ``S`` with a generic quasi-Newton optimiser, for ``μ`` from 1e-1 down to 1e-10 (the barrier's
    duality gap is ``2 dy μ`` nats)."""
    d1, d2, dy = dims
    y, x1, x2 = slice(d1 + d2, None), slice(0, d1), slice(d1, d1 + d2)
    s1, s2 = conditional_covariance(cov, y, x1), conditional_covariance(cov, y, x2)
    tri = np.tril_indices(dy)

    def objective(v: np.ndarray, mu: float) -> float:
        low = np.zeros((dy, dy))
        low[tri] = v
        s = low @ low.T
        eigs = [np.linalg.eigvalsh(m) for m in (s, s1 - s, s2 - s)]
        if any(e[0] <= 0 for e in eigs):
            return 1e12  # outside the feasible set (not positive definite)
        logdets = [float(np.sum(np.log(e))) for e in eigs]
        return -(logdets[0] + mu * (logdets[1] + logdets[2]))

    floor = min(np.linalg.eigvalsh(s1)[0], np.linalg.eigvalsh(s2)[0])
    v = np.linalg.cholesky(0.5 * floor * np.eye(dy))[tri]
    for mu in 10.0 ** -np.arange(1, 11, 0.25):
        v = minimize(objective, v, args=(mu,), method="BFGS", options={"gtol": 1e-12}).x
    low = np.zeros((dy, dy))
    low[tri] = v
    best = np.linalg.slogdet(low @ low.T)[1]
    return 0.5 * (np.linalg.slogdet(cov[y, y])[1] - best) / math.log(2)


def _system_row(dy: int, seed: int) -> dict:
    system = canonical.random_system(4, 4, dy, seed=seed)
    pid = gaussian_pid(system.cov, system.dims, "broja")
    closed = pid.total - pid.synergy
    numeric = numeric_union(system.cov, system.dims)
    return {"dy": dy, "seed": seed, "closed_form": closed, "numeric": numeric,
            "difference": numeric - closed, "unique_1": pid.unique_1,
            "unique_2": pid.unique_2}  # fmt: skip


def broja_numeric_check(
    dys: Sequence[int] = (2, 3), seeds: Sequence[int] = range(5), n_jobs: int = 1
) -> pd.DataFrame:
    """Per random Gaussian system (``d1 = d2 = 4``, target dimension ``dy``): the closed-form
    union information, the numerically optimised one, and their difference (bits). One job per
    system on ``n_jobs`` processes (joblib; the table does not depend on ``n_jobs``)."""
    jobs = [joblib.delayed(_system_row)(dy, seed) for dy in dys for seed in seeds]
    with local_workers(n_jobs):
        return pd.DataFrame(joblib.Parallel()(jobs))
