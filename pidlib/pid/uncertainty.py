"""Resampling for PID Flow's intervals: folds for cross-fitting, half-subsamples, Wald intervals.

Why not the percentile bootstrap of latent rows: a resample with duplicated rows has about
0.63 n distinct rows, so the Gaussian plug-in's upward bias in it is larger than the bias
correction (computed for the nominal n) removes. The replicates then sit above the estimate, and
near zero information the interval excludes it. Half-subsamples (``m`` of the ``n`` rows, drawn
without replacement) are corrected with their own size ``m``; the variance of their estimates
times ``m / (n - m)`` estimates the variance of the estimate from all ``n`` rows (the delete-d
jackknife, Shao and Wu 1989), a factor of 1 for ``m = n / 2``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from scipy import stats

from pidlib.pid.result import PID

__all__ = ["SCHEMES", "CI_KEYS", "strata", "fold_indices", "half_subsamples", "mean_pid", "wald_ci"]

#: Interval schemes of :func:`pidlib.pid.flow.pid_flow`.
SCHEMES: tuple[str, ...] = ("crossfit", "bootstrap")

#: The quantities an interval is given for: the four atoms, I(X1,X2;Y), I(X1;Y), I(X2;Y).
CI_KEYS: tuple[str, ...] = (*PID.ATOMS, "total", "mi_1", "mi_2")

#: A target with at most this many distinct rows (and each row repeated four times on average)
#: is treated as discrete (classes).
MAX_CLASSES = 20
#: Fewest rows of each class a fold or half-subsample may hold.
MIN_PER_CLASS = 2


def strata(y: np.ndarray, n_folds: int) -> np.ndarray | None:
    """Class labels ``(n,)`` of a discrete target ``y`` ``(n, dy)`` (``None`` if continuous).

    Folds and half-subsamples are drawn within classes, so that no resample loses a class. A
    class too rare for that raises a ``ValueError`` naming the class counts.
    """
    values, labels, counts = np.unique(y, axis=0, return_inverse=True, return_counts=True)
    if len(values) > MAX_CLASSES or 4 * len(values) > len(y):  # values hardly repeat: continuous
        return None
    need = 2 * n_folds * MIN_PER_CLASS
    if counts.min() < need:
        raise ValueError(
            f"y is discrete with class counts {sorted(counts.tolist())}: each class needs at "
            f"least {need} samples for {n_folds}-fold cross-fitting and half-subsamples; "
            "collect more samples of the rare class or merge classes"
        )
    return labels.reshape(-1)


def _by_stratum(n: int, labels: np.ndarray | None) -> list[np.ndarray]:
    return (
        [np.arange(n)]
        if labels is None
        else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    )


def fold_indices(
    n: int, n_folds: int, rng: np.random.Generator, labels: np.ndarray | None = None
) -> list[np.ndarray]:
    """``n_folds`` disjoint, sorted index arrays covering ``0..n-1`` (stratified by ``labels``)."""
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for rows in _by_stratum(n, labels):
        for k, part in enumerate(np.array_split(rng.permutation(rows), n_folds)):
            folds[k].extend(part.tolist())
    return [np.sort(np.asarray(f, dtype=int)) for f in folds]


def half_subsamples(
    n: int, count: int, rng: np.random.Generator, labels: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """``count`` subsamples of ``n // 2`` distinct rows each (half of each class of ``labels``)."""
    groups = _by_stratum(n, labels)
    for _ in range(count):
        yield np.sort(np.concatenate([rng.choice(g, len(g) // 2, replace=False) for g in groups]))


def mean_pid(pids: Sequence[PID]) -> PID:
    """The field-wise mean of PIDs of one measure (a PID again: the sum rules are linear)."""
    if not pids or len({p.measure for p in pids}) != 1:
        raise ValueError("mean_pid: need PIDs of one measure")
    values = np.mean([[getattr(p, k) for k in CI_KEYS] for p in pids], axis=0)
    return PID(*values, measure=pids[0].measure, info=dict(pids[0].info))


def wald_ci(
    point: PID,
    replicates: np.ndarray,
    between: np.ndarray | None,
    level: float,
    factor: float = 1.0,
) -> dict[str, tuple[float, float]]:
    """``point ± z · se`` for every key of :data:`CI_KEYS`, clipped below at 0 (every quantity
    is non-negative). ``replicates`` ``(R, K)``: half-subsample estimates, whose variance times
    ``factor`` (``m / (n - m)``, see the module docstring) is the squared standard error;
    ``between`` ``(S, K)``: the
    estimates of ``S`` independent fold splits (repeated cross-fitting), whose variance over
    ``S`` adds the split-and-fit noise of their mean; ``None`` for one split."""
    var = np.zeros(len(CI_KEYS))
    if len(replicates) > 1:
        var = factor * np.var(replicates, axis=0, ddof=1)
    if between is not None and len(between) > 1:
        var = var + np.var(between, axis=0, ddof=1) / len(between)
    z = float(stats.norm.ppf(0.5 + level / 2))
    se = np.sqrt(var)
    out = {}
    for j, k in enumerate(CI_KEYS):
        v = getattr(point, k)
        out[k] = (max(0.0, v - z * float(se[j])), v + z * float(se[j]))
    if not all(math.isfinite(a) and math.isfinite(b) for a, b in out.values()):
        raise ValueError("wald_ci: non-finite interval")
    return out
