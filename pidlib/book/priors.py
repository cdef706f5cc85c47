"""Chapter inputs of retrained models: replicate sets (Seeds chapter) and models trained at
planted language priors (Task fingerprints chapter)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import pandas as pd

from pidlib.analysis.layerwise import layerwise_pid
from pidlib.analysis.summaries import prior_contrast
from pidlib.book.inputs import draw_pools, load_features
from pidlib.config.profiles import Profile

__all__ = ["replicate_tables", "learned_prior_pid", "learned_prior_contrast", "prior_side"]


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
    at = [(p, replace(profile, models=(model,), tasks=seeds.prior_tasks,
                      dataset=replace(profile.dataset, prior=p)))
          for p, model in zip(seeds.priors, seeds.prior_models, strict=True)]  # fmt: skip
    draw_pools([at_p for _, at_p in at])  # every prior's questions at once, on the workers
    rows = [_mmi(at_p, layers).assign(prior=p) for p, at_p in at]
    return pd.concat(rows, ignore_index=True)


#: The learned-prior tables of a profile without prior-trained models: empty, same columns.
_NO_PRIORS = (
    pd.DataFrame(columns=["prior", "task", "layer", "atom", "value", "lo", "hi"]),
    pd.DataFrame(columns=["task", "layer", "difference", "lo", "hi", "se", "mde", "measurable"]),
)


def learned_prior_contrast(profile: Profile, n_layers: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(learned, contrast)``: :func:`learned_prior_pid` at a middle and the last of
    ``n_layers`` and its :func:`~pidlib.analysis.summaries.prior_contrast` (strongest minus
    weakest prior, per task and layer, at the profile's floor); empty tables when the profile
    names no prior-trained models."""
    if not profile.seeds.prior_models:
        return _NO_PRIORS
    learned = learned_prior_pid(profile, sorted({n_layers // 2, n_layers}))
    return learned, prior_contrast(learned, profile.floor_bits)


def prior_side(
    profile: Profile, replicates: Mapping[str, pd.DataFrame], tasks: Sequence[str], layer: int
) -> dict[str, float]:
    """Set label -> the mean redundancy (MMI, bits) at ``layer`` over ``tasks`` of the set's
    model of the weakest-prior model's family (its position in the replicate sets), from the
    replicate sets' tables (``replicates``): the retrained side of the learned-prior contrast.
    Empty when that model is in no set."""
    seeds = profile.seeds
    if not seeds.prior_models or not tasks:
        return {}
    weakest = seeds.prior_models[min(range(len(seeds.priors)), key=seeds.priors.__getitem__)]
    sets = dict(zip(seeds.set_labels(), seeds.matching(profile.models), strict=True))
    where = [models.index(weakest) for models in sets.values() if weakest in models]
    if not where:
        return {}
    out = {}
    for label, models in sets.items():
        t = replicates[label]
        t = t[(t["measure"] == "mmi") & (t["atom"] == "redundancy") & (t["layer"] == layer)]
        rows = t[(t["model"] == models[where[0]]) & t["task"].isin(tasks)]
        out[label] = float(rows["value"].mean()) if len(rows) else float("nan")
    return out
