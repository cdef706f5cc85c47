"""Threads pinned: one per parallel job, and a set number for a chapter's own model forwards,
so that work sharing the cores with other work does not oversubscribe them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["one_thread", "pinned_threads"]


@contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """Hold torch's intra-op threads and every BLAS / OpenMP pool to ``n`` threads, then restore
    them. Fine-grained parallel regions thrash when their threads outnumber the free cores: the
    embedded models' feature extraction on 2 threads took 172 s beside one busy process against
    4.8 s idle (1 thread: 5.7 s idle)."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(threads)


@contextmanager
def one_thread() -> Iterator[None]:
    """:func:`pinned_threads` at one thread: jobs run under it give the same numbers in a worker
    process and in a serial run, and two jobs on two cores do not oversubscribe them."""
    with pinned_threads(1):
        yield
