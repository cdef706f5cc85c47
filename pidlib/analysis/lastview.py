"""The last prompt position as a third view: linear probes of the answer and I(Last; Y)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pidlib.analysis.layerwise import layerwise_pid
from pidlib.config.profiles import ParallelSpec, PIDSpec
from pidlib.config.views import LastPositionSpec, strided_layers
from pidlib.core.cache import ArrayCache, cached_table
from pidlib.core.stages import stage
from pidlib.core.threads import one_thread
from pidlib.extract.features import Features

__all__ = ["VIEWS", "probe_accuracy", "probe_table", "last_pid", "information_rows",
           "formation", "formation_sentence", "last_pid_atoms", "last_source_sentence"]  # fmt: skip

#: The probed views, in display order.
VIEWS: tuple[str, ...] = ("V", "L", "[V, L]", "Last")


def probe_accuracy(x: np.ndarray, y: np.ndarray, *, n_folds: int = 5, c: float = 1.0,
                   seed: int = 0) -> float:  # fmt: skip
    """Cross-validated accuracy of a logistic-regression probe of labels ``y`` (n,) from ``x``
    (n, d): standardised features, ``n_folds`` stratified, shuffled (``seed``) folds, fewer when
    the rarest class has fewer rows; NaN with one class or a class of one row."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y)
    _, counts = np.unique(y, return_counts=True)
    folds = min(n_folds, int(counts.min()))
    if len(counts) < 2 or folds < 2:
        return float("nan")
    hits = 0
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with one_thread():
        for train, test in split.split(x, y):
            probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
            probe.fit(x[train], y[train])
            hits += int((probe.predict(x[test]) == y[test]).sum())
    return hits / len(y)


def _views(f: Features, layer: int) -> dict[str, np.ndarray]:
    v, lang = f.V[:, layer], f.L[:, layer]
    return {"V": v, "L": lang, "[V, L]": np.hstack([v, lang]), "Last": f.Last[:, layer]}


def _digest(f: Features) -> str:
    h = hashlib.sha256()
    for a in (f.V, f.L, f.Last, f.choice):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:24]


def _probe_rows(f: Features, layers: tuple[int, ...], spec: LastPositionSpec,
                seed: int) -> pd.DataFrame:  # fmt: skip
    chance = float(np.unique(f.choice, return_counts=True)[1].max() / f.n)
    rows = [(f.model, f.task, layer, f.n_layers, layer / f.n_layers, view,
             probe_accuracy(x, f.choice, n_folds=spec.probe_folds, c=spec.probe_c, seed=seed),
             chance, f.n)
            for layer in layers for view, x in _views(f, layer).items()]  # fmt: skip
    return pd.DataFrame(rows, columns=["model", "task", "layer", "n_layers", "depth", "view",
                                       "accuracy", "chance", "n"])  # fmt: skip


def probe_table(
    features: Mapping[Any, Features], spec: LastPositionSpec, *, seed: int = 0,
    cache: ArrayCache | bool = True, parallel: ParallelSpec | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Probe accuracy of the model's answer (``choice``, its argmax option) from each of
    :data:`VIEWS` at every ``spec.layer_stride``-th layer of each (model, task): columns model,
    task, layer, n_layers, depth, view, accuracy, chance (the majority answer's share), n.
    Cached per (model, task) under the inputs' hash and the settings; missing (model, task)
    pairs run in parallel (``parallel``, a joblib backend as in :func:`layerwise_pid`)."""
    import joblib

    from pidlib.analysis.parallel import backend

    items = list(features.values())
    if any(f.Last is None for f in items):
        raise ValueError("probe_table: features without Last (extracted before it existed)")
    store = None if cache is False else (cache if isinstance(cache, ArrayCache) else ArrayCache())
    jobs = []
    for f in items:
        layers = strided_layers(f.n_layers, spec.layer_stride)
        params = {"inputs": _digest(f), "model": f.model, "task": f.task, "layers": list(layers),
                  "spec": dataclasses.asdict(spec), "seed": seed}  # fmt: skip
        jobs.append((f, layers, params))
    hits = {}
    if store is not None:
        for i, (_, _, params) in enumerate(jobs):
            try:
                hits[i] = cached_table("last-probes", params, _missing, _CODE, store)
            except LookupError:
                pass
    todo = [i for i in range(len(jobs)) if i not in hits]
    with stage("last-probes"), backend(parallel or ParallelSpec()):
        done = joblib.Parallel()(
            joblib.delayed(_probe_rows)(jobs[i][0], jobs[i][1], spec, seed) for i in todo
        )
    for i, table in zip(todo, done, strict=True):
        if store is not None:
            table = cached_table("last-probes", jobs[i][2], lambda t=table: t, _CODE, store)
        hits[i] = table
    return pd.concat([hits[i] for i in range(len(jobs))], ignore_index=True)


_CODE = ("pidlib.analysis.lastview",)


def _missing() -> pd.DataFrame:
    raise LookupError("not cached")


def last_pid(
    features: Mapping[Any, Features], spec: LastPositionSpec, pid: PIDSpec, *,
    parallel: ParallelSpec | None = None, seed: int = 0, cache: Any = True,
) -> pd.DataFrame:  # fmt: skip
    """The layer-wise PID of I(Y; Last, L) with ``pid`` settings (a :func:`layerwise_pid`
    table: ``unique_1`` / ``mi_1`` are Last's, ``unique_2`` / ``mi_2`` L's), every
    ``spec.layer_stride``-th layer where Last varies (at layer 0, the embeddings, the last
    prompt token is the same template token in every prompt); the features' own target Y."""
    parts = []
    for f in features.values():
        if f.Last is None:
            raise ValueError(f"{f.model} {f.task}: features without Last (re-extract them)")
        view = dataclasses.replace(f, V=f.Last)
        layers = [layer for layer in strided_layers(f.n_layers, spec.layer_stride)
                  if np.ptp(f.Last[:, layer], axis=0).max() > 0]  # fmt: skip
        parts.append(layerwise_pid(view, pid_spec=pid, parallel=parallel, seed=seed, cache=cache,
                                   layers=layers, progress=False))  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def information_rows(last: pd.DataFrame, vl: pd.DataFrame | None = None) -> pd.DataFrame:
    """I(Last; Y) from :func:`last_pid` (and I(V, L; Y) from a table of the same settings),
    bits with 95% intervals, averaged over tasks per (model, layer): columns model, layer,
    quantity, value, lo, hi."""
    pieces = [last[(last["atom"] == "mi_1") & (last["measure"] == "mmi")].assign(
        quantity="I(Last; Y)")]  # fmt: skip
    if vl is not None:
        pieces.append(vl[(vl["atom"] == "total") & (vl["measure"] == "mmi")].assign(
            quantity="I(V, L; Y)"))  # fmt: skip
    rows = pd.concat(pieces, ignore_index=True)
    keys = ["model", "layer", "quantity"]
    return rows.groupby(keys, as_index=False)[["value", "lo", "hi"]].mean()


def formation(probes: pd.DataFrame, formed_at: float) -> pd.DataFrame:
    """Per model: the first layer where the Last probe's accuracy (mean over tasks) has made
    ``formed_at`` of its gain from the majority answer's rate to its best layer (``threshold``),
    with every view's mean accuracy there and at the last layer; NaN layer when Last never
    beats the majority rate."""
    mean = probes.groupby(["model", "layer", "n_layers", "view"], as_index=False)[
        ["accuracy", "chance"]].mean()  # fmt: skip
    rows = []
    for model, g in mean.groupby("model", sort=False):
        acc = g.pivot(index="layer", columns="view", values="accuracy").sort_index()
        chance, best = float(g["chance"].mean()), float(acc["Last"].max())
        threshold = chance + formed_at * (best - chance)
        reached = acc.index[acc["Last"] >= threshold] if best > chance else acc.index[:0]
        layer = float(reached[0]) if len(reached) else float("nan")
        at = acc.loc[reached[0]] if len(reached) else acc.iloc[-1] * np.nan
        row = {"model": model, "n_layers": int(g["n_layers"].iloc[0]), "layer": layer,
               "threshold": threshold, "chance": chance, "last_max": best,
               "last_max_layer": int(acc["Last"].idxmax())}  # fmt: skip
        row.update({f"{v} at layer": float(at[v]) for v in VIEWS})
        row.update({f"{v} at last layer": float(acc[v].iloc[-1]) for v in VIEWS})
        rows.append(row)
    return pd.DataFrame(rows)


def formation_sentence(table: pd.DataFrame, formed_at: float) -> str:
    """Markdown: where the answer is formed (from :func:`formation`), per model."""
    parts = []
    for r in table.to_dict("records"):
        others = ", ".join(f"{v} {r[v + ' at layer']:.2f}" for v in VIEWS[:3])
        at_last = ", ".join(f"{v} {r[v + ' at last layer']:.2f}" for v in VIEWS[:3])
        if r["layer"] == r["layer"]:  # reached
            parts.append(
                f"in **{r['model']}** the Last probe makes {formed_at:.0%} of its gain over the "
                f"majority answer ({r['chance']:.2f}; best {r['last_max']:.2f}, at layer "
                f"{r['last_max_layer']}) at layer **{int(r['layer'])} of {r['n_layers']}**, "
                f"with {r['Last at layer']:.2f} (mean over tasks), while the probes of the "
                f"pooled views are at {others} there and at {at_last} at the last layer"
            )
        else:
            parts.append(
                f"in **{r['model']}** the Last probe never beats the majority answer "
                f"({r['chance']:.2f}); at the last layer the pooled views' probes are at "
                f"{at_last}"
            )
    return "Where is the answer formed? " + "; ".join(parts) + "."


def last_pid_atoms(last: pd.DataFrame, measure: str = "mmi") -> pd.DataFrame:
    """The atoms of :func:`last_pid`'s ``measure`` averaged over tasks per (model, layer):
    columns model, layer, atom, value, lo, hi (bits)."""
    rows = last[last["measure"] == measure]
    return rows.groupby(["model", "layer", "atom"], as_index=False)[["value", "lo", "hi"]].mean()


def last_source_sentence(last: pd.DataFrame, measure: str = "mmi") -> str:
    """Markdown: at each model's last layer, the (Last, L) PID's atoms (mean over tasks, bits,
    with the tasks' mean 95% interval) and in how many tasks U_Last's interval excludes 0."""
    parts = []
    for model, g in last[last["measure"] == measure].groupby("model", sort=False):
        top = g[g["layer"] == g["layer"].max()]
        mean = top.groupby("atom")[["value", "lo", "hi"]].mean()
        u = top[top["atom"] == "unique_1"]
        atoms = ", ".join(
            f"{name} {mean.loc[a, 'value']:.3f} [{mean.loc[a, 'lo']:.3f}, {mean.loc[a, 'hi']:.3f}]"
            for a, name in (("unique_1", "U_Last"), ("unique_2", "U_L"), ("redundancy", "R"),
                            ("synergy", "S"), ("total", "I(Last, L; Y)"))
        )  # fmt: skip
        parts.append(
            f"in **{model}** at layer {int(top['layer'].max())}: {atoms} bits (mean over "
            f"tasks); U_Last's interval lies above 0 in {int((u['lo'] > 0).sum())} of {len(u)} "
            "tasks"
        )
    return "The last position against the question at the last layer: " + "; ".join(parts) + "."
