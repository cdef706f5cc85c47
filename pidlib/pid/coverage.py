"""Coverage of PID Flow's intervals on systems with known PIDs (the Methods chapter's evidence).

For each system, ``reps`` independent samples of ``n`` rows are drawn; each gets an estimate and
an interval, and the table records whether the interval contains the exact value. A valid 95%
interval contains it in about 95% of the replicates; the point estimate must lie inside its own
interval in every one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pidlib.core.threads import one_thread
from pidlib.core.watchdog import local_workers
from pidlib.pid import canonical
from pidlib.pid.flow import pid_flow
from pidlib.pid.result import PID

__all__ = [
    "COVERAGE_KEYS", "book_sized_system", "null_system", "coverage", "coverage_runs",
    "coverage_table", "coverage_summary",
]  # fmt: skip

#: The quantities whose coverage is reported: I(X1,X2;Y) and the four atoms.
COVERAGE_KEYS: tuple[str, ...] = ("total", "redundancy", "unique_1", "unique_2", "synergy")


def book_sized_system(seed: int = 0) -> canonical.System:
    """A random Gaussian system with the dimensions of the book's largest latents (21 + 29 + 1)."""
    return canonical.random_system(21, 29, 1, seed=seed)


def null_system(d1: int = 21, d2: int = 29, dy: int = 1) -> canonical.System:
    """Independent standard normal X1, X2, Y of the book's dimensions: every atom is 0 bits (the
    case where a percentile bootstrap of latent rows excludes its own estimate)."""
    dims = (d1, d2, dy)

    def sampler(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        return tuple(rng.standard_normal((n, d)) for d in dims)  # type: ignore[return-value]

    zero = {m: PID.from_terms(0.0, 0.0, 0.0, m) for m in ("mmi", "broja")}
    return canonical.System(f"null_{d1}_{d2}_{dy}", np.eye(sum(dims)), dims, zero,
                            "independent sources and target: no information", sampler)  # fmt: skip


def _one(system: canonical.System, n: int, rep: int, kwargs: dict[str, Any]) -> list[dict]:
    x1, x2, y = system.sampler(n, 10_000 + rep)
    with one_thread():
        est = pid_flow(x1, x2, y, measure="mmi", seed=rep, **kwargs)
    truth = system.truth["mmi"]
    rows = []
    for k in COVERAGE_KEYS:
        lo, hi = est.ci[k]
        v, t = getattr(est, k), getattr(truth, k)
        rows.append({"system": system.name, "rep": rep, "quantity": k, "truth": t, "estimate": v,
                     "lo": lo, "hi": hi, "covered": bool(lo - 1e-9 <= t <= hi + 1e-9),
                     "point_inside": bool(lo - 1e-9 <= v <= hi + 1e-9)})  # fmt: skip
    return rows


def coverage(
    systems: Sequence[str | canonical.System],
    *,
    n: int = 1000,
    reps: int = 50,
    n_jobs: int = 1,
    **pid_kwargs: Any,
) -> pd.DataFrame:
    """One row per (system, replicate, quantity): truth, estimate, interval, ``covered`` and
    ``point_inside``. ``pid_kwargs`` go to :func:`~pidlib.pid.flow.pid_flow` (give
    ``n_bootstrap`` >= 2; ``scheme`` selects the interval). Replicate ``r`` draws the sample with
    seed ``10000 + r`` and fits with seed ``r``; jobs run on ``n_jobs`` processes, one thread
    each, so the table does not depend on ``n_jobs``."""
    import joblib

    if pid_kwargs.get("n_bootstrap", 0) < 2:
        raise ValueError("coverage: pass n_bootstrap >= 2 (an interval is needed)")
    unknown = sorted(set(pid_kwargs) - {"n_bootstrap", "n_seeds", "flow", "scheme", "max_dims",
                                         "pca_variance", "n_folds", "flow_config"})  # fmt: skip
    if unknown:
        raise ValueError(f"coverage: unknown pid_flow options {unknown}")
    resolved = [canonical.get(s) if isinstance(s, str) else s for s in systems]
    jobs = (joblib.delayed(_one)(s, n, r, pid_kwargs) for s in resolved for r in range(reps))
    with local_workers(n_jobs):
        rows = [row for part in joblib.Parallel()(jobs) for row in part]
    return pd.DataFrame(rows)


def coverage_runs(
    gaussian: Sequence[str],
    *,
    reps: int,
    n: int = 1000,
    n_bootstrap: int = 100,
    flow_systems: Sequence[str] = ("nl_synergy", "nl_unique"),
    n_jobs: int = 1,
) -> pd.DataFrame:
    """The Methods chapter's coverage experiment, one :func:`coverage` table per ``setting``:
    the plug-in with full PCA on the ``gaussian`` systems, the null system and the book-sized
    system, cross-fitted (``crossfit``), and the percentile bootstrap (``bootstrap``) on the null
    and book-sized systems; the book-sized system with the book's 95% PCA; and PID Flow with
    trained flows on ``flow_systems``."""
    plain = [*gaussian, null_system(), book_sized_system()]
    kw = {"n": n, "reps": reps, "n_jobs": n_jobs, "n_bootstrap": n_bootstrap}
    settings = {
        "crossfit": (plain, {"flow": False, "pca_variance": 1.0, "max_dims": 64}),
        "bootstrap": (plain[-2:], {"flow": False, "pca_variance": 1.0, "max_dims": 64,
                                   "scheme": "bootstrap"}),
        "crossfit, 95% PCA": ([book_sized_system()], {"flow": False, "max_dims": 32}),
        "crossfit, PID Flow": (list(flow_systems), {"flow": True}),
    }  # fmt: skip
    parts = [coverage(systems, **kw, **opts).assign(setting=name)
             for name, (systems, opts) in settings.items()]  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def coverage_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per system and quantity: replicates, coverage (fraction of intervals holding the truth),
    fraction of intervals holding their own estimate, mean interval width and mean error (bits)."""
    g = runs.assign(width=runs["hi"] - runs["lo"], error=runs["estimate"] - runs["truth"])
    keys = [c for c in ("setting", "scheme", "system", "quantity") if c in g]
    out = g.groupby(keys, sort=False).agg(
        reps=("rep", "size"), coverage=("covered", "mean"), point_inside=("point_inside", "mean"),
        width=("width", "mean"), bias=("error", "mean"))  # fmt: skip
    return out.reset_index()


def coverage_summary(table: pd.DataFrame, target: float = 0.90) -> str:
    """Markdown bullets of what :func:`coverage_table` (from :func:`coverage_runs`) shows, every
    number read from it: coverage of the cross-fitted intervals, where they fall below
    ``target`` and the bias there, and how often each scheme's interval held its own estimate."""
    lines = []
    for setting, g in table.groupby("setting", sort=False):
        low = g[g["coverage"] < target]
        where = ("; below " + f"{target:.0%}: " + ", ".join(
            f"{r.system} {r.quantity} ({r.coverage:.0%}, mean error {r.bias:+.3f} bits)"
            for r in low.itertuples()) if len(low) else f"; never below {target:.0%}")  # fmt: skip
        lines.append(
            f"- **{setting}** ({int(g['reps'].iloc[0])} replicates per system): coverage "
            f"{g['coverage'].min():.0%}–{g['coverage'].max():.0%} over systems and quantities"
            f"{where}. The interval held its own estimate in "
            f"{g['point_inside'].min():.0%}–{g['point_inside'].max():.0%} of the replicates."
        )
    return "\n".join(lines)
