"""Hooks that mean-pool each hidden state over the image block and the question span."""

from __future__ import annotations

from typing import Any

import torch

from pidlib.models.hooks import Hook
from pidlib.models.prompt import Encoded

__all__ = ["Pooler", "pool_weights"]


class Pooler:
    """Hooks that mean-pool each hidden state as it is made. ``weights`` (B, 2, T): row 0
    averages the image block, row 1 the question span; slot ``l`` holds hidden state ``l``.
    The same hooks keep each hidden state's last prompt position (``T - 1`` under left padding:
    the position whose next-token logits give the answer).

    ``hooks()`` gives the :class:`~pidlib.models.hooks.Hook` list for
    :func:`~pidlib.models.hooks.attached`; after the forward, :meth:`result` returns the states.
    """

    def __init__(self, decoder: torch.nn.Module, weights: torch.Tensor):
        self.decoder, self.weights, self.T = decoder, weights, weights.shape[-1]
        self.states: dict[int, torch.Tensor] = {}
        self.lasts: dict[int, torch.Tensor] = {}

    def _take(self, slot: int, h: Any) -> None:
        h = h[0] if isinstance(h, tuple) else h
        if h.shape[1] != self.T:  # a decoding step, not the prompt
            return
        if self.weights.device != h.device:  # once: the hidden states' device
            self.weights = self.weights.to(h.device)
        self.states[slot] = torch.bmm(self.weights, h.float())  # (B, 2, D)
        self.lasts[slot] = h[:, -1].float()  # (B, D)

    def hooks(self) -> list[Hook]:
        """Layer 0's input (pre-hook), every layer's output but the last, and the final norm's
        output (as in ``output_hidden_states``, the last hidden state is taken after the norm)."""
        layers, n = self.decoder.layers, len(self.decoder.layers)

        def pre(_m: Any, args: tuple, kwargs: dict) -> None:
            self._take(0, args[0] if args else kwargs["hidden_states"])

        out = [Hook(layers[0], pre, pre=True, with_kwargs=True)]
        for i in range(n - 1):
            out.append(Hook(layers[i], (lambda slot: lambda _m, _a, o: self._take(slot, o))(i + 1)))
        out.append(Hook(self.decoder.norm, lambda _m, _a, o: self._take(n, o)))
        return out

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled states (B, n_layers + 1, 2, D) and the last prompt position's state at every
        layer (B, n_layers + 1, D); its final slot is the final-norm state."""
        n = len(self.decoder.layers) + 1
        if sorted(self.states) != list(range(n)):
            raise RuntimeError(
                f"pooling hooks saw hidden states {sorted(self.states)}, not 0..{n - 1}"
            )
        pooled = torch.stack([self.states[i].cpu() for i in range(n)], 1)
        return pooled, torch.stack([self.lasts[i].cpu() for i in range(n)], 1)


def pool_weights(enc: Encoded, T: int) -> torch.Tensor:
    w = torch.zeros(len(enc.positions), 2, T)
    for b, p in enumerate(enc.positions):
        if p.last != T - 1:
            raise ValueError("extraction needs left-padded batches (last position = T - 1)")
        w[b, 0, p.image[0] : p.image[-1] + 1] = 1.0 / len(p.image)
        w[b, 1, p.question[0] : p.question[-1] + 1] = 1.0 / len(p.question)
    return w
