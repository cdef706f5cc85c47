"""The paper's headline claims, evaluated on this build's results, for the scorecard page.

Each chapter computes its claims with the functions here and records them with :func:`record`
under ``build/<profile>/claims/<chapter>.json``; the scorecard only reads them back
(:func:`load_claims`), so no number on it is typed by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

from pidlib.analysis.summaries import KNOCKOUT_TRANSFORMS
from pidlib.core.paths import build_dir
from pidlib.core.provenance import provenance
from pidlib.stats import t_interval

__all__ = [
    "Claim", "rule_holds", "record", "load_claims", "tested_on", "verdict_text", "claims_markdown",
    "mean_correlations", "transduction_claims", "fingerprint_claims", "knockout_claims",
    "spearman_interval", "spread_claim", "prior_claim",
]  # fmt: skip


@dataclass(frozen=True)
class Claim:
    """One headline claim: the paper's statement and value, this build's value and 95% CI."""

    claim: str
    paper: str
    value: float
    lo: float
    hi: float
    holds: bool | None  # None: not testable with this build's setup
    unit: str
    detail: str = ""
    n_tested: int | None = None  # (model, task) pairs the claim was tested on ...
    n_pairs: int | None = None  # ... of this many (the rest lack measurable information)
    robustness: str = ""  # its verdict under other settings, e.g. "canonical: holds; ..."
    rule: str = ""  # "<value|lo|hi> <op> <threshold>": the verdict as data (see rule_holds)


#: The comparisons a :attr:`Claim.rule` may use.
_OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


def rule_holds(rule: str, value: float, lo: float, hi: float) -> bool | None:
    """A claim's verdict from its ``rule`` (e.g. ``"lo >= 0.5"``: the interval lies at or above
    50%) at the given value and interval; ``None`` (not testable) when the bound it reads is
    undefined. The same rule gives the verdict on the build's interval and on a wider one (e.g.
    across training seeds)."""
    try:
        bound, op, threshold = rule.split()
        x = {"value": value, "lo": lo, "hi": hi}[bound]
        compare = _OPS[op]
        limit = float(threshold)
    except (KeyError, ValueError):
        raise ValueError(f"claim rule {rule!r}: expected '<value|lo|hi> <op> <number>' with op "
                         f"one of {', '.join(_OPS)}") from None  # fmt: skip
    return _holds(bool(compare(x, limit)), x)


def _ruled(claim: str, paper: str, value: float, lo: float, hi: float, rule: str,
           **kw) -> Claim:  # fmt: skip
    """A :class:`Claim` whose verdict is its ``rule`` applied to ``(value, lo, hi)``."""
    return Claim(claim, paper, value, lo, hi, holds=rule_holds(rule, value, lo, hi), rule=rule,
                 **kw)  # fmt: skip


def _holds(test: bool, *bounds: float) -> bool | None:
    """A verdict, or ``None`` (not testable) when a bound it rests on is undefined (NaN)."""
    return None if any(not np.isfinite(b) for b in bounds) else bool(test)


def _dir(profile: str) -> Path:
    return build_dir(profile) / "claims"


def record(profile: str, chapter: str, claims: Sequence[Claim], params: dict) -> Path:
    """Write a chapter's claims (with the parameters and provenance that produced them)."""
    path = _dir(profile) / f"{chapter}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"chapter": chapter, "params": params, "provenance": provenance(),
               "claims": [asdict(c) for c in claims]}  # fmt: skip
    path.write_text(json.dumps(payload, indent=1, default=str))
    return path


def load_claims(profile: str) -> pd.DataFrame:
    """Every recorded claim of a profile, one row each, with its chapter and git commit."""
    rows = []
    for path in sorted(_dir(profile).glob("*.json")):
        payload = json.loads(path.read_text())
        for c in payload["claims"]:
            rows.append({"chapter": payload["chapter"], **c,
                         "commit": payload["provenance"]["git_commit"][:12]})  # fmt: skip
    return pd.DataFrame(rows)


def tested_on(claim: Mapping) -> str:
    """``"k of K pairs"`` for a claim (a :func:`load_claims` row or ``asdict(Claim)``), or ``""``
    when it was not restricted to pairs above the information floor."""
    k, total = claim.get("n_tested"), claim.get("n_pairs")
    if k is None or total is None or k != k or total != total:  # absent or NaN
        return ""
    return f"{int(k)} of {int(total)} pairs"


def verdict_text(holds: bool | None) -> str:
    """ "holds", "does not hold" or "not tested" (``None`` or NaN)."""
    if holds is None or holds != holds:
        return "not tested"
    return "holds" if holds else "does not hold"


def claims_markdown(claims: Sequence[Claim]) -> str:
    """One Markdown bullet per claim: the paper's value, this build's with its interval, the
    pairs it was tested on, and the verdict."""
    lines = []
    for c in claims:
        tested = (f" (tested on {c.n_tested} of {c.n_pairs} (model, task) pairs)"
                  if c.n_pairs is not None else "")  # fmt: skip
        value = f"{c.value:.3g} [{c.lo:.3g}, {c.hi:.3g}] {c.unit}"
        lines.append(f"- **{c.claim}** (paper: {c.paper}): this build {value}{tested}; "
                     f"{verdict_text(c.holds)}.")  # fmt: skip
    return "\n".join(lines)


def mean_correlations(corr: pd.DataFrame) -> pd.Series:
    """The four atoms' rows of a :func:`~pidlib.analysis.summaries.trajectory_correlation`
    table: the r values the cross-model claim averages (over tasks and atoms)."""
    return corr.loc[corr["atom"].isin(["redundancy", "unique_1", "unique_2", "synergy"]), "r"]


def transduction_claims(
    peaks: pd.DataFrame,
    last: pd.DataFrame,
    corr: pd.DataFrame | None,
    floor: float,
    corr_tasks: Sequence[str] | None = None,
) -> list[Claim]:
    """The modal-transduction claims from :func:`~pidlib.analysis.summaries.peak_layers` (U_V),
    :func:`~pidlib.analysis.summaries.last_layer_shares` and, for two models,
    :func:`~pidlib.analysis.summaries.trajectory_correlation` (MMI). Each claim is tested only
    on the (model, task) pairs above the information ``floor`` (bits) and says how many; with
    none it is not testable (``holds=None``). The correlation is averaged over ``corr_tasks``
    (:func:`~pidlib.analysis.summaries.measurable_tasks`: a task without measurable
    information has trajectories of noise) or over every task of ``corr`` when None."""
    above_peak, above_last = peaks[peaks["measurable"]], last[last["measurable"]]
    n_pairs, where = len(peaks), f"(model, task) pairs with I above the {floor:g}-bit floor"
    depth = t_interval(above_peak["depth"])
    ul = t_interval(above_last["unique_2"])
    s_max = float(above_last["synergy"].max()) if len(above_last) else float("nan")
    out = [
        _ruled("U_V peaks early and decays", "peak in early layers", *depth, "hi <= 0.5",
               unit="relative depth of the U_V peak",
               detail=f"mean over {where} (U_V's interval above it; ties averaged); holds if "
               "the CI lies in the first half",
               n_tested=len(above_peak), n_pairs=n_pairs),
        _ruled("U_L carries most of the final predictive information", "≈ 82%", *ul, "lo >= 0.5",
               unit="U_L share of I(V,L;Y) at the last layer",
               detail=f"mean over {where} at the last layer; holds if the CI lies above 50%",
               n_tested=len(above_last), n_pairs=n_pairs),
        _ruled("Synergy is small on every task", "S < 2% on all tasks", s_max, s_max, s_max,
               "hi < 0.02", unit="largest last-layer S share",
               detail=f"max over {where} at the last layer",
               n_tested=len(above_last), n_pairs=n_pairs),
    ]  # fmt: skip
    if corr is not None and len(corr):
        n_tasks = corr["task"].nunique()
        used = corr if corr_tasks is None else corr[corr["task"].isin(corr_tasks)]
        r = t_interval(mean_correlations(used))
        out.append(_ruled("Layer-wise trajectories agree across the two models", "r > 0.96", *r,
                          "lo > 0.96", unit="Pearson r over depth",
                          detail=f"mean over the four atoms (bits, every layer) and "
                          f"{used['task'].nunique()} of {n_tasks} tasks"
                          + ("" if corr_tasks is None else " (those above the information "
                             "floor for either model)")))  # fmt: skip
    return out


def spread_claim(task_spread: pd.Series, model_spread: pd.Series | None) -> Claim:
    """The claim "Fingerprints differ by task" from
    :func:`~pidlib.analysis.summaries.fingerprint_spread`: the mean spread of the atom shares
    across tasks minus that across the models on the same task, a point estimate that holds if
    positive; untestable with one model, or when no task has a share above the floor (NaN)."""
    across_models = np.nan if model_spread is None else float(model_spread.mean())
    excess = float(task_spread.mean() - across_models)
    return _ruled("Fingerprints differ by task", "strongly task-dependent", excess, excess, excess,
                  "lo > 0", unit="std of atom shares across tasks minus across models (fraction)",
                  detail=f"means over atoms, layers and models: across tasks "
                  f"{task_spread.mean():.3g}, across the models on the same task "
                  f"{across_models:.3g}; holds if tasks differ more than the models do (a point "
                  "estimate: no interval over questions)")  # fmt: skip


def prior_claim(contrast: pd.DataFrame) -> tuple[Claim, dict]:
    """The claim "Redundancy tracks a learned semantic prior" from the learned-prior contrast
    (:func:`~pidlib.analysis.summaries.prior_contrast` at one layer: redundancy of the model
    trained at the largest prior minus that of the model trained at the smallest, per task).

    The mean difference over the tasks whose information passes the floor (their errors
    independent: ``se`` in quadrature over tasks); it holds if its interval lies above 0.
    Returns the claim and ``found``: the difference, its ``se``, ``mde`` (the smallest mean
    difference detectable at 80% power), the interval and the tasks used."""
    used = contrast[contrast["measurable"].astype(bool)]  # (an empty frame's column is object)
    n = len(used)
    diff = float(used["difference"].mean()) if n else float("nan")
    se = float(np.sqrt((used["se"] ** 2).sum()) / n) if n else float("nan")
    found = {"difference": diff, "se": se, "mde": 2.80 * se, "tasks": list(used["task"]),
             "lo": diff - 1.959964 * se, "hi": diff + 1.959964 * se}  # fmt: skip
    claim = _ruled("Redundancy tracks a learned semantic prior", "redundancy governs", diff,
                   found["lo"], found["hi"], "lo > 0",
                   unit="Δ redundancy (bits), strongest minus weakest trained prior",
                   n_tested=n, n_pairs=len(contrast),
                   detail="models trained with the prior planted in their QA scenes, measured "
                   "at their own prior; mean over the tasks above the information floor; holds "
                   f"if the CI lies above 0; detectable at 80% power: {found['mde']:.3g} "
                   "bits")  # fmt: skip
    return claim, found


def fingerprint_claims(
    task_spread: pd.Series, model_spread: pd.Series | None, contrast: pd.DataFrame
) -> tuple[list[Claim], dict]:
    """The task-fingerprint claims: :func:`spread_claim` and :func:`prior_claim` (whose
    ``found`` is returned beside them)."""
    claim, found = prior_claim(contrast)
    return [spread_claim(task_spread, model_spread), claim], found


def spearman_interval(x: Sequence[float], y: Sequence[float], level: float = 0.95
                      ) -> tuple[float, float, float, float]:  # fmt: skip
    """``(rho, lo, hi, p)``: Spearman's rho with a Fisher-z interval (standard error
    ``sqrt(1.06 / (n - 3))``, Fieller, Hartley and Pearson 1957); NaN with fewer than four
    pairs (no interval) and the p-value NaN with fewer than three."""
    n = len(x)
    if n < 3:
        return (math.nan,) * 4
    from scipy import stats  # here: importing scipy.stats costs a chapter about 1 s

    r, p = stats.spearmanr(x, y)
    r, p = float(r), float(p)
    if n < 4 or not np.isfinite(r):
        return r, math.nan, math.nan, p
    z = np.arctanh(np.clip(r, -1 + 1e-12, 1 - 1e-12))
    half = special.ndtri(0.5 + level / 2) * math.sqrt(1.06 / (n - 3))
    return r, float(np.tanh(z - half)), float(np.tanh(z + half)), p


def knockout_claims(
    per_task: pd.DataFrame, curves: pd.DataFrame | None = None
) -> tuple[list[Claim], dict]:
    """The knockout claims from :func:`~pidlib.analysis.summaries.knockout_per_task` (one row
    per transforms variant, model and task) and the windowed sweep's ``curves`` (optional).

    Every claim is tested on the (model, task) pairs whose clean information passes the floor
    (``measurable``; all pairs when the table lacks the column) and says how many. Returns the
    claims and their statistics: ``acc_drop`` (t interval of the largest Image->Question drop
    of the answer probability per (model, task), %; NaN without ``curves``) and ``variants``:
    per transforms variant, the t intervals of Δ U_V (late), Δ S, Δ I and the Spearman rho
    against clean redundancy as ``(rho, p, pairs used, pairs)`` (NaN with fewer than three
    pairs with a redundancy share); its claim holds if rho's Fisher-z interval lies below 0.
    """
    found: dict = {"acc_drop": (math.nan,) * 3, "variants": {}}
    if curves is not None:
        ki = curves[curves["flow"] == "image->question"]
        found["acc_drop"] = t_interval(ki.groupby(["model", "task"])["rel_change"].min())
    claims = []
    for variant in [v for v in KNOCKOUT_TRANSFORMS if v in set(per_task["transforms"])]:
        rows = per_task[per_task["transforms"] == variant]
        tested = rows[rows["measurable"].astype(bool)] if "measurable" in rows else rows
        # every pair counts, also one whose "refit" run was skipped below the floor
        n_pairs = per_task.groupby(["model", "task"]).ngroups
        n_tested = {"n_tested": len(tested), "n_pairs": n_pairs}
        # pairs below the information floor have no redundancy share (NaN): leave them out
        pairs = tested[["clean R share", "ΔU_V (late layers)"]].dropna()
        r, r_lo, r_hi, p = spearman_interval(pairs.iloc[:, 0], pairs.iloc[:, 1])
        rho = (r, p, len(pairs), n_pairs)
        cols = ("ΔU_V (late layers)", "ΔS (all layers)", "ΔI(V,L;Y) (all layers)")
        d_uv, d_s, d_tot = (t_interval(tested[c]) for c in cols)
        found["variants"][variant] = d_uv, d_s, d_tot, rho
        how = f" ({variant})" if variant != "refit" else ""
        where = "mean over the (model, task) pairs above the information floor"
        claims += [
            _ruled(f"Image→Question knockout traps visual-unique information{how}",
                   "U_V rises in late layers", *d_uv, "lo > 0",
                   unit="Δ U_V, bits, mean over late layers",
                   detail=f"{where}; holds if the CI lies above 0", **n_tested),
            _ruled(f"Knockout induces compensatory synergy{how}", "S rises", *d_s, "lo > 0",
                   unit="Δ S, bits, mean over layers", detail=where, **n_tested),
            _ruled(f"Knockout raises the total information cost{how}",
                   "I(V,L;Y) rises (some totals fall)", *d_tot, "lo > 0",
                   unit="Δ I(V,L;Y), bits, mean over layers", detail=where, **n_tested),
            _ruled(f"Knockout effect is weakest on high-redundancy tasks{how}",
                   "strongest on vision-dependent tasks", r, r_lo, r_hi, "hi < 0",
                   unit="Spearman rho(clean R share, Δ U_V)",
                   detail=f"over the pairs with a clean redundancy share; p = {p:.2g}; holds if "
                   "the Fisher-z CI lies below 0", n_tested=len(pairs), n_pairs=n_pairs),
        ]  # fmt: skip
    return claims, found
