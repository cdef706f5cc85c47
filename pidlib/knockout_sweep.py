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

from pidlib.knockout import (
    FLOWS,
    KnockoutSpec,
    Window,
    _check_impl,
    _hooks,
    _unwrap,
    as_spec,
    causal_mask,
    decoder_layers,
    decoder_module,
    knockout,
    knockout_intervention,
    span_indices,
)

if TYPE_CHECKING:
    from pidlib.models import LoadedModel
    from pidlib.prompt import Positions
    from pidlib.tasks import Sample

__all__ = [
    "METHODS",
    "CleanPass",
    "capture_clean",
    "replay",
    "last_logits",
    "knockout_features",
    "SweepResult",
    "sweep",
    "summarize",
]

#: ``"reuse"``: restart each knocked-out pass from the clean one at the first blocked layer and
#: the first target row; ``"reuse-layers"``: at the first blocked layer only (all rows);
#: ``"naive"``: a full forward per condition. All three give the same numbers.
METHODS: tuple[str, ...] = ("reuse", "reuse-layers", "naive")


def _decoder(model: Any) -> tuple[torch.nn.ModuleList, torch.nn.Module, torch.nn.Module]:
    """``(layers, final norm, lm_head)`` of the live model."""
    module = _unwrap(model)
    head = module.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(module).__name__} has no LM head (get_output_embeddings)")
    return decoder_layers(module), decoder_module(module).norm, head


class _KV:
    """Minimal cache for one pass: records each layer's keys/values, prepends a clean prefix."""

    def __init__(self, prefix: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None):
        self.prefix = prefix or {}
        self.seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        self.seen[layer_idx] = (key, value)
        if layer_idx in self.prefix:
            pk, pv = self.prefix[layer_idx]
            key, value = torch.cat([pk, key], dim=-2), torch.cat([pv, value], dim=-2)
        return key, value


@dataclass(frozen=True, eq=False)
class CleanPass:
    """What a knocked-out pass needs from the clean forward of one batch (B rows, T tokens).

    ``hidden_in[i]``: the hidden state entering decoder layer ``i``, (B, T, H);
    ``keys[i]`` / ``values[i]``: that layer's post-RoPE keys / values, (B, heads_kv, T, d_head);
    ``layer_kwargs[i]``: the keyword arguments the decoder gave layer ``i`` (mask, rotary
    position embeddings, position ids); ``logits``: float32 (B, V) at each row's last position.
    """

    hidden_in: tuple[torch.Tensor, ...]
    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]
    layer_kwargs: tuple[dict[str, Any], ...]
    logits: torch.Tensor


def _rows(positions: Sequence[Positions], device: Any) -> torch.Tensor:
    return torch.tensor([p.last for p in positions], device=device)


@torch.no_grad()
def last_logits(
    model: Any, inputs: dict[str, torch.Tensor], positions: Sequence[Positions]
) -> torch.Tensor:
    """Float32 next-token logits (B, V) at each row's ``last`` position, from one full forward."""
    model = _unwrap(model)
    seq_len = inputs["input_ids"].shape[1]
    if len(positions) != inputs["input_ids"].shape[0]:
        raise ValueError(f"{len(positions)} Positions for {len(inputs['input_ids'])} batch rows")
    rows = _rows(positions, inputs["input_ids"].device)
    keep = 1 if bool((rows == seq_len - 1).all()) else 0
    logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits
    if keep:
        return logits[:, -1].float()
    return logits[torch.arange(len(rows), device=rows.device), rows].float()


@torch.no_grad()
def capture_clean(
    model: Any, inputs: dict[str, torch.Tensor], positions: Sequence[Positions]
) -> CleanPass:
    """Run the clean forward once and keep every layer's input, keys, values and arguments.

    Memory: about 3 x n_layers x B x T x H values on the model's device (LLaVA-7B, B = 8,
    T = 700, bfloat16: ~4 GB).
    """
    layers, module = decoder_layers(model), _unwrap(model)
    n = len(layers)
    hidden: list[Any] = [None] * n
    kwargs_in: list[Any] = [None] * n
    recorder = _KV()

    def make_hook(i: int):
        def hook(mod, args, kwargs):
            hidden[i] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            kwargs_in[i] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            return args, {**kwargs, "past_key_values": recorder}

        return hook

    handles = [
        layer.register_forward_pre_hook(make_hook(i), with_kwargs=True)
        for i, layer in enumerate(layers)
    ]
    try:
        logits = last_logits(module, inputs, positions)
    finally:
        for h in handles:
            h.remove()
    attn_ids = [getattr(layer.self_attn, "layer_idx", i) for i, layer in enumerate(layers)]
    if any(h is None for h in hidden) or sorted(recorder.seen) != sorted(attn_ids):
        raise RuntimeError("capture_clean: some decoder layer reported no input or keys/values")
    keys = tuple(recorder.seen[j][0] for j in attn_ids)
    values = tuple(recorder.seen[j][1] for j in attn_ids)
    return CleanPass(tuple(hidden), keys, values, tuple(kwargs_in), logits)


def _slice_kwargs(
    kw: dict[str, Any], q0: int, seq_len: int, impl: str, dtype: torch.dtype
) -> dict[str, Any]:
    """Layer arguments for queries ``q0 ... T-1`` only (keys stay ``0 ... T-1``)."""
    out = dict(kw)
    mask = kw.get("attention_mask")
    if mask is None:
        if q0:
            kind = "additive" if impl == "eager" else "bool"
            device = kw["position_ids"].device if "position_ids" in kw else None
            mask = causal_mask(seq_len - q0, seq_len, kind=kind, dtype=dtype, device=device)
    elif isinstance(mask, torch.Tensor) and mask.dim() == 4 and mask.shape[-2] == seq_len:
        mask = mask[:, :, q0:, :]
    else:
        raise ValueError(f"prefix reuse cannot slice an attention mask {type(mask).__name__}")
    out["attention_mask"] = mask

    def rows(t: Any) -> Any:
        if isinstance(t, tuple):
            return tuple(rows(x) for x in t)
        if isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-2] == seq_len:
            return t[..., q0:, :]
        raise ValueError(f"prefix reuse: position embedding shape {getattr(t, 'shape', t)}")

    if out.get("position_embeddings") is not None:
        out["position_embeddings"] = rows(out["position_embeddings"])
    for name in ("position_ids", "cache_position"):  # (B, T) / (T,): query positions
        if isinstance(out.get(name), torch.Tensor):
            out[name] = out[name][..., q0:]
    out["use_cache"] = False
    return out


def _query_start(spec: KnockoutSpec, positions: Sequence[Positions]) -> int | None:
    """First row any target query sits in (None: no target in the batch)."""
    starts = [min(idx) for p in positions if (idx := span_indices(p, spec.target))]
    return min(starts) if starts else None


@torch.no_grad()
def replay(
    model: Any,
    clean: CleanPass,
    spec: KnockoutSpec | str,
    positions: Sequence[Positions],
    *,
    rows: bool = True,
    decoder: tuple | None = None,
) -> torch.Tensor:
    """Knocked-out float32 logits (B, V) at each row's last position, reusing ``clean``.

    Layers before the first blocked layer ``s``, and all rows before the first target query
    ``q0``, are unaffected by the knockout, so the pass starts from the clean hidden state
    entering layer ``s`` at rows ``q0 ...`` and takes rows ``< q0``'s keys/values from ``clean``
    (``rows=False``: all rows are recomputed from layer ``s`` on).
    """
    spec = as_spec(spec)
    all_layers, norm, lm_head = decoder or _decoder(model)
    layers = spec.blocked_layers(len(all_layers))
    q0 = _query_start(spec, positions)
    q0 = q0 if rows or q0 is None else 0
    source_empty = not any(span_indices(p, spec.source) for p in positions)
    if not layers or q0 is None or source_empty:
        return clean.logits.clone()
    start = layers[0]
    seq_len = clean.hidden_in[0].shape[1]
    h = clean.hidden_in[start][:, q0:]
    memo: tuple[Any, dict[str, Any]] = (None, {})  # layers share one mask: slice it once
    with _hooks(model, spec, positions, prefix_ok=True, layers=all_layers):
        for i in range(start, len(all_layers)):
            attn, raw = all_layers[i].self_attn, clean.layer_kwargs[i]
            key = (_check_impl(attn), tuple(id(v) for v in raw.values()))
            if key != memo[0]:
                memo = (key, _slice_kwargs(raw, q0, seq_len, key[0], h.dtype))
            kw, j = dict(memo[1]), getattr(attn, "layer_idx", i)
            kw["past_key_values"] = _KV(
                {j: (clean.keys[i][..., :q0, :], clean.values[i][..., :q0, :])}
            )
            out = all_layers[i](h, **kw)
            h = out[0] if isinstance(out, tuple) else out
    rows = _rows(positions, h.device) - q0
    last = h[torch.arange(h.shape[0], device=h.device), rows]
    return lm_head(norm(last)).float()


def knockout_features(
    loaded: LoadedModel, samples: Sequence[Sample], spec: KnockoutSpec | str, **kwargs: Any
):
    """:func:`pidlib.features.extract_features` under ``spec`` (the paper's PID under knockout).

    Every batch's prompt forward runs inside :func:`~pidlib.knockout.knockout`, so V, L and Y
    come from the knocked-out model at every layer; the cache key names the spec. ``kwargs``
    go to ``extract_features`` (``correct_only`` defaults to False here: under a knockout the
    questions are the clean run's, selected before).
    """
    from pidlib.features import extract_features

    spec = as_spec(spec)
    kwargs.setdefault("correct_only", False)
    return extract_features(
        loaded, samples, intervention=knockout_intervention(loaded, spec),
        intervention_key={"knockout": spec.to_dict()}, **kwargs,
    )  # fmt: skip


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


def _option_scores(loaded: LoadedModel, samples: Sequence[Sample], case_variants: bool):
    """Per sample: (first-token ids per option, index of the gold answer)."""
    from pidlib.prompt import answer_token_variants

    out = []
    for s in samples:
        ids = answer_token_variants(loaded, s.options)
        out.append(([v if case_variants else v[:1] for v in ids], s.options.index(s.answer)))
    return out


def _score(logits: torch.Tensor, options: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log p(gold first token) (natural log), correct (argmax over options == gold), argmax."""
    logp = torch.log_softmax(logits.float(), dim=-1).cpu()
    gold_logp, correct, pred = [], [], []
    for row, (ids, gold) in zip(logp, options, strict=True):
        opt = torch.stack([torch.logsumexp(row[list(v)], 0) for v in ids])
        gold_logp.append(float(opt[gold]))
        pred.append(int(opt.argmax()))
        correct.append(pred[-1] == gold)
    return np.array(gold_logp), np.array(correct, dtype=bool), np.array(pred)


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

    ``flows``: names from :data:`~pidlib.knockout.FLOWS` or specs (their layers are replaced);
    ``centers``: 0-based layer indices, ``"all"`` for every layer (the paper's condition);
    default every layer. The answer's first token is the gold option's (its Capitalised
    variant added when ``case_variants``); accuracy is the argmax over the task's options.
    ``progress``: a progress bar over samples.
    ``method``: one of :data:`METHODS`; ``"reuse"`` (default) restarts each knocked-out pass
    from the clean pass (:func:`replay`), ``"naive"`` reruns the model; same numbers.
    """
    from pidlib.prompt import encode

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    samples = list(samples)
    _check_batch(batch_size, samples)
    decoder = _decoder(loaded.model)
    n_layers = len(decoder[0])
    conditions = _conditions(flows, centers, window, n_layers)
    rows, clean_rows = [], []
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(samples), desc=f"knockout sweep {method}", disable=not progress)
    for i in range(0, len(samples), batch_size):
        chunk = samples[i : i + batch_size]
        bar.update(len(chunk))
        enc = encode(loaded, chunk)
        options = _option_scores(loaded, chunk, case_variants)
        if method != "naive":
            clean = capture_clean(loaded.model, enc.inputs, enc.positions)
            clean_logits = clean.logits
        else:
            clean_logits = last_logits(loaded.model, enc.inputs, enc.positions)
        lp0, ok0, pred0 = _score(clean_logits, options)
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
            lp1, ok1, _ = _score(logits, options)
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


def _t_interval(x: np.ndarray, level: float) -> tuple[float, float]:
    from scipy import stats

    if len(x) < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def _wilson(k: int, n: int, level: float) -> tuple[float, float]:
    from scipy import stats

    z = stats.norm.ppf(0.5 + level / 2)
    p, d = k / n, 1 + z * z / n
    mid, half = (p + z * z / (2 * n)) / d, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (0.0 if k == 0 else mid - half), (1.0 if k == n else mid + half)


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
        lo, hi = _t_interval(rel, level)
        alo, ahi = _wilson(k, n, level)
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
