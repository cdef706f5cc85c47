"""Summaries of layer-wise PID tables: shares, peaks, last-layer shares, cross-model agreement."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pidlib.analysis.layerwise import COLUMNS
from pidlib.analysis.paired import TRANSFORMS
from pidlib.pid.result import ATOMS
from pidlib.stats import difference_interval

__all__ = [
    "shares", "peak_layers", "last_layer_shares", "trajectory_correlation", "fingerprint_table",
    "fingerprint_spread", "floor_sentence", "KNOCKOUT_TRANSFORMS", "knockout_flow_summary",
    "knockout_per_task", "knockout_localisation", "paired_widths", "interval_note", "above_floor",
    "measurable_pairs", "measurable_tasks", "prior_contrast",
]  # fmt: skip

_FOUR = ATOMS[:4]


def _measure(df: pd.DataFrame, measure: str) -> pd.DataFrame:
    missing = sorted(set(COLUMNS) - set(df.columns) - {"no_interval"})  # optional: False
    if missing:
        raise ValueError(f"not a layerwise_pid table: columns {missing} are missing")
    if measure not in set(df["measure"]):
        raise ValueError(f"measure {measure!r} not in the table ({sorted(set(df['measure']))})")
    return df[df["measure"] == measure]


def above_floor(rows: pd.DataFrame, floor: float) -> pd.Series:
    """Whether each row's estimate lies above ``floor`` bits: its lower interval end does (its
    value, in a run that asked for no interval); never where an interval was asked for but the
    rows were too few for one (``no_interval``): an estimate without a lower bound cannot show
    that there is information to share out."""
    missing = rows["no_interval"] if "no_interval" in rows else False
    return (rows["lo"].fillna(rows["value"]) > floor) & ~pd.Series(missing, index=rows.index,
                                                                    dtype=bool)  # fmt: skip


def measurable_pairs(
    pid: pd.DataFrame, floor: float, measure: str = "mmi"
) -> tuple[tuple[str, str], ...]:
    """The (model, task) pairs whose I(V,L;Y) passes the information ``floor`` at some layer
    (:func:`knockout_per_task`'s ``measurable``)."""
    total = pid[(pid["measure"] == measure) & (pid["atom"] == "total")]
    hit = total.loc[above_floor(total, floor), ["model", "task"]]
    return tuple(dict.fromkeys(zip(hit["model"], hit["task"], strict=True)))


def measurable_tasks(pid: pd.DataFrame, floor: float, measure: str = "mmi") -> tuple[str, ...]:
    """The tasks where some model's I(V,L;Y) passes the information ``floor`` at some layer."""
    return tuple(dict.fromkeys(task for _, task in measurable_pairs(pid, floor, measure)))


def shares(df: pd.DataFrame, floor: float = 0.0) -> pd.DataFrame:
    """The four atoms' rows with ``share`` = value / I(V,L;Y) at the same (model, task, layer,
    measure), and the total's bits beside it (``total``, ``total_lo``).

    ``measurable`` is False where the total does not pass :func:`above_floor`: there the pooled
    sources carry no measurable information, and ``share`` is NaN rather than a fraction of
    noise."""
    keys = ["model", "task", "layer", "measure"]
    total = df[df["atom"] == "total"].assign(measurable=lambda d: above_floor(d, floor))
    total = total[[*keys, "value", "lo", "measurable"]]
    total = total.rename(columns={"value": "total", "lo": "total_lo"})
    out = df[df["atom"].isin(_FOUR)].merge(total, on=keys, how="left")
    out["share"] = (out["value"] / out["total"]).where(out["measurable"] & (out["total"] > 0))
    return out.reset_index(drop=True)


def peak_layers(
    df: pd.DataFrame, atom: str = "unique_1", measure: str = "mmi", floor: float = 0.0
) -> pd.DataFrame:
    """Per (model, task): the layer (and relative depth) where ``atom`` peaks, its value, and
    whether the peak is measurable.

    Only layers whose ``atom`` passes :func:`above_floor` can hold a peak; a (model, task) with
    none has ``measurable=False`` and NaN depth.
    Exact ties are explicit: ``tied`` counts the layers sharing the maximum, and ``depth`` is
    their mean depth (no tie is broken toward either end). The default, U_V, tests the paper's
    claim that vision-unique information peaks early."""
    if atom not in ATOMS:
        raise ValueError(f"atom {atom!r} is not one of {ATOMS}")
    sub = _measure(df, measure)
    sub = sub[sub["atom"] == atom].sort_values(["model", "task", "layer"])
    rows = []
    for (model, task), g in sub.groupby(["model", "task"], sort=False):
        ok = g[above_floor(g, floor)]
        row = {"model": model, "task": task, "n_layers": int(g["n_layers"].iloc[0]),
               "layer": np.nan, "depth": np.nan, "value": float(g["value"].max()),
               "tied": 0, "measurable": not ok.empty}  # fmt: skip
        if not ok.empty:
            top = ok[ok["value"] == ok["value"].max()]
            row.update(layer=float(top["layer"].mean()), depth=float(top["depth"].mean()),
                       value=float(top["value"].iloc[0]), tied=len(top))  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def last_layer_shares(df: pd.DataFrame, measure: str = "mmi", floor: float = 0.0) -> pd.DataFrame:
    """Per (model, task): each atom's share of I(V,L;Y) at the last layer (wide: one column per
    atom), with the total (bits, ``total`` and ``total_lo``) and ``measurable`` (see
    :func:`shares`). The paper's "82%" is the ``unique_2`` (U_L) column averaged over tasks."""
    sub = shares(_measure(df, measure), floor)
    sub = sub[sub["layer"] == sub["n_layers"]]
    wide = sub.pivot_table(index=["model", "task"], columns="atom", values="share", sort=False,
                           dropna=False)  # fmt: skip
    wide = wide.reindex(columns=list(_FOUR)).reset_index().rename_axis(columns=None)
    info = sub.drop_duplicates(["model", "task"])[["model", "task", "total", "total_lo",
                                                   "measurable"]]  # fmt: skip
    return wide.merge(info, on=["model", "task"], how="left")


def _trajectory(sub: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    sub = sub.sort_values("layer")
    return sub["depth"].to_numpy(float), sub[column].to_numpy(float)


def trajectory_correlation(
    df: pd.DataFrame,
    models: Sequence[str] | None = None,
    *,
    measure: str = "mmi",
    atoms: Sequence[str] = (*_FOUR, "total"),
    column: str = "value",
) -> pd.DataFrame:
    """Pearson correlation over depth of each atom's trajectory in two models, per task.

    ``models``: the two models (default: the table's two). ``column``: "value" (bits) or
    "share" (fraction of I(V,L;Y)). Trajectories are aligned on relative depth (layer /
    n_layers): with equal layer counts layer by layer; otherwise the deeper model's trajectory
    is linearly interpolated at the shallower model's depths, so each of its layers counts
    once. Columns: task, atom, model_a, model_b, r, n_points (NaN r for a constant trajectory).
    """
    sub = _measure(df, measure)
    if column == "share":
        sub = shares(sub)
    elif column != "value":
        raise ValueError(f"column must be 'value' or 'share', got {column!r}")
    names = list(dict.fromkeys(sub["model"])) if models is None else list(models)
    if len(names) != 2 or any(m not in set(sub["model"]) for m in names):
        raise ValueError(
            f"need two models from the table ({sorted(set(sub['model']))}), got {names}"
        )
    bad = [a for a in atoms if a not in ATOMS or (column == "share" and a not in _FOUR)]
    if bad:
        raise ValueError(f"atoms {bad} not available for column {column!r}")
    rows = []
    tasks = [
        t for t in dict.fromkeys(sub["task"]) if set(sub[sub["task"] == t]["model"]) >= set(names)
    ]
    for task in tasks:
        for atom in atoms:
            sel = sub[(sub["task"] == task) & (sub["atom"] == atom)]
            (da, va), (db, vb) = (_trajectory(sel[sel["model"] == m], column) for m in names)
            if len(da) > len(db):
                va = np.interp(db, da, va)
            elif len(db) > len(da):
                vb = np.interp(da, db, vb)
            ok = np.isfinite(va) & np.isfinite(vb)
            va, vb = va[ok], vb[ok]
            r = np.nan
            if len(va) > 2 and np.std(va) > 0 and np.std(vb) > 0:
                r = float(np.corrcoef(va, vb)[0, 1])
            rows.append((task, atom, names[0], names[1], r, len(va)))
    import pandas as pd

    return pd.DataFrame(rows, columns=["task", "atom", "model_a", "model_b", "r", "n_points"])


def fingerprint_table(sh: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Each task's mean share of every atom over all layers and models (one row per task, one
    column per atom, named by ``labels``, and the mean I(V,L;Y) in bits of the measurable
    layers), sorted by redundancy; tasks without a measurable share (every layer below the
    information floor) are left out."""
    labels = labels or {}
    table = sh.groupby(["task", "atom"])["share"].mean().unstack("atom").rename(columns=labels)
    bits = sh[sh["measurable"]].drop_duplicates(["model", "task", "layer", "measure"])
    table["I(V,L;Y) bits"] = bits.groupby("task")["total"].mean()
    return table.dropna(subset=[c for c in table if c != "I(V,L;Y) bits"], how="all").sort_values(
        labels.get("redundancy", "redundancy")
    )


def fingerprint_spread(sh: pd.DataFrame) -> tuple[pd.Series, pd.Series | None]:
    """How different the fingerprints are: per atom, the standard deviation of its share across
    tasks (same model and layer), averaged over layers and models; and across models (same task
    and layer), or ``None`` with one model."""
    task_spread = sh.groupby(["model", "atom", "layer"])["share"].std().groupby("atom").mean()
    if sh["model"].nunique() < 2:
        return task_spread, None
    model_spread = sh.groupby(["task", "atom", "layer"])["share"].std().groupby("atom").mean()
    return task_spread, model_spread


#: The two ways the knocked-out activations are measured: PCA and flows refit on them, or the
#: clean run's reused (in this order in every table and claim list).
KNOCKOUT_TRANSFORMS: tuple[str, ...] = tuple(TRANSFORMS.values())


def knockout_per_task(
    deltas: pd.DataFrame, clean: pd.DataFrame, late: float = 2 / 3, floor: float = 0.0
) -> pd.DataFrame:
    """Per (transforms, model, task) (and ``flow`` when the table has it): mean Δ U_V over late
    layers (depth >= ``late``), mean Δ S and Δ I(V,L;Y) over all layers (MMI), the clean
    run's mean redundancy share over the layers above the information ``floor`` (bits), and
    ``measurable``: whether the clean I(V,L;Y) passes the floor at some layer (a pair without
    measurable information has nothing a knockout could trap or move)."""
    mmi = deltas[deltas["measure"] == "mmi"]
    keys = [*(["flow"] if "flow" in deltas else []), "transforms", "model", "task"]

    def mean_delta(rows: pd.DataFrame, atom: str) -> pd.Series:
        return rows[rows["atom"] == atom].groupby(keys)["delta"].mean()

    out = pd.DataFrame({
        "ΔU_V (late layers)": mean_delta(mmi[mmi["depth"] >= late], "unique_1"),
        "ΔS (all layers)": mean_delta(mmi, "synergy"),
        "ΔI(V,L;Y) (all layers)": mean_delta(mmi, "total"),
    }).reset_index()  # fmt: skip
    if "accuracy_ko" in deltas:
        acc = deltas.groupby(keys)["accuracy_ko"].first()
        out["accuracy under knockout"] = acc.reindex(pd.MultiIndex.from_frame(out[keys])).to_numpy()
    sh = shares(clean[clean["measure"] == "mmi"], floor=floor)
    pairs = pd.MultiIndex.from_frame(out[["model", "task"]])
    red = sh[sh["atom"] == "redundancy"].groupby(["model", "task"])
    out["clean R share"] = red["share"].mean().reindex(pairs).to_numpy()
    out["measurable"] = red["measurable"].any().reindex(pairs, fill_value=False).to_numpy()
    return out


def knockout_flow_summary(deltas: pd.DataFrame, measure: str = "mmi") -> pd.DataFrame:
    """Per (flow, model) of a knockout-difference table with a ``flow`` column, read through
    the clean maps: the knocked-out accuracy, the mean change of I(V,L;Y) over layers and
    tasks, and on how many (layer, task) rows its paired interval lies below / above zero."""
    rows = deltas[(deltas["measure"] == measure) & (deltas["atom"] == "total")
                  & (deltas["transforms"] == TRANSFORMS["clean"])]  # fmt: skip
    return rows.groupby(["flow", "model"], sort=False).agg(**{
        "accuracy under knockout": ("accuracy_ko", "mean"),
        "mean ΔI(V,L;Y) (bits)": ("delta", "mean"),
        "rows with ΔI < 0": ("hi", lambda h: int((h < 0).sum())),
        "rows with ΔI > 0": ("lo", lambda lo: int((lo > 0).sum())),
        "rows (layers × tasks)": ("delta", "size"),
    })  # fmt: skip


def knockout_localisation(curves: pd.DataFrame) -> pd.DataFrame:
    """Where each flow matters: per (model, flow, window) of a windowed sweep's ``curves``
    (:func:`pidlib.interventions.sweep.summarize` by model, flow, window and centre), the window
    with the lowest knocked-out accuracy (its layers, accuracy with its Wilson interval, the
    clean accuracy and the mean relative change of p(answer), %), and how many windows' accuracy
    intervals lie wholly below the clean accuracy (``windows_hurt`` of ``windows``)."""
    rows = []
    for (model, flow, k), g in curves.groupby(["model", "flow", "window"], sort=False):
        worst = g.loc[g["accuracy"].idxmin()]
        hurt = int((g["accuracy_hi"] < g["accuracy_clean"]).sum())
        rows.append({"model": model, "flow": flow, "window": int(k), "layers": worst["layers"],
                     "accuracy": worst["accuracy"], "accuracy_lo": worst["accuracy_lo"],
                     "accuracy_hi": worst["accuracy_hi"], "accuracy_clean": worst["accuracy_clean"],
                     "rel_change": worst["rel_change"], "windows_hurt": hurt,
                     "windows": len(g)})  # fmt: skip
    return pd.DataFrame(rows)


def paired_widths(deltas: pd.DataFrame, measure: str = "mmi") -> dict[str, float]:
    """How much narrower the paired intervals of a knockout-difference table are than the
    independent ones: the median ratio of widths over rows with a non-zero independent width,
    and the fraction of rows whose paired and independent intervals exclude zero."""
    d = deltas[(deltas["measure"] == measure) & (deltas["hi_indep"] > deltas["lo_indep"])]
    ratio = (d["hi"] - d["lo"]) / (d["hi_indep"] - d["lo_indep"])

    def excludes_zero(lo: str, hi: str) -> float:
        return float(((d[lo] > 0) | (d[hi] < 0)).mean())

    return {"ratio": float(ratio.median()), "rows": len(d),
            "paired_excludes_zero": excludes_zero("lo", "hi"),
            "independent_excludes_zero": excludes_zero("lo_indep", "hi_indep")}  # fmt: skip


def floor_sentence(last: pd.DataFrame, floor: float) -> str:
    """Markdown: how many (model, task) pairs carry measurable information at the last layer
    (:func:`last_layer_shares` rows), and the bits of those that do not."""
    below = last[~last["measurable"]]
    n_above = int(last["measurable"].sum())
    text = (f"At the last layer, **{n_above} of {len(last)}** (model, task) pairs have $I(V,L;Y)$ "
            f"above the {floor:g}-bit floor (lower end of the 95% interval).")  # fmt: skip
    if len(below):
        text += (
            " No measurable information in the pooled sources for: "
            + "; ".join(
                f"{r.model} {r.task} ({r.total:.3f} bits, "
                + ("no interval)" if pd.isna(r.total_lo) else f"lower end {r.total_lo:.3f})")
                for r in below.itertuples()
            )
            + ". Their shares are not reported."
        )
    return text


def interval_note(table: pd.DataFrame, *, floored: bool = False) -> str:
    """Markdown (empty when every estimate has one): how many estimates of a layer-wise or
    knockout table (one per model, task, layer and, if present, flow and transforms) came
    without an interval because their folds held too few questions for half-subsamples;
    ``floored``: the table's estimates are held to the information floor (:func:`above_floor`),
    which such an estimate never passes."""
    keys = [k for k in ("model", "task", "layer", "flow", "transforms") if k in table]
    missing = table.groupby(keys)["lo"].apply(lambda s: bool(s.isna().all()))
    if not missing.any():
        return ""
    text = (f" **{int(missing.sum())} of {len(missing)} estimates have no interval**: their "
            "folds held too few questions for half-subsamples at this sample size, so they are "
            "point estimates.")  # fmt: skip
    if floored:
        text += " None of them passes the information floor, so no share or claim rests on them."
    return text


def prior_contrast(pid: pd.DataFrame, floor: float, atom: str = "redundancy",
                   measure: str = "mmi") -> pd.DataFrame:  # fmt: skip
    """Per (task, layer) of a table with a ``prior`` column (one model per prior): ``atom`` in
    bits at the smallest and the largest prior, their difference with its 95% interval (the
    two models and question sets are independent: :func:`~pidlib.stats.difference_interval`),
    ``se`` and ``mde``, the smallest difference a two-sided 5% test detects with 80% power
    (2.80 se). ``measurable``: I(V,L;Y) passes the information ``floor`` at the smallest or at
    the largest prior (where neither model's sources carry information, there is no redundancy
    to compare)."""
    sub = _measure(pid, measure)
    lo_p, hi_p = sub["prior"].min(), sub["prior"].max()
    rows = []
    for (task, layer), g in sub.groupby(["task", "layer"]):
        a = g[(g["prior"] == lo_p) & (g["atom"] == atom)].iloc[0]
        b = g[(g["prior"] == hi_p) & (g["atom"] == atom)].iloc[0]
        total = g[g["prior"].isin([lo_p, hi_p]) & (g["atom"] == "total")]
        d, d_lo, d_hi = difference_interval(a["value"], a["lo"], a["hi"], b["value"], b["lo"],
                                            b["hi"])  # fmt: skip
        se = (d_hi - d_lo) / (2 * 1.959964)
        rows.append({"task": task, "layer": layer, f"p={lo_p:g}": a["value"],
                     f"p={hi_p:g}": b["value"], "difference": float(d), "lo": float(d_lo),
                     "hi": float(d_hi), "se": float(se), "mde": 2.80 * float(se),
                     "measurable": bool(above_floor(total, floor).any())})  # fmt: skip
    return pd.DataFrame(rows)
