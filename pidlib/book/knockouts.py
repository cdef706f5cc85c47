"""Chapter inputs of the knockout chapter: the windowed sweep and the PID under knockout, cached."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from pidlib.analysis.claims import Claim, knockout_claims
from pidlib.analysis.paired import layerwise_differences
from pidlib.analysis.summaries import knockout_per_task, measurable_pairs
from pidlib.book.inputs import load_features, load_samples
from pidlib.book.workers import run_model_calls
from pidlib.config.profiles import Profile
from pidlib.core.cache import ArrayCache, cache_key, cached_table
from pidlib.core.stages import stage
from pidlib.core.threads import pinned_threads
from pidlib.data.tasks import Sample
from pidlib.extract.features import Features
from pidlib.interventions.knockout import cached_knockout_features, knockout_features_group
from pidlib.interventions.spec import as_spec
from pidlib.interventions.sweep import sweep
from pidlib.models.fingerprint import source_fingerprint
from pidlib.models.load import load_model
from pidlib.models.loaded import LoadedModel

__all__ = [
    "SWEEP_CODE", "ChapterModels", "correct_samples", "sweep_table", "knockout_pid",
    "image_question_claims",
]  # fmt: skip

#: Code whose source versions the cached sweep tables.
SWEEP_CODE: tuple[str, ...] = (
    "pidlib.interventions",
    "pidlib.models.answers",
    "pidlib.models.prompt",
)

#: Cache kind (and stage name) of a sweep table.
_SWEEP = "knockout-sweep"
_SWEEP_COLUMNS = [
    "model", "task", "flow", "window", "center", "layers", "first_layer", "last_layer",
    "n_layers", "p_clean", "p_ko", "rel_change", "correct_clean", "correct_ko",
]  # fmt: skip


class ChapterModels:
    """Loads each of a profile's models on first use only (every result is cached, so a warm
    build never loads one)."""

    def __init__(self, profile: Profile):
        self.profile, self._loaded = profile, {}

    def __call__(self, name: str) -> LoadedModel:
        if name not in self._loaded:
            self._loaded[name] = load_model(
                name, dtype=self.profile.dtype, device=self.profile.device
            )
        return self._loaded[name]

    def knockout_features_many(
        self, jobs: Sequence[tuple[str, Sequence[Sample]]], flow: str, **kwargs
    ) -> list[Features]:
        """:func:`~pidlib.interventions.knockout.knockout_features` of every ``(model name,
        samples)`` in ``jobs``, in order, read from the cache without loading a model where every
        chunk is there. Those missing run through
        :func:`~pidlib.book.workers.run_model_calls`: on a CPU profile's local workers (one
        thread each, every worker loading the models it needs) when they are enough work for
        them; otherwise, and on a GPU, here. A flow into the last position is computed with the
        profile's other such flows (:meth:`last_group`), which land in the cache."""
        out = [self.cached_knockout_features(name, rows, flow, **kwargs) for name, rows in jobs]
        todo = [i for i, got in enumerate(out) if got is None]
        group = self.last_group(flow)
        calls = [(jobs[i][0], _first_of_group, (jobs[i][1], group), kwargs) for i in todo]
        forwards = sum(len(jobs[i][1]) for i in todo)
        for i, got in zip(todo, run_model_calls(self.profile, calls, self, forwards), strict=True):
            out[i] = got
        return out

    def last_group(self, flow: str) -> list[str]:
        """``flow`` and, when its target is the last prompt position, the profile's other PID
        flows into it: computed together, they share one forward of the rest of each prompt
        (:func:`~pidlib.interventions.knockout.knockout_features_group`), and the chapter's
        later flows read theirs from the cache."""
        if as_spec(flow).target != "last":
            return [flow]
        return [flow, *(f for f in self.profile.knockout.pid_flows
                        if f != flow and as_spec(f).target == "last")]  # fmt: skip

    def cached_knockout_features(
        self, name: str, samples: Sequence[Sample], flow: str, **kwargs
    ) -> Features | None:
        """Knockout features of model ``name`` from the cache alone, or ``None``."""
        ident = source_fingerprint(name, dtype=self.profile.dtype, device=self.profile.device)
        return None if ident is None else cached_knockout_features(ident, name, samples, flow,
                                                                     **kwargs)  # fmt: skip


def _first_of_group(
    loaded: LoadedModel, samples: Sequence[Sample], flows: Sequence[str], **kwargs
) -> Features:
    """The knockout features of ``flows[0]``, computed with the rest of ``flows`` (which are
    cached, not returned: a worker sends back only what was asked)."""
    return knockout_features_group(loaded, samples, flows, **kwargs)[0]


def correct_samples(
    samples: Sequence[Sample], features: Features, limit: int | None = None
) -> list[Sample]:
    """The samples that entered ``features`` (the clean model's correct answers), in feature
    order, the first ``limit`` of them."""
    by_qid = {s.qid: s for s in samples}
    return [by_qid[q] for q in list(features.qid[:limit])]


def _sweep_rows(
    loaded: LoadedModel, samples: Sequence[Sample], flows: Sequence[str], stride: int,
    window: int, batch_size: int, model: str, task: str,
) -> pd.DataFrame:  # fmt: skip
    """One (model, task, window size) of :func:`sweep_table` (runs in a worker on a CPU)."""
    centers = list(range(0, loaded.num_layers, stride))
    res = sweep(loaded, samples, flows, centers, window=window, batch_size=batch_size)
    per = res.per_sample.assign(model=model, task=task, window=window,
                                n_layers=loaded.num_layers)  # fmt: skip
    return per[_SWEEP_COLUMNS].astype({"center": int, "layers": str})


def sweep_table(
    profile: Profile,
    samples: Mapping[str, Sequence[Sample]],
    clean: Mapping[tuple[str, str], Features],
    n: int,
    models: ChapterModels,
) -> pd.DataFrame:
    """Zhang et al.'s windowed sweep (the profile's flows, each of its window sizes, centres every
    ``stride`` layers) on the first ``n`` correctly answered questions of every (model, task):
    one row per sample, flow, window size and centre. Cached per (model, task, window size);
    those missing run on the profile's workers (:func:`~pidlib.book.workers.run_model_calls`)."""
    ko = profile.knockout
    plan = [(name, task, k, {"columns": 3, "model": name, "task": task, "n": n, "window": k,
                             "flows": list(ko.flows), "stride": ko.stride,
                             "features": clean[name, task].info.get("cache_keys", [])})
            for name in profile.models for task in profile.tasks for k in ko.windows]  # fmt: skip
    store = ArrayCache()
    todo = [i for i, (*_, params) in enumerate(plan)
            if store.load(_SWEEP, cache_key(_SWEEP, params, SWEEP_CODE)) is None]  # fmt: skip
    calls, forwards = [], 0
    for i in todo:
        name, task, k, _ = plan[i]
        rows = correct_samples(samples[task], clean[name, task], n)
        args = (rows, ko.flows, ko.stride, k, profile.batch_size, name, task)
        calls.append((name, _sweep_rows, args, {}))
        # per question: one clean forward and one per flow and centre
        centres = len(range(0, clean[name, task].n_layers, ko.stride))
        forwards += len(rows) * (1 + len(ko.flows) * centres)
    done = {}
    if calls:
        with stage(_SWEEP):
            done = dict(zip(todo, run_model_calls(profile, calls, models, forwards), strict=True))
    tables = [cached_table(_SWEEP, params, lambda i=i: done[i], SWEEP_CODE, store)
              for i, (*_, params) in enumerate(plan)]  # fmt: skip
    return pd.concat(tables, ignore_index=True)


def knockout_pid(
    profile: Profile,
    samples: Mapping[str, Sequence[Sample]],
    clean_features: Mapping[tuple[str, str], Features],
    models: ChapterModels,
    flows: str | Sequence[str] = "image->question",
    refit: Collection[tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """Layer-wise PID under an all-layer knockout of each of ``flows`` on the clean run's
    correct questions, as MMI knockout-minus-clean differences with paired intervals
    (:func:`~pidlib.analysis.paired.layerwise_differences`: one job per (model, task, layer)
    measures every flow, the clean run's part made once), in a ``transforms`` column: "clean
    maps reused" (the clean run's PCA and flows) always, and "refit" (PCA and flows fitted on
    the knocked-out activations) when the knockout moves V or L, for the (model, task) pairs
    in ``refit`` (default: every pair; the chapters pass those above the information floor,
    :func:`~pidlib.analysis.summaries.measurable_pairs`: below it the clean sources carry no
    measurable information for a knockout to move, and a refit's two flow fits per layer are
    most of a job's time). A flow into the last position leaves V and L bit-identical, so
    refitting would only refit Y's map. Rows flow by flow; beside each row, per (flow, model,
    task): ``flow``, the knocked-out accuracy (argmax over the options, ``accuracy_ko``) and
    the largest change of any pooled image-token (``max_dV``) and question-token state
    (``max_dL``) at any layer."""
    flows = [flows] if isinstance(flows, str) else list(flows)
    pairs = [(m, t) for m in profile.models for t in profile.tasks]
    ko: dict[str, dict[tuple[str, str], Features]] = {}
    for flow in flows:
        with stage("knockout forwards"), pinned_threads(profile.parallel.threads):
            got = models.knockout_features_many(
                [(m, correct_samples(samples[t], clean_features[m, t])) for m, t in pairs], flow,
                batch_size=profile.batch_size, target=profile.target,
                progress=sys.stderr.isatty(),
            )  # fmt: skip
        ko[flow] = dict(zip(pairs, got, strict=True))
    dv = {(fl, *p): float(np.abs(f.V - clean_features[p].V).max())
          for fl, by in ko.items() for p, f in by.items()}  # fmt: skip
    dl = {(fl, *p): float(np.abs(f.L - clean_features[p].L).max())
          for fl, by in ko.items() for p, f in by.items()}  # fmt: skip
    moved = {fl: max(v for k, v in [*dv.items(), *dl.items()] if k[0] == fl) > 0 for fl in flows}
    # the chapter reads the MMI differences only (the paper's measure): BROJA's would double the
    # Gaussian PIDs of every half-subsample for numbers no page shows
    spec = dataclasses.replace(profile.pid, measures=("mmi",))
    wanted = set(pairs if refit is None else refit) if any(moved.values()) else set()
    refitted = [p for p in pairs if p in wanted]
    parts = [
        layerwise_differences({p: clean_features[p] for p in chosen},
                              {fl: {p: ko[fl][p] for p in chosen} for fl in flows}, maps=maps,
                              pid_spec=spec, layers=profile.layers, parallel=profile.parallel,
                              seed=profile.seed)
        for chosen, maps in (
            (refitted, {fl: ("refit", "clean") if moved[fl] else ("clean",) for fl in flows}),
            ([p for p in pairs if p not in refitted], dict.fromkeys(flows, ("clean",))),
        )
        if chosen
    ]  # fmt: skip
    order = {(fl, *p): i for i, (fl, p) in enumerate((fl, p) for fl in flows for p in pairs)}
    table = pd.concat(parts, ignore_index=True)
    keys = list(zip(table["run"], table["model"], table["task"], strict=True))
    table = table.iloc[np.argsort([order[k] for k in keys], kind="stable")].reset_index(drop=True)
    keys = list(zip(table["run"], table["model"], table["task"], strict=True))
    acc = {(fl, *p): float((f.choice == f.gold).mean()) for fl, by in ko.items()
           for p, f in by.items()}  # fmt: skip
    return table.drop(columns="run").assign(
        flow=[k[0] for k in keys], accuracy_ko=[acc[k] for k in keys],
        max_dV=[dv[k] for k in keys], max_dL=[dl[k] for k in keys],
    )  # fmt: skip


def image_question_claims(
    profile: Profile, clean_pid: pd.DataFrame, *, intervals: bool = True
) -> list[Claim]:
    """The knockout chapter's PID claims (Image->Question, both transforms variants) for
    ``profile``'s models and tasks, on its questions; ``clean_pid``: their clean layer-wise MMI
    table. Forwards and PID jobs are cached, so a profile the knockout chapter already ran is a
    warm read. ``intervals=False`` skips the half-subsamples (their Gaussian PIDs dominate a
    job): the values are the same, only for replicates whose spread is what is wanted."""
    if not intervals:
        profile = dataclasses.replace(profile, pid=dataclasses.replace(profile.pid, n_bootstrap=0))
    samples = load_samples(profile)
    clean = load_features(profile, samples=samples)
    deltas = knockout_pid(profile, samples, clean, ChapterModels(profile), "image->question",
                          refit=measurable_pairs(clean_pid, profile.floor_bits))  # fmt: skip
    return knockout_claims(knockout_per_task(deltas, clean_pid, floor=profile.floor_bits))[0]
