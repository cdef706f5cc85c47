"""Estimator validation experiments on systems with known PIDs (the Methods chapter's evidence).

Each function returns a tidy DataFrame (one row per system / setting / atom) with the truth, the
estimate and the error in bits; the chapter only caches and plots them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import joblib
import numpy as np
import pandas as pd

from pidlib.core.threads import one_thread
from pidlib.core.watchdog import local_workers
from pidlib.pid import canonical
from pidlib.pid.flow import pid_flow
from pidlib.pid.gaussian import gaussian_pid
from pidlib.pid.result import PID

__all__ = ["CODE", "ATOMS", "exact_check", "error_vs_n", "bias_vs_dim", "pca_sweep", "timing"]

#: The four PID atoms, in display order.
ATOMS = PID.ATOMS

#: Code whose source versions every cached validation table: the whole estimator layer.
CODE: tuple[str, ...] = ("pidlib.pid",)


def _rows(truth: PID, est: PID, **keys) -> list[dict]:
    return [
        {
            **keys,
            "atom": a,
            "truth": getattr(truth, a),
            "estimate": getattr(est, a),
            "error": getattr(est, a) - getattr(truth, a),
        }
        for a in ATOMS
    ]


def exact_check(names: Iterable[str] | None = None) -> pd.DataFrame:
    """``gaussian_pid`` on the exact covariance of each Gaussian canonical system vs its truth."""
    rows = []
    for name in names or canonical.names():
        system = canonical.get(name)
        for measure, truth in system.truth.items():
            est = gaussian_pid(system.cov, system.dims, measure)
            rows += _rows(truth, est, system=name, measure=measure, dims=str(system.dims))
    return pd.DataFrame(rows)


def _error_job(name: str, n: int, seed: int, flow: bool, measure: str, kwargs: dict) -> list:
    system = canonical.get(name)
    x1, x2, y = system.sampler(n, seed)
    with one_thread():
        t0 = time.perf_counter()
        est = pid_flow(x1, x2, y, measure=measure, flow=flow, seed=seed, **kwargs)
        seconds = time.perf_counter() - t0
    return _rows(system.truth[measure], est, system=name, n=n, seed=seed, flow=flow,
                 seconds=seconds)  # fmt: skip


def error_vs_n(
    names: Sequence[str],
    ns: Sequence[int],
    seeds: Sequence[int],
    *,
    measure: str = "mmi",
    flows: Sequence[bool] = (True, False),
    n_jobs: int = 1,
    **pid_kwargs,
) -> pd.DataFrame:
    """``pid_flow`` on samples of latent-Gaussian systems: error per atom vs sample size. Jobs
    run on ``n_jobs`` processes (joblib), one thread each, so the table does not depend on
    ``n_jobs``."""
    jobs = [joblib.delayed(_error_job)(name, n, seed, flow, measure, pid_kwargs)
            for name in names for n in ns for seed in seeds for flow in flows]  # fmt: skip
    with local_workers(n_jobs):
        return pd.DataFrame([row for part in joblib.Parallel()(jobs) for row in part])


def bias_vs_dim(dims: Sequence[int], n: int, seeds: Sequence[int]) -> pd.DataFrame:
    """Gaussian plug-in on ``n`` samples of random d-dimensional systems, with and without the
    finite-sample log-det bias correction: the error in I(X1,X2;Y) and in each atom (MMI)."""
    rows = []
    for d in dims:
        for seed in seeds:
            system = canonical.random_system(d, d, max(1, d // 4), seed=seed)
            x1, x2, y = system.sampler(n, seed + 1000)
            cov = np.cov(np.hstack([x1, x2, y]), rowvar=False)
            truth = system.truth["mmi"]
            for corrected in (False, True):
                est = gaussian_pid(cov, system.dims, "mmi", n=n if corrected else None)
                rows += _rows(truth, est, d=d, seed=seed, corrected=corrected)
                rows.append(
                    {
                        "d": d,
                        "seed": seed,
                        "corrected": corrected,
                        "atom": "total",
                        "truth": truth.total,
                        "estimate": est.total,
                        "error": est.total - truth.total,
                    }
                )
    return pd.DataFrame(rows)


def pca_sweep(name: str, variances: Sequence[float], n: int, seeds: Sequence[int]) -> pd.DataFrame:
    """Effect of the PCA variance threshold on a high-dimensional Gaussian system (no flow)."""
    system = canonical.get(name)
    rows = []
    for seed in seeds:
        x1, x2, y = system.sampler(n, seed)
        for v in variances:
            est = pid_flow(x1, x2, y, flow=False, pca_variance=v, max_dims=max(system.dims))
            kept = est.info.get("dims", (None, None, None))
            rows += _rows(system.truth["mmi"], est, variance=v, seed=seed, dims_kept=str(kept))
    return pd.DataFrame(rows)


def timing(sizes: Sequence[int], repeats: int = 5, seed: int = 0) -> pd.DataFrame:
    """Median seconds per ``gaussian_pid`` call (MMI and BROJA) at d1 = d2 = dy = d."""
    rows = []
    for d in sizes:
        cov = canonical.random_system(d, d, d, seed=seed).cov
        for measure in ("mmi", "broja"):
            gaussian_pid(cov, (d, d, d), measure)  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                gaussian_pid(cov, (d, d, d), measure)
                times.append(time.perf_counter() - t0)
            rows.append({"d": d, "measure": measure, "seconds": float(np.median(times))})
    return pd.DataFrame(rows)
