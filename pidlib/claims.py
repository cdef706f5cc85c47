"""The paper's headline claims, evaluated on this build's results, for the scorecard page.

Each chapter computes its claims with the functions here and records them with :func:`record`
under ``build/<profile>/claims/<chapter>.json``; the scorecard only reads them back
(:func:`load_claims`), so no number on it is typed by hand.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from pidlib.cache import REPO_ROOT, provenance

__all__ = ["Claim", "mean_ci", "record", "load_claims", "transduction_claims"]


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


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of ``values`` (NaNs dropped); a single value has no interval."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if v.size == 1 or np.allclose(v, m):
        return m, m, m
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return m, m - half, m + half


def _dir(profile: str) -> Path:
    return REPO_ROOT / "build" / profile / "claims"


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


def transduction_claims(
    peaks: pd.DataFrame, last: pd.DataFrame, corr: pd.DataFrame | None
) -> list[Claim]:
    """The modal-transduction claims from :func:`~pidlib.layerwise.peak_layers` (U_V),
    :func:`~pidlib.layerwise.last_layer_shares` and, for two models,
    :func:`~pidlib.layerwise.trajectory_correlation` (MMI)."""
    depth = mean_ci(peaks["depth"])
    ul = mean_ci(last["unique_2"])
    s_max = float(last["synergy"].max())
    out = [
        Claim("U_V peaks early and decays", "peak in early layers", *depth,
              holds=bool(depth[2] <= 0.5), unit="relative depth of the U_V peak",
              detail="mean over (model, task); holds if the CI lies in the first half"),
        Claim("U_L carries most of the final predictive information", "≈ 82%", *ul,
              holds=bool(ul[1] >= 0.5), unit="U_L share of I(V,L;Y) at the last layer",
              detail="mean over (model, task); holds if the CI lies above 50%"),
        Claim("Synergy is small on every task", "S < 2% on all tasks", s_max, s_max, s_max,
              holds=bool(s_max < 0.02), unit="largest last-layer S share",
              detail="max over (model, task)"),
    ]  # fmt: skip
    if corr is not None and len(corr):
        atoms = corr[corr["atom"].isin(["redundancy", "unique_1", "unique_2", "synergy"])]
        r = mean_ci(atoms["r"])
        out.append(Claim("Layer-wise trajectories agree across the two models", "r > 0.96", *r,
                         holds=bool(r[0] > 0.96), unit="Pearson r over depth",
                         detail="mean over tasks and the four atoms"))  # fmt: skip
    return out
