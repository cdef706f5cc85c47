"""Training-seed variation: claims whose intervals include retrains, and correlation baselines.

A build's interval covers the questions (and, for claims averaged over (model, task) pairs, the
pairs); it says nothing of how the number would move if the same recipe were trained again.
Here each claim is recomputed on *replicate sets* (the same models retrained with other seeds)
and its interval widened by their spread (:func:`widen`); the cross-model correlation is set
beside what two seeds of one model, and one model on two decoders, reach
(:func:`correlation_baselines`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import special

from pidlib.analysis.claims import (
    Claim,
    mean_correlations,
    rule_holds,
    spread_claim,
    transduction_claims,
    verdict_text,
)
from pidlib.analysis.summaries import (
    fingerprint_spread,
    last_layer_shares,
    peak_layers,
    shares,
    trajectory_correlation,
)

__all__ = [
    "set_claims", "widen_by", "widen", "with_seed_spread", "difference_seed_spread", "seed_claims",
    "spread_view", "replicate_pairs",
    "correlation_baselines", "baseline_summary",
]  # fmt: skip


def set_claims(pid: pd.DataFrame, models: Sequence[str], floor: float) -> list[Claim]:
    """The transduction chapter's claims and the fingerprint chapter's spread claim computed on
    one model set's layer-wise table (``models`` in the profile's order; the first two are
    correlated, over every task of the table: give every set the same tasks; MMI rows are
    read)."""
    sub = pid[pid["model"].isin(models) & (pid["measure"] == "mmi")]
    corr = (trajectory_correlation(sub, list(models[:2]), measure="mmi") if len(models) >= 2
            else None)  # fmt: skip
    return [*transduction_claims(peak_layers(sub, "unique_1", "mmi", floor=floor),
                                 last_layer_shares(sub, "mmi", floor=floor), corr, floor),
            spread_claim(*fingerprint_spread(shares(sub, floor=floor)))]  # fmt: skip


def widen_by(
    value: float, lo: float, hi: float, s_r: float, dof: float, level: float = 0.95
) -> tuple[float, float, float]:
    """``(lo, hi, df)``: the interval ``[lo, hi]`` of ``value`` widened by a seed-to-seed
    standard deviation ``s_r`` estimated with ``dof`` degrees of freedom.

    Each side is widened on its own, so an asymmetric interval (a correlation's Fisher-z
    interval) never gets narrower on either side: the side's half-width gives
    ``se_b = half / z``; ``se = sqrt(se_b^2 + s_r^2)`` with Welch-Satterthwaite degrees of
    freedom ``df = dof (se / s_r)^4``, and the side's new half-width is ``t_df se`` (for a
    symmetric interval, ``value ± t_df se``). ``df`` returned: the smaller of the two sides'.
    A point claim (``lo == hi == value``) is widened by ``s_r`` alone. An undefined value, bound
    or spread, or ``dof < 1``: NaN."""
    if dof < 1 or not all(math.isfinite(x) for x in (value, lo, hi, s_r)):
        return math.nan, math.nan, math.nan
    if s_r == 0:
        return lo, hi, math.inf
    z = special.ndtri(0.5 + level / 2)
    halves, dfs = [], []
    for half_b in (max(value - lo, 0.0), max(hi - value, 0.0)):
        se = math.hypot(half_b / z, s_r)
        dfs.append(dof * (se / s_r) ** 4)
        halves.append(float(special.stdtrit(dfs[-1], 0.5 + level / 2)) * se)
    return value - halves[0], value + halves[1], min(dfs)


def widen(
    value: float, lo: float, hi: float, replicates: Sequence[float], level: float = 0.95
) -> tuple[float, float, float]:
    """:func:`widen_by` with the standard deviation of ``replicates`` (the same statistic on
    retrained models; ``k - 1`` degrees of freedom for ``k`` finite ones). Conservative: each
    replicate also carries its own question noise. Fewer than two finite replicates: NaN (an
    interval across seeds needs two seeds)."""
    reps = np.asarray([r for r in replicates if np.isfinite(r)], dtype=float)
    if reps.size < 2:
        return math.nan, math.nan, math.nan
    return widen_by(value, lo, hi, float(reps.std(ddof=1)), reps.size - 1, level)


def _row(c: Claim, values: Mapping[str, float], lo: float, hi: float, df: float,
         how: str = "") -> dict:  # fmt: skip
    finite = [v for v in values.values() if np.isfinite(v)]
    mean = float(np.mean(finite)) if finite else math.nan
    return {"claim": c.claim, "unit": c.unit, "rule": c.rule, "value": c.value,
            "build_lo": c.lo, "build_hi": c.hi, "build_holds": c.holds,
            **{f"set {k}": v for k, v in values.items()},
            "replicates_mean": mean, "gap": c.value - mean, "lo": lo, "hi": hi, "df": df,
            "holds": rule_holds(c.rule, c.value, lo, hi), "how": how}  # fmt: skip


def with_seed_spread(
    claims: Sequence[Claim], replicates: Mapping[str, Sequence[Claim]], level: float = 0.95
) -> pd.DataFrame:
    """One row per claim with a rule: the build's value and interval, the replicate sets'
    values (``replicates``: set label -> that set's claims, matched by claim text), the widened
    interval (:func:`widen`) and the verdict of the same rule on it (``holds``; None where it
    cannot be tested; a correlation's interval is clipped to [-1, 1]). Also the replicates'
    mean and the build minus that mean (``gap``: e.g. the committed decoder against another
    decoder's seeds)."""
    rows = []
    for c in claims:
        if not c.rule:
            continue
        values = {label: next((r.value for r in rs if r.claim == c.claim), math.nan)
                  for label, rs in replicates.items()}  # fmt: skip
        lo, hi, df = widen(c.value, c.lo, c.hi, list(values.values()), level)
        if c.unit.startswith(_CORRELATIONS):  # a correlation's interval stays within [-1, 1]
            lo, hi = max(lo, -1.0), min(hi, 1.0)
        rows.append(_row(c, values, lo, hi, df))
    return pd.DataFrame(rows)


#: Units of the claims that are correlations (their widened intervals are clipped to [-1, 1]).
_CORRELATIONS = ("Pearson r", "Spearman rho")


def difference_seed_spread(
    claim: Claim, side: Mapping[str, float], what: str, level: float = 0.95
) -> pd.DataFrame:
    """:func:`with_seed_spread`'s row for a claim that is a difference between two models
    trained from the same seeds (the learned-prior contrast) when only one side was retrained
    on every set: ``side`` maps set label -> that side's statistic (``what``) on the set. The
    difference's seed standard deviation is taken as ``sqrt(2)`` times the side's, which assumes
    the two sides vary alike across seeds and independently; shared seeds correlate them
    positively, which makes the widening conservative."""
    vals = np.asarray([v for v in side.values() if np.isfinite(v)], dtype=float)
    s_r = math.sqrt(2) * float(vals.std(ddof=1)) if vals.size >= 2 else math.nan
    lo, hi, df = widen_by(claim.value, claim.lo, claim.hi, s_r, vals.size - 1, level)
    shown = ", ".join(f"{k} {v:.3g}" for k, v in side.items())
    how = (f"the build's interval [{claim.lo:.3g}, {claim.hi:.3g}] widened by sqrt(2) x the "
           f"seed SD of {what} ({shown}; df {df:.1f}): only that side was retrained on every "
           "set")  # fmt: skip
    return pd.DataFrame([_row(claim, dict.fromkeys(side, math.nan), lo, hi, df, how)])


def spread_view(table: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """:func:`with_seed_spread`'s table for reading: per claim, the build's value [CI] and
    verdict, each set's value, and the interval and verdict across seeds."""

    def cell(v: float, lo: float, hi: float) -> str:
        return f"{v:.3g} [{lo:.3g}, {hi:.3g}]"

    out = pd.DataFrame({"claim": table["claim"]})
    out["build [95% CI]"] = [cell(r.value, r.build_lo, r.build_hi) for r in table.itertuples()]
    out["build verdict"] = table["build_holds"].map(verdict_text)
    for k in labels:
        out[k] = table[f"set {k}"].map(lambda v: f"{v:.3g}" if np.isfinite(v) else "—")
    out["across seeds [95% CI]"] = [cell(r.value, r.lo, r.hi) for r in table.itertuples()]
    out["verdict across seeds"] = table["holds"].map(verdict_text)
    return out.set_index("claim")


def seed_claims(table: pd.DataFrame, claims: Sequence[Claim], labels: Sequence[str]) -> list[Claim]:
    """The build's claims with the widened intervals and verdicts of ``table`` (from
    :func:`with_seed_spread`), for the scorecard; ``labels``: the replicate sets' names."""
    by_claim = table.set_index("claim")
    out = []
    for c in claims:
        if c.claim not in by_claim.index:
            continue
        row = by_claim.loc[c.claim]
        shown = ", ".join(f"{k} {row[f'set {k}']:.3g}" for k in labels)
        detail = row.get("how") or (
            f"the build's interval [{c.lo:.3g}, {c.hi:.3g}] widened by the spread of "
            f"{len(labels)} retrained sets ({shown}; df {row['df']:.1f})")  # fmt: skip
        lo, hi = float(row["lo"]), float(row["hi"])
        out.append(replace(c, lo=lo, hi=hi, holds=rule_holds(c.rule, c.value, lo, hi),
                           detail=detail))  # fmt: skip
    return out


def correlation_baselines(
    pid: pd.DataFrame, pairs: Mapping[str, Sequence[tuple[str, str]]], measure: str = "mmi"
) -> pd.DataFrame:
    """The cross-model claim's statistic for each pair of models in ``pairs`` (kind -> list of
    ``(model_a, model_b)``): the mean Pearson r over depth of the four atoms' trajectories,
    averaged over the tasks both models share in ``pid`` (a layer-wise table holding every
    model). One row per pair: kind, model_a, model_b, r, tasks."""
    rows = []
    for kind, kind_pairs in pairs.items():
        for a, b in kind_pairs:
            corr = trajectory_correlation(pid, [a, b], measure=measure)
            rows.append({"kind": kind, "model_a": a, "model_b": b,
                         "r": float(mean_correlations(corr).mean()),
                         "tasks": int(corr["task"].nunique())})  # fmt: skip
    return pd.DataFrame(rows)


def baseline_summary(baselines: pd.DataFrame) -> pd.DataFrame:
    """Per kind: number of model pairs, mean r, and the smallest and largest pair."""
    g = baselines.groupby("kind", sort=False)["r"]
    return pd.DataFrame({"pairs": g.size(), "mean r": g.mean(), "min r": g.min(),
                         "max r": g.max()}).reset_index()  # fmt: skip


def replicate_pairs(sets: Mapping[str, Sequence[str]]) -> dict[str, list[tuple[str, str]]]:
    """The model pairs of the three correlation baselines, from replicate sets (label -> models,
    one per family in the same order; the first set is the build's own):

    - ``cross-model``: the two families within each set (what the paper's r > 0.96 compares);
    - ``same model, other seed``: one family, two sets other than the first (one decoder);
    - ``same model, other decoder``: one family, the first set against each other set.
    """
    labels = list(sets)
    first, rest = labels[0], labels[1:]
    n_families = len(sets[first])
    return {
        "cross-model": [tuple(sets[k][:2]) for k in labels if len(sets[k]) >= 2],
        "same model, other seed": [(sets[a][f], sets[b][f]) for f in range(n_families)
                                   for a, b in combinations(rest, 2)],
        "same model, other decoder": [(sets[first][f], sets[k][f]) for f in range(n_families)
                                      for k in rest],
    }  # fmt: skip
