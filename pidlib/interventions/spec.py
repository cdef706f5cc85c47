"""Knockout specifications: named flows, layer windows and serialisable specs (no torch)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FLOWS", "SPANS", "Span", "Window", "window", "KnockoutSpec", "as_spec"]

#: Zhang et al.'s (CVPR 2025) named flows: ``"source->target"``, target queries lose source keys.
FLOWS: dict[str, tuple[str, str]] = {
    "image->question": ("image", "question"),
    "image->last": ("image", "last"),
    "question->last": ("question", "last"),
    "last->last": ("last", "last"),
}

#: Named position sets, read per sample from :class:`pidlib.models.prompt.Positions`.
SPANS: tuple[str, ...] = ("image", "question", "last")

#: Attention implementations whose masks the hooks can edit.

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
