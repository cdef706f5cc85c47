"""Content-addressed, atomic, verified on-disk cache of numpy arrays, with provenance manifests."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import socket
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from pidlib.core.hashing import sha256_file
from pidlib.core.paths import REPO_ROOT
from pidlib.core.provenance import provenance
from pidlib.core.stages import stage

__all__ = [
    "open_cache",
    "cache_root",
    "cache_key",
    "ArrayCache",
    "cached_table",
    "code_hash",
    "STALE_TMP_SECONDS",
]

#: A write's temporary folder older than this (seconds) belongs to an interrupted write, whoever
#: owns it; one whose owner process on this host has died is removed at once.
STALE_TMP_SECONDS = 6 * 3600

_TMP = ".tmp-"
_HOST = socket.gethostname()
_OWNER = re.compile(r"\.tmp-(\d+)@(.+)-[0-9a-f]{8}$")

#: What reading a damaged entry can raise (a bad zip, truncated JSON, a manifest of the wrong
#: shape, a vanished file): every one of them means "corrupt".
_CORRUPT = (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile)


def cache_root() -> Path:
    """``$PIDBOOK_CACHE`` if set, else ``_cache/`` at the repository root."""
    return Path(os.environ.get("PIDBOOK_CACHE", REPO_ROOT / "_cache"))


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@cache
def code_hash(*modules: str) -> str:
    """Hash of the source of the given modules or packages (a package: every ``.py`` file under
    it): the 'code version' part of a cache key."""
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"code_hash: no source for module {name!r}")
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if spec.submodule_search_locations else [origin]
        for f in files:
            rel = f.relative_to(origin.parent).as_posix() if len(files) > 1 else ""
            h.update(f"{name}/{rel}".encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def cache_key(kind: str, params: Mapping[str, Any], code: Iterable[str] = ()) -> str:
    """The key of an entry: sha256 over the kind, the parameters and the code version."""
    payload = {"kind": kind, "params": params, "code": code_hash(*code) if code else ""}
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()[:24]


def _read_file(dir_fd: int, name: str) -> bytes:
    with open(os.open(name, os.O_RDONLY, dir_fd=dir_fd), "rb") as f:
        return f.read()


def _read_entry(dir_fd: int, kind: str, key: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Manifest and arrays of the entry folder ``dir_fd``; ``ValueError`` (or another of
    :data:`_CORRUPT`) saying what is wrong when it is not a complete entry for ``(kind, key)``."""
    manifest = json.loads(_read_file(dir_fd, "manifest.json"))
    if not isinstance(manifest, dict):
        raise ValueError(f"manifest is a JSON {type(manifest).__name__}, not an object")
    if manifest.get("key") != key or manifest.get("kind") != kind:
        raise ValueError("manifest belongs to another entry (stale)")
    table = manifest.get("arrays")
    if not isinstance(table, dict) or not isinstance(manifest.get("sha256"), str):
        raise ValueError("manifest lacks its 'arrays' table or its 'sha256'")
    data = _read_file(dir_fd, "arrays.npz")
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise ValueError("arrays do not match their checksum")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if sorted(arrays) != sorted(table):
        raise ValueError("array names differ from the manifest")
    for name, a in arrays.items():
        if table[name] != [list(a.shape), str(a.dtype)]:
            raise ValueError(f"array {name!r} is {list(a.shape)} {a.dtype}, not {table[name]}")
    return manifest, arrays


def _alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate it; rely on the age rule there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _sweep_temporaries(folder: Path, max_age: float = STALE_TMP_SECONDS) -> list[Path]:
    """Remove the temporary folders of interrupted writes in ``folder``: those whose owner
    process on this host is dead, and any older than ``max_age`` seconds."""
    removed = []
    now = time.time()
    for tmp in folder.glob(f".*{_TMP}*"):
        owner = _OWNER.search(tmp.name)
        try:
            age = now - tmp.stat().st_mtime
        except FileNotFoundError:
            continue  # finished or swept meanwhile
        dead = owner is not None and owner[2] == _HOST and not _alive(int(owner[1]))
        if dead or age > max_age:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def open_cache(cache: ArrayCache | bool | None) -> ArrayCache | None:
    """``cache`` as an :class:`ArrayCache`: ``True`` = default; ``False`` / ``None``: none."""
    if cache is True:
        return ArrayCache()
    if cache is False or cache is None:
        return None
    if not isinstance(cache, ArrayCache):
        raise ValueError(f"cache must be an ArrayCache, True or False, got {cache!r}")
    return cache


class ArrayCache:
    """Entries ``<root>/<kind>/<key>/`` holding ``arrays.npz`` and ``manifest.json``.

    Writes go to a temporary folder that is renamed into place, so a crash never leaves a
    half-written entry; temporaries of interrupted writes are swept by later writes. Reads
    check the manifest's shape, its key and the arrays' sha256, names, shapes and dtypes; a
    corrupt or stale entry is moved aside under a unique name (never deleted) with a warning and
    recomputed. Any number of processes may read and write one key at once.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_root()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def load(self, kind: str, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The arrays and manifest of a valid entry, or ``None`` (missing, corrupt or stale).

        Both files are read through one handle on the entry's folder, each byte once, so a
        concurrent writer, mover or corrupter can never make a read mix two entries or return
        bytes other than those checked. Safe with any number of concurrent processes.
        """
        entry = self.path(kind, key)
        try:
            fd = os.open(entry, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except FileNotFoundError:
            return None  # missing, or moved aside by a concurrent reader
        except NotADirectoryError as err:  # a file where the entry's folder should be
            with contextlib.suppress(FileNotFoundError):
                self._move_aside(entry, os.stat(entry).st_ino, err)
            return None
        try:
            inode = os.fstat(fd).st_ino
            manifest, arrays = _read_entry(fd, kind, key)
        except _CORRUPT as err:
            self._move_aside(entry, inode, err)
            return None
        finally:
            os.close(fd)
        return arrays, manifest

    def _move_aside(self, entry: Path, inode: int, err: BaseException) -> None:
        """Rename the corrupt entry (the folder ``inode`` names) to a unique aside name; another
        process may already have moved it, or replaced it with a fresh entry (left alone)."""
        tag = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        aside = entry.with_name(f"{entry.name}.corrupt-{tag}")
        try:
            if os.stat(entry).st_ino != inode:
                return  # a writer already put a fresh entry in its place
            os.rename(entry, aside)
            moved = os.stat(aside).st_ino
        except FileNotFoundError:
            return  # a concurrent reader moved it first
        if moved != inode:  # a fresh entry slipped in between the check and the rename
            with contextlib.suppress(OSError):
                os.rename(aside, entry)
            return
        warnings.warn(
            f"cache entry {entry} is unusable ({err}); moved to {aside.name}, recomputing",
            stacklevel=3,
        )

    def save(
        self,
        kind: str,
        key: str,
        arrays: Mapping[str, np.ndarray],
        params: Mapping[str, Any],
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write an entry atomically; returns its manifest."""
        entry = self.path(kind, key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        _sweep_temporaries(entry.parent)
        tmp = entry.parent / f".{key}{_TMP}{os.getpid()}@{_HOST}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            np.savez(tmp / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})
            manifest = {
                "kind": kind,
                "key": key,
                "params": json.loads(_canonical(params)),
                "arrays": {
                    k: [list(np.shape(v)), str(np.asarray(v).dtype)] for k, v in arrays.items()
                },
                "sha256": sha256_file(tmp / "arrays.npz"),
                "provenance": provenance(),
                **(dict(extra) if extra else {}),
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
            try:
                os.replace(tmp, entry)  # atomic when `entry` does not exist
            except OSError as err:  # a concurrent writer won the race: keep theirs
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return manifest

    def get_or_compute(
        self,
        kind: str,
        params: Mapping[str, Any],
        compute: Callable[[], Mapping[str, np.ndarray]],
        code: Iterable[str] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Return the cached arrays for ``(kind, params, code)``, computing and saving on a miss."""
        key = cache_key(kind, params, tuple(code))
        hit = self.load(kind, key)
        if hit is not None:
            return hit
        with stage(kind):
            arrays = dict(compute())
        manifest = self.save(kind, key, arrays, params, extra)
        return {k: np.asarray(v) for k, v in arrays.items()}, manifest


def cached_table(
    kind: str,
    params: Mapping[str, Any],
    compute: Callable[[], Any],
    code: Iterable[str] = (),
    cache: ArrayCache | None = None,
):
    """A pandas DataFrame computed once per ``(kind, params, code)`` and cached column-wise.

    Columns must be numeric, boolean or strings (stored as fixed-width unicode, no pickle).
    """
    import pandas as pd

    def arrays() -> dict[str, np.ndarray]:
        df = compute()
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"cached_table({kind}): compute() must return a DataFrame")
        out = {}
        for i, col in enumerate(df.columns):
            values = df[col].to_numpy()
            if values.dtype == object or isinstance(df[col].dtype, pd.StringDtype):
                values = df[col].astype(str).to_numpy(dtype=str)
            out[f"{i:03d}:{col}"] = values
        return out

    data, _ = (cache or ArrayCache()).get_or_compute(kind, params, arrays, code)
    cols = sorted(data)
    return pd.DataFrame({c.split(":", 1)[1]: data[c] for c in cols})
