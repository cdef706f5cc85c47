"""Chapter inputs of retrained models: replicate sets (Seeds chapter) and models trained at
planted language priors (Task fingerprints chapter)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pandas as pd

from pidlib.analysis.layerwise import layerwise_pid
from pidlib.analysis.summaries import above_floor
from pidlib.book.inputs import load_features
from pidlib.config.profiles import Profile

__all__ = ["measurable_tasks", "replicate_tables", "learned_prior_pid"]


def measurable_tasks(pid: pd.DataFrame, floor: float, measure: str = "mmi") -> tuple[str, ...]:
    """The tasks where some model's I(V,L;Y) passes the information ``floor`` at some layer."""
    total = pid[(pid["measure"] == measure) & (pid["atom"] == "total")]
    return tuple(dict.fromkeys(total.loc[above_floor(total, floor), "task"]))


def _mmi(profile: Profile, layers: Sequence[int] | None) -> pd.DataFrame:
    """The layer-wise MMI PID of a profile's models and tasks, with its PID settings (MMI only:
    the claims read no other measure, and the MMI estimate does not depend on the others)."""
    return layerwise_pid(load_features(profile), pid_spec=replace(profile.pid, measures=("mmi",)),
                         layers=layers, parallel=profile.parallel, seed=profile.seed,
                         progress=False)  # fmt: skip


def replicate_tables(profile: Profile, tasks: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Set label -> the layer-wise MMI PID of that replicate set (``profile.seeds``) on
    ``tasks``, with the profile's questions, layers and PID settings."""
    seeds = profile.seeds
    sets = seeds.matching(profile.models)
    return {label: _mmi(replace(profile, models=tuple(models), tasks=tuple(tasks)), profile.layers)
            for label, models in zip(seeds.set_labels(), sets, strict=True)}  # fmt: skip


def learned_prior_pid(profile: Profile, layers: Sequence[int]) -> pd.DataFrame:
    """The layer-wise MMI PID at ``layers`` of each model of ``profile.seeds.prior_models`` on
    the ``prior_tasks``' test questions generated at the language prior it was trained at: one
    table with a ``prior`` column."""
    seeds = profile.seeds
    rows = []
    for p, model in zip(seeds.priors, seeds.prior_models, strict=True):
        at_p = replace(profile, models=(model,), tasks=seeds.prior_tasks,
                       dataset=replace(profile.dataset, prior=p))  # fmt: skip
        rows.append(_mmi(at_p, layers).assign(prior=p))
    return pd.concat(rows, ignore_index=True)
