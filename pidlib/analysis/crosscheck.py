"""PID Flow beside the discrete-target cross-check, at chosen layers of each (model, task).

The cross-check (:func:`pidlib.pid.discrete.discrete_pid`) takes the model's chosen option as a
discrete Y and discretises V and L by cross-fitted probes and k-means; unlike a Gaussian PID it
sees XOR-type synergy. Both estimates are in bits; rows come from a layer-wise PID table.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from pidlib.core.cache import ArrayCache, cached_table
from pidlib.extract.features import Features
from pidlib.pid.discrete import discrete_pid

__all__ = ["ATOMS_SHOWN", "probe_layers", "crosscheck_table", "crosscheck_sentence"]

#: Quantities compared.
ATOMS_SHOWN: tuple[str, ...] = ("total", "redundancy", "unique_1", "unique_2", "synergy")
#: Code whose source versions the cached cross-check values.
CODE: tuple[str, ...] = ("pidlib.pid", "pidlib.analysis.crosscheck")


def probe_layers(n_layers: int) -> list[int]:
    """The first, middle and last hidden state (0, n_layers // 2, n_layers)."""
    return sorted({0, n_layers // 2, n_layers})


def crosscheck_table(
    features: Mapping[tuple[str, str], Features],
    pid: pd.DataFrame,
    *,
    discretiser: str = "kmeans",
    n_levels: int = 4,
    seed: int = 0,
    cache: ArrayCache | None = None,
) -> pd.DataFrame:
    """One row per (model, task, layer, atom) at :func:`probe_layers`: PID Flow's BROJA value
    (from ``pid``, the layer-wise table) beside the cross-check's BROJA value, with Y = the
    model's choice among the options (a discrete answer). The cross-check's values are cached
    per (model, task) when the features name their cache entries (``info["cache_keys"]``)."""
    parts = []
    for (model, task), f in features.items():

        def compute(f: Features = f) -> pd.DataFrame:
            rows = []
            for layer in probe_layers(f.n_layers):
                est = discrete_pid(f.V[:, layer], f.L[:, layer], f.choice, measure="broja",
                                   discretiser=discretiser, n_levels=n_levels,
                                   seed=seed)  # fmt: skip
                rows += [{"layer": layer, "atom": a, "cross-check": getattr(est, a)}
                         for a in ATOMS_SHOWN]  # fmt: skip
            return pd.DataFrame(rows)

        keys = f.info.get("cache_keys")
        params = {"features": keys, "n": f.n, "discretiser": discretiser, "n_levels": n_levels,
                  "seed": seed}  # fmt: skip
        part = cached_table("crosscheck", params, compute, CODE, cache) if keys else compute()
        parts.append(part.assign(model=model, task=task))
    flow = pid[pid["measure"] == "broja"].set_index(["model", "task", "layer", "atom"])["value"]
    out = pd.concat(parts, ignore_index=True)[["model", "task", "layer", "atom", "cross-check"]]
    idx = pd.MultiIndex.from_frame(out[["model", "task", "layer", "atom"]])
    out.insert(4, "PID Flow", flow.reindex(idx).to_numpy())
    return out


def crosscheck_sentence(table: pd.DataFrame) -> str:
    """Markdown: where the cross-check finds more synergy than PID Flow (bits), from
    :func:`crosscheck_table` rows."""
    syn = table[table["atom"] == "synergy"].assign(
        gap=lambda d: d["cross-check"] - d["PID Flow"])  # fmt: skip
    top = syn.sort_values("gap", ascending=False).head(3)
    top = top.rename(columns={"PID Flow": "flow", "cross-check": "cross"})
    rows = "; ".join(f"{r.model} {r.task} layer {r.layer}: {r.cross:.3f} vs {r.flow:.3f}"
                     for r in top.itertuples())  # fmt: skip
    return (
        f"Over {len(syn)} (model, task, layer) cells the cross-check's synergy exceeds PID "
        f"Flow's by {syn['gap'].median():+.3f} bits at the median and by up to "
        f"{syn['gap'].max():+.3f} bits (largest: {rows}; cross-check vs PID Flow)."
    )
