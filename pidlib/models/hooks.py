"""One hook mechanism for capture and knockout: hooks registered inside a context manager that
always removes them (also after an exception)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

__all__ = ["Hook", "attached"]


@dataclass(frozen=True, eq=False)
class Hook:
    """A forward hook on ``module`` (``pre=True``: a forward pre-hook, run before the module;
    ``with_kwargs=True``: it also receives, and may replace, the keyword arguments)."""

    module: torch.nn.Module
    fn: Callable
    pre: bool = False
    with_kwargs: bool = False


@contextmanager
def attached(hooks: Iterable[Hook]) -> Iterator[None]:
    """Register every hook of ``hooks`` for the duration of the block; all are removed on exit."""
    handles = []
    try:
        for h in hooks:
            register = (
                h.module.register_forward_pre_hook if h.pre else h.module.register_forward_hook
            )
            handles.append(register(h.fn, with_kwargs=h.with_kwargs))
        yield
    finally:
        for handle in handles:
            handle.remove()
