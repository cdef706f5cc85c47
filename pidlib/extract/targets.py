"""The answer variables Y a feature set can expose (no torch: config reads it)."""

from __future__ import annotations

__all__ = ["TARGETS"]

#: The answer variables Y can be (see :attr:`Features.Y`).
TARGETS: tuple[str, ...] = ("logits", "canonical", "margin", "hidden", "onehot")
