"""Knockout sweeps (Zhang et al.'s layer windows) that reuse the clean pass's unaffected prefix."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from pidlib.interventions.knockout import knockout
from pidlib.interventions.replay import capture_clean, last_logits, replay
from pidlib.interventions.spec import FLOWS, KnockoutSpec, Window, as_spec
from pidlib.models.answers import option_token_ids, score_options
from pidlib.models.locate import decoder_stack
from pidlib.models.prompt import encode
from pidlib.stats import t_interval, wilson_interval

if TYPE_CHECKING:
    from pidlib.data.tasks import Sample
    from pidlib.models.loaded import LoadedModel

__all__ = ["METHODS", "SweepResult", "sweep", "summarize"]

#: ``"reuse"``: restart each knocked-out pass from the clean one at the first blocked layer and
#: the first target row; ``"reuse-layers"``: at the first blocked layer only (all rows);
#: ``"naive"``: a full forward per condition. All three give the same numbers.
METHODS: tuple[str, ...] = ("reuse", "reuse-layers", "naive")


def _check_batch(batch_size: int, samples: list) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not samples:
        raise ValueError("no samples given")


# --------------------------------------------------------------------------- the sweep


@dataclass(frozen=True, eq=False)
class SweepResult:
    """A knockout sweep's tables.

    ``per_sample``: one row per (sample, flow, centre): ``qid, task, flow, center`` (nullable;
    NA for all layers), ``layers`` ("a-b" or "all"), ``first_layer, last_layer``, ``p_clean``,
    ``p_ko`` (probability of the gold answer's first token, full-vocabulary softmax),
    ``rel_change`` = (p_ko - p_clean) / p_clean x 100 (%), ``correct_clean, correct_ko``.
    ``clean``: one row per sample (``qid, task, answer, predicted, p_clean, correct``).
    ``summary``: :func:`summarize` of ``per_sample`` by (flow, centre). ``meta``: settings, timing.
    """

    per_sample: pd.DataFrame
    clean: pd.DataFrame
    summary: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)


def _conditions(flows: Sequence[Any], centers: Sequence[Any] | None, window: int, n_layers: int):
    """``[(spec, center | None), ...]`` in flow-major order, all validated up front."""
    if isinstance(flows, str | KnockoutSpec):
        flows = [flows]
    if not flows:
        raise ValueError("sweep: at least one flow is needed")
    centers = list(range(n_layers)) if centers is None else list(centers)
    if not centers:
        raise ValueError("sweep: at least one centre is needed")
    out = []
    for flow in flows:
        base = as_spec(flow)
        for c in centers:
            spec = base.with_layers("all" if c == "all" else Window(c, window))
            spec.blocked_layers(n_layers)  # raises on a centre out of range
            out.append((spec, None if c == "all" else c))
    return out


def _score(logits: torch.Tensor, ids: list, gold: np.ndarray) -> tuple[np.ndarray, ...]:
    """log p(gold first token) (natural log), correct (argmax over options == gold), argmax."""
    logp = score_options(logits, ids)[1]
    pred = logp.argmax(1).numpy()
    return logp[torch.arange(len(gold)), torch.from_numpy(gold)].numpy(), pred == gold, pred


def sweep(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    flows: Sequence[str | KnockoutSpec] | str = tuple(FLOWS),
    centers: Sequence[int | str] | None = None,
    *,
    window: int = 9,
    batch_size: int = 8,
    method: str = "reuse",
    case_variants: bool = True,
    progress: bool = False,
) -> SweepResult:
    """Zhang et al.'s measurement: block each flow in ``window`` layers around each centre.

    ``flows``: names from :data:`~pidlib.interventions.spec.FLOWS` or specs (layers replaced);
    ``centers``: 0-based layer indices, ``"all"`` for every layer (the paper's condition);
    default every layer. The answer's first token is the gold option's (its Capitalised
    variant added when ``case_variants``); accuracy is the argmax over the task's options.
    ``progress``: a progress bar over samples.
    ``method``: one of :data:`METHODS`; ``"reuse"`` (default) restarts each knocked-out pass
    from the clean pass (:func:`replay`), ``"naive"`` reruns the model; same numbers.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    samples = list(samples)
    _check_batch(batch_size, samples)
    decoder = decoder_stack(loaded.model)
    n_layers = len(decoder[0])
    conditions = _conditions(flows, centers, window, n_layers)
    rows, clean_rows, memo = [], [], {}
    t0 = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=len(samples), desc=f"knockout sweep {method}", disable=not progress)
    for i in range(0, len(samples), batch_size):
        chunk = samples[i : i + batch_size]
        bar.update(len(chunk))
        enc = encode(loaded, chunk)
        ids = option_token_ids(loaded, chunk, case_variants=case_variants, memo=memo)
        gold = np.asarray([s.options.index(s.answer) for s in chunk])
        if method != "naive":
            clean = capture_clean(loaded.model, enc.inputs, enc.positions)
            clean_logits = clean.logits
        else:
            clean_logits = last_logits(loaded.model, enc.inputs, enc.positions)
        lp0, ok0, pred0 = _score(clean_logits, ids, gold)
        clean_rows += [
            {"qid": s.qid, "task": s.task, "answer": s.answer, "predicted": s.options[p],
             "p_clean": math.exp(lp), "correct": bool(c)}
            for s, lp, c, p in zip(chunk, lp0, ok0, pred0, strict=True)
        ]  # fmt: skip
        for spec, center in conditions:
            if method != "naive":
                trim = method == "reuse"
                logits = replay(
                    loaded.model, clean, spec, enc.positions, rows=trim, decoder=decoder
                )
            else:
                with knockout(loaded.model, spec, enc.positions):
                    logits = last_logits(loaded.model, enc.inputs, enc.positions)
            lp1, ok1, _ = _score(logits, ids, gold)
            blocked = spec.blocked_layers(n_layers)
            label = "all" if center is None else f"{blocked[0]}-{blocked[-1]}"
            rows += [
                {"qid": s.qid, "task": s.task, "flow": spec.flow, "center": center, "layers": label,
                 "first_layer": blocked[0], "last_layer": blocked[-1], "p_clean": math.exp(a),
                 "p_ko": math.exp(b), "rel_change": math.expm1(b - a) * 100.0,
                 "correct_clean": bool(c0), "correct_ko": bool(c1)}
                for s, a, b, c0, c1 in zip(chunk, lp0, lp1, ok0, ok1, strict=True)
            ]  # fmt: skip
    bar.close()
    per_sample = pd.DataFrame(rows)
    per_sample["center"] = per_sample["center"].astype("Int64")
    meta = {
        "model": getattr(loaded, "name", None), "n_layers": n_layers, "window": window,
        "method": method, "case_variants": case_variants, "n_samples": len(samples),
        "batch_size": batch_size, "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    return SweepResult(per_sample, pd.DataFrame(clean_rows), summarize(per_sample), meta)


def summarize(
    per_sample: pd.DataFrame, by: Sequence[str] = ("flow", "center"), *, level: float = 0.95
) -> pd.DataFrame:
    """Mean and ``level`` intervals per group of a sweep's ``per_sample`` table.

    Columns: the ``by`` keys, ``layers, first_layer, last_layer`` (when grouping by centre),
    ``n``, ``rel_change`` (mean %, Student-t interval ``rel_change_lo/hi``), ``p_clean``,
    ``p_ko`` (means), ``accuracy`` (knocked-out, Wilson interval ``accuracy_lo/hi``) and
    ``accuracy_clean``. Use ``by=("task", "flow", "center")`` for per-task curves.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    by = list(by)
    missing = [c for c in by if c not in per_sample.columns]
    if missing:
        raise ValueError(f"summarize: unknown grouping columns {missing}")
    if "center" in by:
        by += [c for c in ("layers", "first_layer", "last_layer") if c not in by]
    out = []
    for keys, g in per_sample.groupby(by, sort=False, dropna=False):
        rel = g["rel_change"].to_numpy(dtype=float)
        k, n = int(g["correct_ko"].sum()), len(g)
        _, lo, hi = t_interval(rel, level)
        alo, ahi = wilson_interval(k, n, level)
        out.append({
            **dict(zip(by, keys, strict=True)), "n": n, "rel_change": float(rel.mean()),
            "rel_change_lo": lo, "rel_change_hi": hi, "p_clean": float(g["p_clean"].mean()),
            "p_ko": float(g["p_ko"].mean()), "accuracy": k / n, "accuracy_lo": alo,
            "accuracy_hi": ahi, "accuracy_clean": float(g["correct_clean"].mean()),
        })  # fmt: skip
    table = pd.DataFrame(out)
    if "center" in table:
        table["center"] = table["center"].astype("Int64")
    return table
