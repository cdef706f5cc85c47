"""Chapter inputs of the fingerprint chapter: the PID of one model at planted language priors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from pidlib.analysis.layerwise import layerwise_pid
from pidlib.analysis.summaries import shares
from pidlib.book.inputs import load_features
from pidlib.config.profiles import load_profile

__all__ = ["planted_prior_shares"]


def planted_prior_shares(
    profile: str,
    priors: Sequence[float],
    tasks: Sequence[str],
    model: str,
    layers: Sequence[int],
    floor: float = 0.0,
    **overrides: Any,
) -> pd.DataFrame:
    """MMI atom shares of ``model`` at ``layers`` on Mini-GQA questions regenerated at each
    language-prior strength ``p`` in ``priors`` (new scenes each time; the model is unchanged):
    :func:`~pidlib.analysis.summaries.shares` rows with a ``prior`` column. ``overrides`` go to
    :func:`~pidlib.config.profiles.load_profile` (e.g. ``samples_per_task``). Shares below the
    information ``floor`` (bits) are NaN."""
    rows = []
    for p in priors:
        cfg = load_profile(profile, models=[model], tasks=list(tasks),
                           **{**overrides, "dataset.prior": p})  # fmt: skip
        table = layerwise_pid(load_features(cfg), pid_spec=cfg.pid, layers=list(layers),
                              parallel=cfg.parallel, seed=cfg.seed, progress=False)  # fmt: skip
        rows.append(shares(table[table["measure"] == "mmi"], floor).assign(prior=p))
    return pd.concat(rows, ignore_index=True)
