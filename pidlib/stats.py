"""Confidence intervals, one implementation each: Student t, Wilson, and differences."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special

__all__ = ["t_interval", "wilson_interval", "difference_interval"]


def _check_level(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return level


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of ``values`` (NaNs dropped) and its Student-t interval.

    No values: all NaN. One value: the value and NaN bounds (an interval needs two). Values that
    are all equal: a zero-width interval.
    """
    _check_level(level)
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size == 1:
        return m, math.nan, math.nan
    if np.allclose(v, m):
        return m, m, m
    half = float(special.stdtrit(v.size - 1, 0.5 + level / 2) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``k / n``."""
    _check_level(level)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"wilson_interval: need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    z = special.ndtri(0.5 + level / 2)
    p, d = k / n, 1 + z * z / n
    mid, half = (p + z * z / (2 * n)) / d, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (0.0 if k == 0 else mid - half), (1.0 if k == n else mid + half)


def difference_interval(
    a: float, a_lo: float, a_hi: float, b: float, b_lo: float, b_hi: float
) -> tuple[float, float, float]:
    """``(b - a, lo, hi)`` for two *independent* estimates with symmetric intervals: the
    half-widths add in quadrature. Works elementwise on arrays."""
    d = np.subtract(b, a)
    half = np.sqrt(((np.subtract(a_hi, a_lo)) / 2) ** 2 + ((np.subtract(b_hi, b_lo)) / 2) ** 2)
    return d, d - half, d + half
