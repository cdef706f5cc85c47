"""Methods experiment: PID Flow beside the discrete cross-check on systems with exact PIDs (bits).

:func:`crosscheck_experiment` returns one tidy row per (system, estimator, measure, seed, atom)
with the truth, the estimate and the error in bits; the Methods chapter caches and plots it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import joblib
import numpy as np
import pandas as pd

from pidlib.core.threads import one_thread
from pidlib.core.watchdog import local_workers
from pidlib.pid import discrete_systems
from pidlib.pid.discrete import discrete_pid
from pidlib.pid.flow import pid_flow
from pidlib.pid.knn import knn_pid
from pidlib.pid.result import PID

__all__ = [
    "crosscheck_summary",
    "crosscheck_findings",
    "CODE",
    "DEFAULT_SYSTEMS",
    "ESTIMATORS",
    "crosscheck_experiment",
    "target_matrix",
]

#: Code whose source versions every cached cross-check table: the whole estimator layer.
CODE: tuple[str, ...] = ("pidlib.pid",)

#: Systems run by default: the issue's XOR, AND and COPY, a unique system, and mixed twins.
DEFAULT_SYSTEMS: tuple[str, ...] = (
    "xor", "and", "copy", "unique", "mixed_xor", "mixed_and", "mixed_copy", "gauss_xor",
)  # fmt: skip

#: Estimator ids of the table -> what they are.
ESTIMATORS: dict[str, str] = {
    "gaussian": "PID Flow without the flow (Gaussian plug-in on PCA scores)",
    "pid_flow": "PID Flow (marginal Gaussianizer + product flow, default FlowConfig)",
    "crosscheck_levels": "discrete cross-check, sources used as given (discrete sources)",
    "crosscheck_probe": "discrete cross-check, cross-fitted logistic-probe discretisation",
    "crosscheck_kmeans": "discrete cross-check, k-means discretisation",
    "knn": "MMI from k-NN (Ross 2014) mutual informations (continuous sources)",
}

_ROW_ATOMS = (*PID.ATOMS, "total")


def target_matrix(y: np.ndarray) -> np.ndarray:
    """Labels ``(n,)`` as the one-hot matrix without its first column, ``(n, ky - 1)``.

    How a discrete Y enters PID Flow here: a binary Y is its 0/1 label; more classes give a
    full-rank indicator block (labels as one number would impose an order and a spacing).
    """
    codes = np.unique(np.asarray(y), return_inverse=True)[1].reshape(-1)
    return np.eye(int(codes.max()) + 1)[codes][:, 1:]


def _rows(truth: PID, est: PID | None, status: str, **keys) -> list[dict]:
    return [
        {
            **keys,
            "atom": a,
            "truth": getattr(truth, a),
            "estimate": np.nan if est is None else getattr(est, a),
            "error": np.nan if est is None else getattr(est, a) - getattr(truth, a),
            "status": status,
        }
        for a in _ROW_ATOMS
    ]


def _estimate(
    estimator: str, x1: np.ndarray, x2: np.ndarray, y: np.ndarray, seed: int, n_levels: int
) -> dict[str, PID]:
    """Run one estimator of :data:`ESTIMATORS` on a sample; a dict measure -> PID."""
    if estimator in ("gaussian", "pid_flow"):
        return pid_flow(
            x1, x2, target_matrix(y), measure=("broja", "mmi"), flow=estimator == "pid_flow",
            seed=seed,
        )  # fmt: skip
    if estimator == "knn":
        return {"mmi": knn_pid(x1, x2, y, seed=seed)}
    disc = estimator.removeprefix("crosscheck_")
    return discrete_pid(
        x1, x2, y, measure=("broja", "mmi"), discretiser=disc, n_levels=n_levels, seed=seed
    )


def _system_rows(
    name: str,
    n: int,
    seed: int,
    flows: Sequence[bool],
    discretisers: Sequence[str],
    knn: bool,
    n_levels: int,
) -> list[dict]:
    """Every estimator of :func:`crosscheck_experiment` on one sample of one system."""
    system = discrete_systems.get(name)
    x1, x2, y = system.sampler(n, seed)
    estimators = ["pid_flow" if flow else "gaussian" for flow in flows]
    estimators += [f"crosscheck_{d}" for d in (discretisers if system.continuous else ("levels",))]
    estimators += ["knn"] if knn and system.continuous else []
    rows: list[dict] = []
    with one_thread():
        for estimator in estimators:
            t0 = time.perf_counter()
            try:  # a ValueError (e.g. a singular covariance) is a result, not a crash
                out, status = _estimate(estimator, x1, x2, y, seed, n_levels), "ok"
            except ValueError as err:
                out, status = None, f"error: {err}"
            seconds = time.perf_counter() - t0
            for measure in ("mmi",) if estimator == "knn" else ("broja", "mmi"):
                rows += _rows(
                    system.truth[measure],
                    None if out is None else out[measure],
                    status,
                    system=name,
                    continuous=system.continuous,
                    pairwise_independent=system.pairwise_independent,
                    estimator=estimator,
                    measure=measure,
                    n=n,
                    seed=seed,
                    seconds=seconds,
                )
    return rows


def crosscheck_experiment(
    names: Sequence[str] = DEFAULT_SYSTEMS,
    n: int = 1000,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    flows: Sequence[bool] = (False, True),
    discretisers: Sequence[str] = ("probe", "kmeans"),
    knn: bool = True,
    n_levels: int = 4,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Truth vs estimate per atom (bits) for PID Flow and the cross-check on discrete systems.

    For each system of :mod:`pidlib.pid.discrete_systems` and seed: ``n`` samples; PID Flow
    (``flow`` in ``flows``; Y as :func:`target_matrix`; BROJA and MMI from one latent
    covariance); the cross-check (:func:`~pidlib.pid.discrete.discrete_pid`) with "levels" for
    discrete sources and each of ``discretisers`` for continuous ones; and (``knn``, continuous
    sources) the k-NN MMI. Columns: system, continuous, pairwise_independent, estimator (an id of
    :data:`ESTIMATORS`), measure, n, seed, atom (the four atoms and ``total``), truth, estimate,
    error, seconds (of the estimator call), status ("ok" or the error message; estimates NaN).
    One job per (system, seed) on ``n_jobs`` processes (joblib), one thread each, so the table
    does not depend on ``n_jobs`` (but for the seconds).
    """
    jobs = [joblib.delayed(_system_rows)(name, n, seed, flows, discretisers, knn, n_levels)
            for name in names for seed in seeds]  # fmt: skip
    with local_workers(n_jobs):
        return pd.DataFrame([row for part in joblib.Parallel()(jobs) for row in part])


def crosscheck_summary(runs: pd.DataFrame, measure: str = "broja") -> pd.DataFrame:
    """:func:`crosscheck_experiment` as a table: per system and atom, the truth and each
    estimator's mean estimate over seeds (bits; MMI for the k-NN estimate, which has no BROJA)."""
    rows = runs[(runs["measure"] == measure) | (runs["estimator"] == "knn")]
    table = rows.pivot_table(index=["system", "atom"], columns="estimator", values="estimate",
                             sort=False)  # fmt: skip
    truth = rows.groupby(["system", "atom"], sort=False)["truth"].first()
    return table.assign(truth=truth).round(3)


def crosscheck_findings(runs: pd.DataFrame, measure: str = "broja") -> str:
    """Markdown bullets, every number read from ``runs``: each estimator's largest error over
    the binary systems and the synergy PID Flow reports on XOR."""
    rows = runs[runs["measure"] == measure].dropna(subset=["estimate"])
    binary = rows[~rows["continuous"]]
    err = binary.assign(abs_error=binary["error"].abs()).groupby("estimator")["abs_error"].max()
    xor = rows[(rows["system"] == "xor") & (rows["atom"] == "synergy")]
    xor = xor.groupby("estimator")[["truth", "estimate"]].mean()
    lines = [f"- On the binary systems the largest atom error of **{e}** is **{v:.3f} bits**."
             for e, v in err.items()]  # fmt: skip
    lines += [f"- On XOR (synergy {r.truth:.2f} bit), **{e}** reports **{r.estimate:.3f} bits** "
              "of synergy." for e, r in xor.iterrows()]  # fmt: skip
    return "\n".join(lines)
