"""Per-variable preprocessing of PID Flow: standardise + PCA, and marginal Gaussianization."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

__all__ = ["PCAFit", "fit_pca", "MarginalGaussianizer"]

#: Scale (normal units) of the logarithmic tails of :class:`MarginalGaussianizer`.
_TAIL = 1.0


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

    Each column is first centred and scaled by its median and standard deviation (``center``,
    ``scale``, shape ``(k,)``), so that nothing below depends on the column's units or offset.
    Then piecewise linear through ``(quantile of the fitted column, normal quantile)`` knots,
    ``knots`` ``(m, k)`` and ``normal`` ``(m,)``.
    Beyond the outer knots it continues with the outer slope and bends logarithmically
    (``asinh``), so that rows outside the fitted range (held-out rows, another run's
    activations) stay moderate even where ties make the outer slope steep. Strictly increasing
    per column, hence invertible: it leaves every mutual information unchanged.
    """

    knots: np.ndarray
    normal: np.ndarray
    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, max_knots: int = 512) -> MarginalGaussianizer:
        """Knots at ``min(n, max_knots)`` evenly spaced probabilities of ``x`` ``(n, k)``."""
        n = len(x)
        center = np.median(x, axis=0)
        sd = x.std(0)
        scale = np.where(sd > 0, sd, 1.0)
        p = np.linspace(0.5 / n, 1 - 0.5 / n, min(n, max_knots))
        knots = np.quantile((x - center) / scale, p, axis=0)
        # ties (repeated values) would give flat pieces: nudge knots to be strictly increasing
        # (by a step relative to the standardised column, so the nudge has no units)
        eps = 1e-9 * (np.abs(knots).max(0) + 1.0)
        knots = np.maximum.accumulate(knots + eps * np.arange(len(p))[:, None], axis=0)
        return cls(knots, ndtri(p), center, scale)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Gaussianized columns, same shape as ``x`` ``(n, k)``."""
        x = (np.asarray(x, dtype=float) - self.center) / self.scale
        out = np.empty_like(x, dtype=float)
        kn, g = self.knots, self.normal
        m = max(2, len(g) // 100)  # tail slopes from the outer 1% of knots (robust)
        for j in range(x.shape[1]):
            v = np.interp(x[:, j], kn[:, j], g)
            lo, hi = x[:, j] < kn[0, j], x[:, j] > kn[-1, j]
            s_lo = (g[m - 1] - g[0]) / (kn[m - 1, j] - kn[0, j])
            s_hi = (g[-1] - g[-m]) / (kn[-1, j] - kn[-m, j])
            v[lo] = g[0] - _TAIL * np.arcsinh((kn[0, j] - x[lo, j]) * s_lo / _TAIL)
            v[hi] = g[-1] + _TAIL * np.arcsinh((x[hi, j] - kn[-1, j]) * s_hi / _TAIL)
            out[:, j] = v
        return out
