"""Named mask builders: which (query, key) edges a knockout cuts, and how a mask is edited."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from pidlib.interventions.spec import SPANS, Span, _check_int

if TYPE_CHECKING:
    from pidlib.models.prompt import Positions

__all__ = [
    "ATTN_IMPLEMENTATIONS",
    "span_indices",
    "block_matrix",
    "causal_mask",
    "apply_block",
    "check_impl",
]

#: Attention implementations whose masks the hooks can edit.
ATTN_IMPLEMENTATIONS: tuple[str, ...] = ("eager", "sdpa")


def span_indices(positions: Positions, span: Span) -> tuple[int, ...]:
    """Indices of ``span`` ("image", "question", "last" or explicit) in one sample's padded row."""
    if isinstance(span, tuple):
        return span
    if span == "last":
        return (positions.last,)
    if span in ("image", "question"):
        return tuple(getattr(positions, span))
    raise ValueError(f"unknown span {span!r}; expected one of {SPANS} or indices")


def block_matrix(
    positions: Sequence[Positions], source: Span, target: Span, seq_len: int, device: Any = None
) -> torch.Tensor:
    """Boolean ``(batch, query, key)`` matrix of shape (B, T, T): True where a target query
    may not attend to a source key. Only causal edges (key <= query) are ever set.
    """
    _check_int(seq_len, "seq_len", 1)
    out = torch.zeros(len(positions), seq_len, seq_len, dtype=torch.bool)
    for b, pos in enumerate(positions):
        src, tgt = span_indices(pos, source), span_indices(pos, target)
        for name, idx in (("source", src), ("target", tgt)):
            if idx and max(idx) >= seq_len:
                raise ValueError(f"sample {b}: {name} index {max(idx)} >= row length {seq_len}")
        if src and tgt:
            out[b, torch.tensor(tgt)[:, None], torch.tensor(src)[None, :]] = True
    return torch.tril(out).to(device) if device is not None else torch.tril(out)


def causal_mask(
    n_queries: int, n_keys: int, *, kind: str, dtype: torch.dtype = torch.float32, device=None
) -> torch.Tensor:
    """A causal (1, 1, Tq, Tk) mask, ``(query, key)`` order, queries = the last Tq of Tk keys.

    ``kind="bool"``: True = may attend (sdpa); ``"additive"``: 0 / ``finfo(dtype).min`` (eager).
    """
    q = torch.arange(n_keys - n_queries, n_keys, device=device)[:, None]
    allowed = (torch.arange(n_keys, device=device)[None, :] <= q)[None, None]
    if kind == "bool":
        return allowed
    if kind == "additive":
        zero = torch.zeros((), dtype=dtype, device=device)
        return torch.where(allowed, zero, torch.finfo(dtype).min)
    raise ValueError(f"mask kind must be 'bool' or 'additive', got {kind!r}")


def apply_block(mask: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
    """Cut the ``blocked`` (B, Tq, Tk) edges out of an attention mask of shape (B|1, 1, Tq, Tk).

    A boolean mask (True = attend) gets False there, an additive float mask gets its dtype's
    minimum, so the softmax gives those keys exactly zero weight in every head.
    """
    if mask.dim() != 4 or mask.shape[-2:] != blocked.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not fit blocked {tuple(blocked.shape)}")
    mask = mask.expand(blocked.shape[0], *mask.shape[1:])
    if mask.dtype == torch.bool:
        return mask & ~blocked[:, None]
    return mask.masked_fill(blocked[:, None], torch.finfo(mask.dtype).min)


def _allowed(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2


def check_impl(attn: torch.nn.Module) -> str:
    impl = getattr(getattr(attn, "config", None), "_attn_implementation", None)
    if impl not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"knockout supports attention {ATTN_IMPLEMENTATIONS}, not {impl!r}")
    return impl
