"""One thread per job: torch and BLAS pinned while a job shares the cores with others."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["one_thread"]


@contextmanager
def one_thread() -> Iterator[None]:
    """Hold torch's intra-op threads and every BLAS / OpenMP pool to one thread, then restore
    them. Jobs run under it give the same numbers in a worker process and in a serial run, and
    two jobs on two cores do not oversubscribe them."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)
