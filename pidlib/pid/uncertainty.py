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
from scipy import special

from pidlib.pid.result import PID

__all__ = [
    "SCHEMES", "CI_KEYS", "strata", "interval_strata", "too_few_for_halves", "fold_indices",
    "half_size", "half_subsamples", "mean_pid", "wald_ci",
]  # fmt: skip

#: Interval schemes of :func:`pidlib.pid.flow.pid_flow`.
SCHEMES: tuple[str, ...] = ("crossfit", "bootstrap")

#: The quantities an interval is given for: the four atoms, I(X1,X2;Y), I(X1;Y), I(X2;Y).
CI_KEYS: tuple[str, ...] = (*PID.ATOMS, "total", "mi_1", "mi_2")

#: A target with at most this many distinct rows (and each row repeated four times on average)
#: is treated as discrete (classes).
MAX_CLASSES = 20
#: Fewest rows of each class a fold or half-subsample may hold.
MIN_PER_CLASS = 2


def strata(y: np.ndarray, n_folds: int, *, halves: bool = True) -> np.ndarray | None:
    """Class labels ``(n,)`` of a discrete target ``y`` ``(n, dy)`` (``None`` if continuous).

    Folds (and, with ``halves``, half-subsamples) are drawn within classes, so that no resample
    loses a class. A class too rare for that raises a ``ValueError`` naming the class counts.
    """
    values, labels, counts = np.unique(y, axis=0, return_inverse=True, return_counts=True)
    if len(values) > MAX_CLASSES or 4 * len(values) > len(y):  # values hardly repeat: continuous
        return None
    need = (2 if halves else 1) * n_folds * MIN_PER_CLASS
    if counts.min() < need:
        what = "cross-fitting and half-subsamples" if halves else "cross-fitting"
        raise ValueError(
            f"y is discrete with class counts {sorted(counts.tolist())}: each class needs at "
            f"least {need} samples for {n_folds}-fold {what}; "
            "collect more samples of the rare class or merge classes"
        )
    return labels.reshape(-1)


def interval_strata(
    y: np.ndarray, n_folds: int, n_rep: int
) -> tuple[np.ndarray | None, int, str | None]:
    """:func:`strata` for an estimate with ``n_rep`` half-subsamples per fold: ``(labels, n_rep,
    None)``, or, when a class has enough rows for the folds but not for their halves, ``(labels,
    0, reason)``: the estimate is still made, without an interval, and ``reason`` says why."""
    if n_rep == 0:
        return strata(y, n_folds, halves=False), 0, None
    try:
        return strata(y, n_folds), n_rep, None
    except ValueError as err:
        labels = strata(y, n_folds, halves=False)  # too rare even for the folds: raise that
        return labels, 0, f"no interval: {err}"


def too_few_for_halves(held: Sequence[tuple[int, int]]) -> str | None:
    """Why half-subsamples cannot give an interval, or ``None`` if they can: ``held`` lists
    ``(rows of a half-subsample, latent dimensions)`` per fold; the bias-corrected Gaussian PID
    of ``d`` dimensions needs more than ``d + 1`` rows."""
    short = [(m, d) for m, d in held if m <= d + 1]
    if not short:
        return None
    m, d = min(short)
    return (
        f"no interval: half-subsamples of {m} rows cannot support {d} latent dimensions (more "
        f"than {d + 1} rows needed, so each fold needs at least {2 * (d + 2)} rows); collect "
        "more samples or lower max_dims"
    )


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


def half_size(size: int, labels: np.ndarray | None) -> int:
    """Rows of a half-subsample of ``size`` rows (half of each class of ``labels``)."""
    return size // 2 if labels is None else sum(int(c) // 2 for c in np.bincount(labels) if c)


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
    z = float(special.ndtri(0.5 + level / 2))
    se = np.sqrt(var)
    out = {}
    for j, k in enumerate(CI_KEYS):
        v = getattr(point, k)
        out[k] = (max(0.0, v - z * float(se[j])), v + z * float(se[j]))
    if not all(math.isfinite(a) and math.isfinite(b) for a, b in out.values()):
        raise ValueError("wald_ci: non-finite interval")
    return out
