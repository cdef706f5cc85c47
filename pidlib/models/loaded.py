"""A loaded model with its processor: the object every model-side function takes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from pidlib.models.families import PROMPT_STYLES, check_family

__all__ = ["LoadedModel"]


@dataclass(eq=False)
class LoadedModel:
    """A model in eval mode with its processor; ``family`` is "llava" or "llava_next"."""

    model: Any
    processor: Any
    family: str
    name: str
    source: str
    card: Mapping[str, Any] = field(default_factory=dict)
    prompt_style: str = "hf"

    def __post_init__(self) -> None:
        check_family(self.family)
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(
                f"prompt_style must be one of {PROMPT_STYLES}, got {self.prompt_style!r}"
            )

    @classmethod
    def from_parts(cls, model, processor, *, name: str = "in-memory", prompt_style: str = "hf"):
        """Wrap an in-memory model and processor (nothing is changed: mode and grads stay)."""
        family = check_family(getattr(model.config, "model_type", None))
        return cls(model, processor, family, name, "memory", {}, prompt_style)

    @property
    def tokenizer(self):
        """The processor's tokenizer."""
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the weights."""
        return next(self.model.parameters()).dtype

    @property
    def image_token_id(self) -> int:
        """Id of the (expanded) image placeholder token."""
        return int(self.model.config.image_token_id)

    @property
    def num_layers(self) -> int:
        """Number of decoder layers (hidden states: embeddings + one per layer)."""
        return int(self.model.config.text_config.num_hidden_layers)
