"""sha256 digests of files, streamed; the cached variant is keyed by (path, size, mtime)."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

__all__ = ["sha256_file", "file_sha256"]


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """:func:`sha256_file`, memoised for as long as the file's size and mtime stay the same."""
    st = Path(path).stat()
    return _memo(str(path), st.st_size, st.st_mtime_ns)


@cache
def _memo(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)
