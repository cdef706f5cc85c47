"""The paper's headline claims, evaluated on this build's results, for the scorecard page.

Each chapter computes its claims with the functions here and records them with :func:`record`
under ``build/<profile>/claims/<chapter>.json``; the scorecard only reads them back
(:func:`load_claims`), so no number on it is typed by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from pidlib.analysis.summaries import KNOCKOUT_TRANSFORMS
from pidlib.core.paths import build_dir
from pidlib.core.provenance import provenance
from pidlib.stats import t_interval

__all__ = [
    "Claim", "record", "load_claims", "tested_on", "claims_markdown", "transduction_claims",
    "fingerprint_claims",
    "knockout_claims",
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


def claims_markdown(claims: Sequence[Claim]) -> str:
    """One Markdown bullet per claim: the paper's value, this build's with its interval, the
    pairs it was tested on, and the verdict."""
    verdicts = {True: "holds", False: "does not hold", None: "not tested"}
    lines = []
    for c in claims:
        tested = (f" (tested on {c.n_tested} of {c.n_pairs} (model, task) pairs)"
                  if c.n_pairs is not None else "")  # fmt: skip
        value = f"{c.value:.3g} [{c.lo:.3g}, {c.hi:.3g}] {c.unit}"
        lines.append(f"- **{c.claim}** (paper: {c.paper}): this build {value}{tested}; "
                     f"{verdicts[c.holds]}.")  # fmt: skip
    return "\n".join(lines)


def transduction_claims(
    peaks: pd.DataFrame, last: pd.DataFrame, corr: pd.DataFrame | None, floor: float
) -> list[Claim]:
    """The modal-transduction claims from :func:`~pidlib.analysis.summaries.peak_layers` (U_V),
    :func:`~pidlib.analysis.summaries.last_layer_shares` and, for two models,
    :func:`~pidlib.analysis.summaries.trajectory_correlation` (MMI). Each claim is tested only
    on the (model, task) pairs above the information ``floor`` (bits) and says how many; with
    none it is not testable (``holds=None``)."""
    above_peak, above_last = peaks[peaks["measurable"]], last[last["measurable"]]
    n_pairs, where = len(peaks), f"(model, task) pairs with I above the {floor:g}-bit floor"
    depth = t_interval(above_peak["depth"])
    ul = t_interval(above_last["unique_2"])
    s_max = float(above_last["synergy"].max()) if len(above_last) else float("nan")
    out = [
        Claim("U_V peaks early and decays", "peak in early layers", *depth,
              holds=_holds(depth[2] <= 0.5, depth[2]), unit="relative depth of the U_V peak",
              detail=f"mean over {where} (U_V's interval above it; ties averaged); holds if "
              "the CI lies in the first half",
              n_tested=len(above_peak), n_pairs=n_pairs),
        Claim("U_L carries most of the final predictive information", "≈ 82%", *ul,
              holds=_holds(ul[1] >= 0.5, ul[1]), unit="U_L share of I(V,L;Y) at the last layer",
              detail=f"mean over {where} at the last layer; holds if the CI lies above 50%",
              n_tested=len(above_last), n_pairs=n_pairs),
        Claim("Synergy is small on every task", "S < 2% on all tasks", s_max, s_max, s_max,
              holds=_holds(s_max < 0.02, s_max), unit="largest last-layer S share",
              detail=f"max over {where} at the last layer",
              n_tested=len(above_last), n_pairs=n_pairs),
    ]  # fmt: skip
    if corr is not None and len(corr):
        atoms = corr[corr["atom"].isin(["redundancy", "unique_1", "unique_2", "synergy"])]
        r = t_interval(atoms["r"])
        out.append(Claim("Layer-wise trajectories agree across the two models", "r > 0.96", *r,
                         holds=_holds(r[0] > 0.96, r[0]), unit="Pearson r over depth",
                         detail=f"mean over {atoms['task'].nunique()} tasks and the four atoms "
                         "(bits, every layer)"))  # fmt: skip
    return out


def fingerprint_claims(
    task_spread: pd.Series,
    model_spread: pd.Series | None,
    planted: pd.DataFrame,
    prior_tasks: Sequence[str],
    probe_layers: Sequence[int],
) -> tuple[list[Claim], dict]:
    """The task-fingerprint claims from :func:`~pidlib.analysis.summaries.fingerprint_spread`
    and the planted-prior redundancy shares (rows of ``prior``, ``task``, ``share``).

    Returns the claims and their statistics: ``rho`` / ``p`` (Spearman, pooled), ``by_task``
    (per-task rho) and ``rises`` (fraction of tasks with a positive rho).
    """
    usable = planted.groupby("task").filter(lambda g: g["prior"].nunique() >= 3)
    rho = (stats.spearmanr(usable["prior"], usable["share"]) if len(usable) >= 3
           else (float("nan"), float("nan")))  # fmt: skip
    by_task = (usable.groupby("task").apply(lambda g: stats.spearmanr(g["prior"], g["share"])[0])
               if len(usable) else pd.Series(dtype=float))  # fmt: skip
    found = {"rho": float(rho[0]), "p": float(rho[1]), "by_task": by_task,
             "rises": float(np.mean(by_task > 0)) if len(by_task) else float("nan")}  # fmt: skip
    # untestable with one model, or when no task has a share above the floor (all NaN)
    spreads = (task_spread.mean(), np.nan if model_spread is None else model_spread.mean())
    claims = [
        Claim("Fingerprints differ by task", "strongly task-dependent",
              float(task_spread.mean()), float(task_spread.min()), float(task_spread.max()),
              holds=bool(spreads[0] > spreads[1]) if np.isfinite(spreads).all() else None,
              unit="mean std of atom shares across tasks (fraction)",
              detail="holds if tasks differ more than the two models do on the same task"),
        Claim("Redundancy tracks the (planted) semantic prior", "redundancy governs",
              found["rho"], float(by_task.min()) if len(by_task) else float("nan"),
              float(by_task.max()) if len(by_task) else float("nan"),
              holds=_holds(rho[0] > 0 and rho[1] < 0.05, rho[0], rho[1]),
              unit="Spearman rho(prior, R share)",
              n_tested=int(usable["task"].nunique()), n_pairs=len(prior_tasks),
              detail=f"pooled over {', '.join(prior_tasks)} and layers {list(probe_layers)}; "
              f"range = per-task rho; p = {rho[1]:.2g}; only tasks with shares above the "
              "information floor at >= 3 prior strengths"),
    ]  # fmt: skip
    return claims, found


def knockout_claims(per_task: pd.DataFrame, curves: pd.DataFrame) -> tuple[list[Claim], dict]:
    """The knockout claims from :func:`~pidlib.analysis.summaries.knockout_per_task` (one row
    per transforms variant, model and task) and the windowed sweep's ``curves``.

    Returns the claims and their statistics: ``acc_drop`` (t interval of the largest
    Image->Question drop of the answer probability per (model, task), %) and ``variants``:
    per transforms variant, the t intervals of Δ U_V (late), Δ S, Δ I and the Spearman rho
    against clean redundancy as ``(rho, p, pairs used, pairs)``: over the (model, task) pairs
    with a clean redundancy share (above the information floor), NaN with fewer than three.
    """
    ki = curves[curves["flow"] == "image->question"]
    found: dict = {"acc_drop": t_interval(ki.groupby(["model", "task"])["rel_change"].min()),
                   "variants": {}}  # fmt: skip
    claims = []
    for variant in [v for v in KNOCKOUT_TRANSFORMS if v in set(per_task["transforms"])]:
        rows = per_task[per_task["transforms"] == variant]
        # pairs below the information floor have no redundancy share (NaN): leave them out
        pairs = rows[["clean R share", "ΔU_V (late layers)"]].dropna()
        r, p = (stats.spearmanr(pairs.iloc[:, 0], pairs.iloc[:, 1]) if len(pairs) >= 3
                else (np.nan, np.nan))  # fmt: skip
        rho = (float(r), float(p), len(pairs), len(rows))
        cols = ("ΔU_V (late layers)", "ΔS (all layers)", "ΔI(V,L;Y) (all layers)")
        d_uv, d_s, d_tot = (t_interval(rows[c]) for c in cols)
        found["variants"][variant] = d_uv, d_s, d_tot, rho
        how = f" ({variant})" if variant != "refit" else ""
        claims += [
            Claim(f"Image→Question knockout traps visual-unique information{how}",
                  "U_V rises in late layers", *d_uv, holds=_holds(d_uv[1] > 0, d_uv[1]),
                  unit="Δ U_V, bits, mean over late layers",
                  detail="mean over (model, task); holds if the CI lies above 0"),
            Claim(f"Knockout induces compensatory synergy{how}", "S rises", *d_s,
                  holds=_holds(d_s[1] > 0, d_s[1]), unit="Δ S, bits, mean over layers",
                  detail="mean over (model, task)"),
            Claim(f"Knockout raises the total information cost{how}",
                  "I(V,L;Y) rises (some totals fall)", *d_tot,
                  holds=_holds(d_tot[1] > 0, d_tot[1]),
                  unit="Δ I(V,L;Y), bits, mean over layers", detail="mean over (model, task)"),
            Claim(f"Knockout effect is weakest on high-redundancy tasks{how}",
                  "strongest on vision-dependent tasks", float(rho[0]), float(rho[0]),
                  float(rho[0]), holds=_holds(rho[0] < 0 and rho[1] < 0.05, rho[0], rho[1]),
                  unit="Spearman rho(clean R share, Δ U_V)",
                  detail=f"over (model, task); p = {rho[1]:.2g}", n_tested=rho[2],
                  n_pairs=rho[3]),
        ]  # fmt: skip
    return claims, found
