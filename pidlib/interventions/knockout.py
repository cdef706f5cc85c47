"""The knockout context manager: attention-mask edits by hooks that are always removed."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from pidlib.extract.features import (
    Features,
    cached_features,
    extract_features,
    extract_features_last,
)
from pidlib.interventions.masks import _allowed, apply_block, block_matrix, causal_mask, check_impl
from pidlib.interventions.spec import KnockoutSpec, as_spec
from pidlib.models.hooks import Hook, attached
from pidlib.models.locate import decoder_layers

if TYPE_CHECKING:
    from pidlib.data.tasks import Sample
    from pidlib.models.loaded import LoadedModel
    from pidlib.models.prompt import Encoded, Positions

__all__ = [
    "knockout", "knockout_hooks", "knockout_intervention", "knockout_features",
    "knockout_features_group", "cached_knockout_features",
]  # fmt: skip

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
        mask, impl = kwargs.get("attention_mask"), check_impl(module)
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
def knockout_hooks(
    model: Any, spec: KnockoutSpec, positions: Sequence[Positions], *, prefix_ok: bool, layers=None
) -> Iterator[tuple[int, ...]]:
    all_layers = decoder_layers(model) if layers is None else layers
    blocked = spec.blocked_layers(len(all_layers))
    positions = tuple(positions)
    if not positions:
        raise ValueError("knockout needs one Positions per batch row, got none")
    for i in blocked:
        check_impl(all_layers[i].self_attn)
    masker = _Masker(spec, positions, prefix_ok)
    hooks = [Hook(all_layers[i].self_attn, masker, pre=True, with_kwargs=True) for i in blocked]
    with attached(hooks):
        yield blocked


@contextmanager
def knockout(
    model: Any, spec: KnockoutSpec | str, positions: Sequence[Positions]
) -> Iterator[tuple[int, ...]]:
    """Within the block, ``spec``'s target queries cannot attend to its source keys.

    ``model``: a LLaVA / LLaVA-NeXT module or a ``LoadedModel`` (eager or sdpa attention).
    ``positions``: one :class:`~pidlib.models.prompt.Positions` per batch row, as from
    ``encode``. The mask is edited before the softmax in every head of the blocked layers, by
    forward pre-hooks
    on their ``self_attn`` that are always removed on exit, also after an exception. Only full
    forwards over the prompt are allowed (a KV-cached generation step raises ``ValueError``).
    Yields the blocked layer indices.
    """
    with knockout_hooks(model, as_spec(spec), positions, prefix_ok=False) as layers:
        yield layers


def knockout_intervention(model: Any, spec: KnockoutSpec | str) -> Callable[[Encoded], Any]:
    """``encoded -> knockout(model, spec, encoded.positions)``, the ``intervention`` argument of
    :func:`pidlib.extract.features.extract_features`."""
    spec = as_spec(spec)
    return lambda encoded: knockout(model, spec, encoded.positions)


def knockout_features(
    loaded: LoadedModel, samples: Sequence[Sample], spec: KnockoutSpec | str, **kwargs: Any
):
    """:func:`~pidlib.extract.features.extract_features` under ``spec`` (PID under knockout).

    Every batch's prompt forward runs inside :func:`knockout`, so V, L and Y
    come from the knocked-out model at every layer; the cache key names the spec. ``kwargs``
    go to ``extract_features`` (``correct_only`` defaults to False here: under a knockout the
    questions are the clean run's, selected before).
    """
    spec = as_spec(spec)
    kwargs.setdefault("correct_only", False)
    return extract_features(
        loaded, samples, intervention=knockout_intervention(loaded, spec),
        intervention_key=_key(spec), **kwargs,
    )  # fmt: skip


def knockout_features_group(
    loaded: LoadedModel, samples: Sequence[Sample], specs: Sequence[KnockoutSpec | str],
    **kwargs: Any,
) -> list[Features]:  # fmt: skip
    """:func:`knockout_features` of each of ``specs``, in order, with the same cache entries.

    A knockout whose target is the last prompt position changes that position's state only
    (no earlier position attends to it): two or more such specs share one clean forward of the
    rest of each prompt (:func:`~pidlib.extract.features.extract_features_last`), and each
    runs the last position alone under its mask. The others run one full forward each.
    """
    specs = [as_spec(s) for s in specs]
    kwargs.setdefault("correct_only", False)
    out: list[Features | None] = [None] * len(specs)
    last = [i for i, s in enumerate(specs) if s.target == "last"]
    if len(last) > 1:

        def masked(spec: KnockoutSpec) -> Callable[[Encoded], Any]:
            return lambda enc: knockout_hooks(loaded, spec, enc.positions, prefix_ok=True)

        runs = [(masked(specs[i]), _key(specs[i])) for i in last]
        for i, got in zip(last, extract_features_last(loaded, samples, runs, **kwargs),
                          strict=True):  # fmt: skip
            out[i] = got
    return [f if f is not None else knockout_features(loaded, samples, s, **kwargs)
            for f, s in zip(out, specs, strict=True)]  # fmt: skip


def cached_knockout_features(
    ident: Any, name: str, samples: Sequence[Sample], spec: KnockoutSpec | str, **kwargs: Any
) -> Features | None:
    """What :func:`knockout_features` would return, read from the cache alone (no model), or
    ``None`` when a chunk is missing. ``ident``: the model's
    :func:`~pidlib.models.fingerprint.source_fingerprint`; ``kwargs`` as for
    :func:`knockout_features` (``cache``, ``batch_size``, ``target`` ...)."""
    kwargs.setdefault("correct_only", False)
    return cached_features(ident, name, samples, intervention_key=_key(as_spec(spec)), **kwargs)


def _key(spec: KnockoutSpec) -> dict[str, Any]:
    """The ``intervention_key`` that caches a knockout's features apart from clean ones."""
    return {"knockout": spec.to_dict()}
