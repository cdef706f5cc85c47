"""The language decoder, its layers, final norm and LM head, found on the live model."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["unwrap", "decoder_module", "decoder_layers", "decoder_stack"]


def unwrap(model: Any) -> torch.nn.Module:
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
    module = unwrap(model)
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


def decoder_stack(model: Any) -> tuple[torch.nn.ModuleList, torch.nn.Module, torch.nn.Module]:
    """``(layers, final norm, lm_head)`` of the live model."""
    module = unwrap(model)
    head = module.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(module).__name__} has no LM head (get_output_embeddings)")
    return decoder_layers(module), decoder_module(module).norm, head
