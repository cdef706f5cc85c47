"""Knocked-out passes that restart from the clean pass at the first blocked layer and target row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from pidlib.interventions.knockout import knockout_hooks
from pidlib.interventions.masks import causal_mask, check_impl, span_indices
from pidlib.interventions.spec import KnockoutSpec, as_spec
from pidlib.models.hooks import Hook, attached
from pidlib.models.locate import decoder_layers, decoder_stack, unwrap

if TYPE_CHECKING:
    from pidlib.models.prompt import Positions

__all__ = ["CleanPass", "capture_clean", "replay", "last_logits"]


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
    model = unwrap(model)
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
    layers, module = decoder_layers(model), unwrap(model)
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

    hooks = [
        Hook(layer, make_hook(i), pre=True, with_kwargs=True) for i, layer in enumerate(layers)
    ]
    with attached(hooks):
        logits = last_logits(module, inputs, positions)
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
    all_layers, norm, lm_head = decoder or decoder_stack(model)
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
    with knockout_hooks(model, spec, positions, prefix_ok=True, layers=all_layers):
        for i in range(start, len(all_layers)):
            attn, raw = all_layers[i].self_attn, clean.layer_kwargs[i]
            key = (check_impl(attn), tuple(id(v) for v in raw.values()))
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
