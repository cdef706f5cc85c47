"""Per-variable preprocessing of PID Flow: standardise + PCA, and marginal Gaussianization."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

__all__ = ["PCAFit", "fit_pca", "MarginalGaussianizer"]


@dataclass(frozen=True, eq=False)
class PCAFit:
    """Standardise -> PCA -> standardise of one variable; ``transform`` applies it to new rows.

    ``mean``, ``scale``: per input column (shape ``(d,)``); ``components``: ``(d, k)``;
    ``score_scale``: the standard deviation of each kept score ``(k,)``; ``explained``: fraction
    of the standardised variable's variance that the ``k`` kept components carry.
    """

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    score_scale: np.ndarray
    explained: float

    @property
    def dims(self) -> int:
        """Number of kept components ``k``."""
        return self.components.shape[1]

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Unit-variance PCA scores ``(n, k)`` of rows ``x`` ``(n, d)``."""
        return ((x - self.mean) / self.scale) @ self.components / self.score_scale


def fit_pca(x: np.ndarray, variance: float = 0.95, max_dims: int = 32) -> PCAFit:
    """Fit :class:`PCAFit` to ``x`` ``(n, d)``: the fewest components holding ``variance`` of the
    variance of the standardised columns, at most ``max_dims`` and at most the numerical rank.

    Constant columns are kept but contribute nothing; component signs are fixed (largest loading
    positive) so that the fit is deterministic.
    """
    mean = x.mean(0)
    sd = x.std(0)
    scale = np.where(sd > 0, sd, 1.0)
    _, s, vt = np.linalg.svd((x - mean) / scale, full_matrices=False)
    var = s**2
    rank = int(np.sum(s > s[0] * max(x.shape) * np.finfo(float).eps))
    frac = np.cumsum(var) / var.sum()
    k = min(int(np.searchsorted(frac, variance - 1e-12)) + 1, max_dims, rank)
    comps = vt[:k].T
    comps = comps * np.sign(comps[np.argmax(np.abs(comps), 0), np.arange(k)])
    scores = ((x - mean) / scale) @ comps
    return PCAFit(mean, scale, comps, scores.std(0), float(frac[k - 1]))


@dataclass(frozen=True, eq=False)
class MarginalGaussianizer:
    """Monotone map of each column to a standard normal marginal (the Gaussian copula transform).

    Piecewise linear through ``(quantile of the fitted column, normal quantile)`` knots, ``knots``
    ``(m, k)`` and ``normal`` ``(m,)``, extended linearly beyond the outer knots. Strictly
    increasing per column, hence invertible: it leaves every mutual information unchanged.
    """

    knots: np.ndarray
    normal: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, max_knots: int = 512) -> MarginalGaussianizer:
        """Knots at ``min(n, max_knots)`` evenly spaced probabilities of ``x`` ``(n, k)``."""
        n = len(x)
        p = np.linspace(0.5 / n, 1 - 0.5 / n, min(n, max_knots))
        knots = np.quantile(x, p, axis=0)
        # ties (repeated values) would give flat pieces: nudge knots to be strictly increasing
        eps = 1e-9 * (np.abs(knots).max(0) + 1.0)
        knots = np.maximum.accumulate(knots + eps * np.arange(len(p))[:, None], axis=0)
        return cls(knots, ndtri(p))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Gaussianized columns, same shape as ``x`` ``(n, k)``."""
        out = np.empty_like(x, dtype=float)
        kn, g = self.knots, self.normal
        m = max(2, len(g) // 100)  # tail slopes from the outer 1% of knots (robust)
        for j in range(x.shape[1]):
            v = np.interp(x[:, j], kn[:, j], g)
            lo, hi = x[:, j] < kn[0, j], x[:, j] > kn[-1, j]
            v[lo] = g[0] + (x[lo, j] - kn[0, j]) * (g[m - 1] - g[0]) / (kn[m - 1, j] - kn[0, j])
            v[hi] = g[-1] + (x[hi, j] - kn[-1, j]) * (g[-1] - g[-m]) / (kn[-1, j] - kn[-m, j])
            out[:, j] = v
        return out
