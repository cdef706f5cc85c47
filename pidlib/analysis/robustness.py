"""The transduction claims re-evaluated under each target Y: one verdict per (claim, target)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pandas as pd

from pidlib.analysis.claims import Claim, transduction_claims
from pidlib.analysis.layerwise import layerwise_pid
from pidlib.analysis.summaries import (
    last_layer_shares,
    measurable_tasks,
    peak_layers,
    trajectory_correlation,
)
from pidlib.config.profiles import ParallelSpec, PIDSpec
from pidlib.config.views import RobustnessSpec, strided_layers
from pidlib.extract.features import Features

__all__ = ["TARGET_LABELS", "cheap_pid_spec", "cheap_backend", "pid_by_target", "target_claims",
           "robustness_table", "robustness_sentence", "robustness_settings",
           "with_robustness"]  # fmt: skip

#: How each target reads in a table header.
TARGET_LABELS: dict[str, str] = {
    "logits": "logits (options in question order)",
    "canonical": "canonical (options in alphabetical order)",
    "margin": "margin (gold vs foils)",
    "hidden": "hidden (last position's final state)",
    "onehot": "onehot (gold answer)",
}
_VERDICT = {True: "holds", False: "does not hold", None: "not tested"}


def cheap_pid_spec(pid: PIDSpec, spec: RobustnessSpec) -> PIDSpec:
    """The chapter's PID settings with the robustness section's cheaper ones (MMI only)."""
    return dataclasses.replace(pid, measures=("mmi",), flow=spec.flow, n_seeds=spec.n_seeds,
                               n_bootstrap=spec.n_bootstrap)  # fmt: skip


def cheap_backend(parallel: ParallelSpec | None, flow: bool) -> ParallelSpec | None:
    """Sequential for flow-free jobs (a few milliseconds each: worker processes would cost more
    than the work), else ``parallel``."""
    return parallel if flow else ParallelSpec(backend="sequential")


def pid_by_target(
    features: Mapping[tuple[str, str], Features], spec: RobustnessSpec, pid: PIDSpec, *,
    parallel: ParallelSpec | None = None, seed: int = 0, cache: Any = True,
) -> dict[str, pd.DataFrame]:  # fmt: skip
    """``{target: layerwise_pid table}``: the same features viewed with each of ``spec.targets``
    (no re-extraction), every ``spec.layer_stride``-th layer, with :func:`cheap_pid_spec`."""
    cheap = cheap_pid_spec(pid, spec)
    parallel = cheap_backend(parallel, spec.flow)
    by_model: dict[str, list[Features]] = {}
    for f in features.values():
        by_model.setdefault(f.model, []).append(f)
    out = {}
    for target in spec.targets:
        parts = [
            layerwise_pid([f.with_target(target) for f in group], pid_spec=cheap,
                          layers=strided_layers(group[0].n_layers, spec.layer_stride),
                          parallel=parallel, seed=seed, cache=cache, progress=False)
            for group in by_model.values()
        ]  # fmt: skip
        out[target] = pd.concat(parts, ignore_index=True)
    return out


def target_claims(tables: Mapping[str, pd.DataFrame], floor: float) -> dict[str, list[Claim]]:
    """``{target: transduction claims}`` from :func:`pid_by_target`'s tables (MMI; the U_V peak,
    last-layer shares and, with two models, the trajectory correlation over the tasks above
    the floor, as in the chapter)."""
    out = {}
    for target, pid in tables.items():
        peaks = peak_layers(pid, "unique_1", "mmi", floor=floor)
        last = last_layer_shares(pid, "mmi", floor=floor)
        models = list(dict.fromkeys(pid["model"]))
        corr = trajectory_correlation(pid, models[:2], measure="mmi") if len(models) >= 2 else None
        out[target] = transduction_claims(peaks, last, corr, floor,
                                          corr_tasks=measurable_tasks(pid, floor))  # fmt: skip
    return out


def with_robustness(claims: list[Claim], by_target: Mapping[str, list[Claim]]) -> list[Claim]:
    """The chapter's ``claims``, each with its verdict under every target of ``by_target``
    (:func:`target_claims`) in ``robustness``, for the scorecard."""
    seen: dict[str, list[str]] = {}
    for target, target_claims_ in by_target.items():
        for c in target_claims_:
            seen.setdefault(c.claim, []).append(f"{target}: {_VERDICT[c.holds]}")
    return [dataclasses.replace(c, robustness="; ".join(seen.get(c.claim, []))) for c in claims]


def _cell(c: Claim) -> str:
    ci = c.lo == c.lo and c.hi == c.hi and c.lo != c.hi  # a finite, non-degenerate interval
    value = f"{c.value:.2f} [{c.lo:.2f}, {c.hi:.2f}]" if ci else f"{c.value:.2f}"
    pairs = f", {c.n_tested}/{c.n_pairs} pairs" if c.n_pairs is not None else ""
    return f"{_VERDICT[c.holds]}: {value}{pairs}"


def robustness_table(
    by_target: Mapping[str, list[Claim]],
    chapter: list[Claim] | None = None,
    chapter_target: str = "logits",
) -> pd.DataFrame:
    """One row per claim, one column per target: the verdict, the value [95% interval] and the
    (model, task) pairs above the floor it rests on. ``chapter``: the chapter's own claims
    (full PID settings, target ``chapter_target``), shown first for reference."""
    columns: dict[str, list[Claim]] = {}
    if chapter is not None:
        columns[f"chapter's estimate ({chapter_target}, full settings)"] = chapter
    columns.update({TARGET_LABELS.get(t, t): cl for t, cl in by_target.items()})
    names = list(dict.fromkeys(c.claim for cl in columns.values() for c in cl))
    rows = {}
    for name in names:
        rows[name] = {col: next((_cell(c) for c in cl if c.claim == name), "")
                      for col, cl in columns.items()}  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("claim")


def robustness_sentence(by_target: Mapping[str, list[Claim]]) -> str:
    """Markdown: how many claims keep one verdict under every target, and which change."""
    verdicts: dict[str, dict[str, bool | None]] = {}
    for target, claims in by_target.items():
        for c in claims:
            verdicts.setdefault(c.claim, {})[target] = c.holds
    stable = [k for k, v in verdicts.items() if len(set(v.values())) == 1]
    text = (f"Under the {len(by_target)} targets, **{len(stable)} of {len(verdicts)}** claims "
            "keep one verdict.")  # fmt: skip
    moved = [
        f"*{k}* ({'; '.join(f'{_VERDICT[h]} under {t}' for t, h in v.items())})"
        for k, v in verdicts.items() if k not in stable
    ]  # fmt: skip
    if moved:
        text += " The verdict depends on the target for: " + ", ".join(moved) + "."
    return text


def robustness_settings(spec: RobustnessSpec, pid: PIDSpec) -> str:
    """Markdown: the settings every target is measured with, against the chapter's."""
    gaussian = "the Gaussian PID of the cross-fitted PCA scores (no normalizing flow)"
    how = "PID Flow" if spec.flow else gaussian
    layers = ("every layer" if spec.layer_stride == 1
              else f"every {spec.layer_stride}th layer and the last")  # fmt: skip
    return (
        f"All targets, the chapter's own included, are measured here with cheaper settings than "
        f"the sections above: {how}, {spec.n_seeds} cross-fitting split(s), "
        f"{spec.n_bootstrap} half-subsamples, {layers}, MMI only. The first column repeats the "
        f"chapter's estimate (PID Flow, {pid.n_seeds} split(s), {pid.n_bootstrap} "
        "half-subsamples) for comparison."
    )
