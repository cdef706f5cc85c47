"""Attention knockouts: serialisable specs, named mask builders and a hook context manager."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from pidlib.prompt import Encoded, Positions

__all__ = [
    "FLOWS",
    "SPANS",
    "ATTN_IMPLEMENTATIONS",
    "Window",
    "window",
    "KnockoutSpec",
    "as_spec",
    "decoder_module",
    "decoder_layers",
    "span_indices",
    "block_matrix",
    "causal_mask",
    "apply_block",
    "knockout",
    "knockout_intervention",
]

#: Zhang et al.'s (CVPR 2025) named flows: ``"source->target"``, target queries lose source keys.
FLOWS: dict[str, tuple[str, str]] = {
    "image->question": ("image", "question"),
    "image->last": ("image", "last"),
    "question->last": ("question", "last"),
    "last->last": ("last", "last"),
}

#: Named position sets, read per sample from :class:`pidlib.prompt.Positions`.
SPANS: tuple[str, ...] = ("image", "question", "last")

#: Attention implementations whose masks the hooks can edit.
ATTN_IMPLEMENTATIONS: tuple[str, ...] = ("eager", "sdpa")

Span = str | tuple[int, ...]


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_n_layers(n_layers: int) -> int:
    return _check_int(n_layers, "n_layers", 1)


# --------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class Window:
    """``k`` consecutive layers around ``center`` (Zhang et al.: k = 9, centre ± 4).

    For even ``k`` the window reaches one layer further below the centre than above it. The
    window is truncated at the first and last layer, so the ends block fewer than ``k`` layers.
    """

    center: int
    k: int = 9

    def __post_init__(self) -> None:
        _check_int(self.center, "window center", 0)
        _check_int(self.k, "window size k", 1)

    def layers(self, n_layers: int) -> tuple[int, ...]:
        """The blocked layer indices (0-based decoder layers) for a model with ``n_layers``."""
        _check_n_layers(n_layers)
        if self.center >= n_layers:
            raise ValueError(f"window center {self.center} out of range for {n_layers} layers")
        lo = self.center - self.k // 2
        return tuple(range(max(lo, 0), min(lo + self.k, n_layers)))


def window(center: int, k: int = 9, *, n_layers: int) -> tuple[int, ...]:
    """Layer indices ``center - k//2 ... center + (k-1)//2`` truncated to ``[0, n_layers)``."""
    return Window(center, k).layers(n_layers)


def _norm_layers(layers: Any) -> str | tuple[int, ...] | Window:
    if isinstance(layers, Window):
        return layers
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all', indices or a Window, got {layers!r}")
        return layers
    if isinstance(layers, Mapping):
        if set(layers) - {"center", "k"} or "center" not in layers:
            raise ValueError(f"a window needs keys 'center' (and 'k'), got {dict(layers)}")
        return Window(**layers)
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = (layers,)
    if not isinstance(layers, Iterable):
        raise ValueError(f"layers must be 'all', indices or a Window, got {layers!r}")
    return tuple(sorted({_check_int(i, "layer index", 0) for i in layers}))


def _norm_span(span: Any, name: str) -> Span:
    if isinstance(span, str):
        if span not in SPANS:
            raise ValueError(f"unknown {name} span {span!r}; expected one of {SPANS} or indices")
        return span
    if not isinstance(span, Iterable):
        raise ValueError(f"{name} must be a span name {SPANS} or indices, got {span!r}")
    return tuple(sorted({_check_int(i, f"{name} index", 0) for i in span}))


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class KnockoutSpec:
    """Which attention edges to cut: target queries may not attend to source keys.

    ``source`` / ``target``: a span name (:data:`SPANS`, resolved per sample, so padding and
    LLaVA-NeXT's varying image blocks are handled) or explicit indices into the padded row.
    ``layers``: ``"all"``, explicit 0-based decoder-layer indices, or a :class:`Window`.
    An empty ``layers`` tuple or an empty index set is a no-op knockout.
    """

    source: Span
    target: Span
    layers: str | tuple[int, ...] | Window = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", _norm_span(self.source, "source"))
        object.__setattr__(self, "target", _norm_span(self.target, "target"))
        object.__setattr__(self, "layers", _norm_layers(self.layers))

    @classmethod
    def from_flow(cls, flow: str, layers: Any = "all") -> KnockoutSpec:
        """A spec for one of :data:`FLOWS`, e.g. ``KnockoutSpec.from_flow("image->question")``."""
        if flow not in FLOWS:
            raise ValueError(f"unknown flow {flow!r}; expected one of {tuple(FLOWS)}")
        return cls(*FLOWS[flow], layers=layers)

    @classmethod
    def windowed(cls, flow: str, center: int, k: int = 9) -> KnockoutSpec:
        """Zhang et al.'s condition: ``flow`` blocked in ``k`` layers around ``center``."""
        return cls.from_flow(flow, Window(center, k))

    @property
    def flow(self) -> str:
        """``"source->target"`` (explicit index sets are written as ``[i,j,...]``)."""

        def label(span: Span) -> str:
            return span if isinstance(span, str) else "[" + ",".join(map(str, span)) + "]"

        return f"{label(self.source)}->{label(self.target)}"

    def with_layers(self, layers: Any) -> KnockoutSpec:
        """The same flow on other layers."""
        return KnockoutSpec(self.source, self.target, layers)

    def blocked_layers(self, n_layers: int) -> tuple[int, ...]:
        """Sorted 0-based decoder-layer indices this spec blocks in a model with ``n_layers``."""
        _check_n_layers(n_layers)
        if self.layers == "all":
            return tuple(range(n_layers))
        if isinstance(self.layers, Window):
            return self.layers.layers(n_layers)
        bad = [i for i in self.layers if i >= n_layers]
        if bad:
            raise ValueError(f"layer index {bad[0]} out of range for {n_layers} decoder layers")
        return self.layers

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` inverts it."""

        def span(s: Span) -> Any:
            return s if isinstance(s, str) else list(s)

        if isinstance(self.layers, Window):
            layers: Any = {"center": self.layers.center, "k": self.layers.k}
        else:
            layers = self.layers if isinstance(self.layers, str) else list(self.layers)
        return {"source": span(self.source), "target": span(self.target), "layers": layers}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KnockoutSpec:
        """Inverse of :meth:`to_dict`; a ``"flow"`` key may replace ``source`` and ``target``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a knockout spec must be a mapping, got {type(data).__name__}")
        data = dict(data)
        unknown = set(data) - {"source", "target", "layers", "flow"}
        if unknown:
            raise ValueError(f"unknown knockout spec keys {sorted(unknown)}")
        if "flow" in data:
            if "source" in data or "target" in data:
                raise ValueError("give either 'flow' or 'source' and 'target', not both")
            return cls.from_flow(data["flow"], data.get("layers", "all"))
        if "source" not in data or "target" not in data:
            raise ValueError("a knockout spec needs 'source' and 'target' (or 'flow')")
        return cls(data["source"], data["target"], data.get("layers", "all"))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> KnockoutSpec:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def as_spec(flow: str | KnockoutSpec | Mapping[str, Any], layers: Any = "all") -> KnockoutSpec:
    """A :class:`KnockoutSpec` from a flow name, a dict, or a spec (returned unchanged)."""
    if isinstance(flow, KnockoutSpec):
        return flow
    if isinstance(flow, str):
        return KnockoutSpec.from_flow(flow, layers)
    return KnockoutSpec.from_dict(flow)


# --------------------------------------------------------------------------- the live model


def _unwrap(model: Any) -> torch.nn.Module:
    """The ``torch`` module of a module or a ``LoadedModel``."""
    module = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"expected a torch module or a LoadedModel, got {type(model).__name__}")
    return module


def decoder_module(model: Any) -> torch.nn.Module:
    """The language decoder (e.g. ``LlamaModel``) of a module or ``LoadedModel``, found live.

    It is the module whose ``embed_tokens`` is the model's input embedding and that holds a
    ``layers`` list and a final ``norm`` (the vision tower has layers of its own).
    """
    module = _unwrap(model)
    emb = module.get_input_embeddings()
    found = [
        m
        for m in module.modules()
        if getattr(m, "embed_tokens", None) is emb
        and isinstance(getattr(m, "layers", None), torch.nn.ModuleList)
        and hasattr(m, "norm")
    ]
    if len(found) != 1:
        raise ValueError(f"{type(module).__name__}: found {len(found)} language decoders, not 1")
    return found[0]


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The language decoder's layers (each with ``self_attn``), found on the live model."""
    layers = decoder_module(model).layers
    if not len(layers) or not all(hasattr(layer, "self_attn") for layer in layers):
        raise ValueError("the decoder's layers are not attention blocks with self_attn")
    return layers


# --------------------------------------------------------------------------- mask builders


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


def _check_impl(attn: torch.nn.Module) -> str:
    impl = getattr(getattr(attn, "config", None), "_attn_implementation", None)
    if impl not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"knockout supports attention {ATTN_IMPLEMENTATIONS}, not {impl!r}")
    return impl


# --------------------------------------------------------------------------- hooks


class _Masker:
    """Forward pre-hook on ``self_attn`` that edits the ``attention_mask`` keyword argument.

    One instance serves every blocked layer of a context: block matrices are built once per
    key length, and the edited mask once per incoming mask (the decoder shares one mask).
    """

    def __init__(self, spec: KnockoutSpec, positions: tuple[Positions, ...], prefix_ok: bool):
        self.spec, self.positions, self.prefix_ok = spec, positions, prefix_ok
        self._blocked: dict[tuple[int, Any], torch.Tensor] = {}
        self._last: tuple[Any, Any] = (None, None)  # (incoming mask, edited kwargs mask)

    def blocked(self, seq_len: int, device: Any) -> torch.Tensor:
        """(B, T, T) block matrix for rows of ``seq_len`` keys, cached."""
        key = (seq_len, device)
        if key not in self._blocked:
            spec = self.spec
            self._blocked[key] = block_matrix(
                self.positions, spec.source, spec.target, seq_len, device
            )
        return self._blocked[key]

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple | None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        mask, impl = kwargs.get("attention_mask"), _check_impl(module)
        if mask is not None and mask is self._last[0]:
            return args, {**kwargs, "attention_mask": self._last[1]}
        batch, n_q = hidden.shape[:2]
        if batch != len(self.positions):
            raise ValueError(f"knockout got {len(self.positions)} Positions for a batch of {batch}")
        if mask is None:
            cache = kwargs.get("past_key_values")
            past = cache.get_seq_length(module.layer_idx) if cache is not None else 0
            n_k = n_q + int(past)
        elif isinstance(mask, torch.Tensor):
            n_k = mask.shape[-1]
        else:
            raise ValueError(f"knockout cannot edit an attention mask {type(mask).__name__}")
        if n_k != n_q and not self.prefix_ok:
            raise ValueError(
                f"knockout covers full (prefill) forwards only; a layer got {n_q} queries "
                f"against {n_k} keys (a KV-cached generation step). Run one full forward."
            )
        blocked = self.blocked(n_k, hidden.device)[:, n_k - n_q :]
        if not bool(blocked.any()):
            return None
        original = mask
        if mask is None:
            kind = "additive" if impl == "eager" else "bool"
            mask = causal_mask(n_q, n_k, kind=kind, dtype=hidden.dtype, device=hidden.device)
        new = apply_block(mask, blocked)
        lost = _allowed(mask).expand_as(new).any(-1) & ~_allowed(new).any(-1)
        if bool(lost.any()):
            b, q = (int(i) for i in torch.nonzero(lost)[0, [0, 2]])
            raise ValueError(
                f"knockout {self.spec.flow} leaves query {n_k - n_q + q} of row {b} no key"
            )
        if original is not None:
            self._last = (original, new)
        return args, {**kwargs, "attention_mask": new}


@contextmanager
def _hooks(
    model: Any, spec: KnockoutSpec, positions: Sequence[Positions], *, prefix_ok: bool, layers=None
) -> Iterator[tuple[int, ...]]:
    all_layers = decoder_layers(model) if layers is None else layers
    blocked = spec.blocked_layers(len(all_layers))
    positions = tuple(positions)
    if not positions:
        raise ValueError("knockout needs one Positions per batch row, got none")
    for i in blocked:
        _check_impl(all_layers[i].self_attn)
    masker, handles = _Masker(spec, positions, prefix_ok), []
    try:
        for i in blocked:
            attn = all_layers[i].self_attn
            handles.append(attn.register_forward_pre_hook(masker, with_kwargs=True))
        yield blocked
    finally:
        for h in handles:
            h.remove()


@contextmanager
def knockout(
    model: Any, spec: KnockoutSpec | str, positions: Sequence[Positions]
) -> Iterator[tuple[int, ...]]:
    """Within the block, ``spec``'s target queries cannot attend to its source keys.

    ``model``: a LLaVA / LLaVA-NeXT module or a ``LoadedModel`` (eager or sdpa attention).
    ``positions``: one :class:`~pidlib.prompt.Positions` per batch row, as from ``encode``. The
    mask is edited before the softmax in every head of the blocked layers, by forward pre-hooks
    on their ``self_attn`` that are always removed on exit, also after an exception. Only full
    forwards over the prompt are allowed (a KV-cached generation step raises ``ValueError``).
    Yields the blocked layer indices.
    """
    with _hooks(model, as_spec(spec), positions, prefix_ok=False) as layers:
        yield layers


def knockout_intervention(model: Any, spec: KnockoutSpec | str) -> Callable[[Encoded], Any]:
    """``encoded -> knockout(model, spec, encoded.positions)``, the ``intervention`` argument of
    :func:`pidlib.features.extract_features`."""
    spec = as_spec(spec)
    return lambda encoded: knockout(model, spec, encoded.positions)
