"""Content-addressed, atomic, verified on-disk cache of numpy arrays, with provenance manifests."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from pidlib.core.hashing import sha256_file
from pidlib.core.paths import REPO_ROOT
from pidlib.core.provenance import provenance

__all__ = [
    "open_cache",
    "cache_root",
    "cache_key",
    "ArrayCache",
    "cached_table",
    "code_hash",
]


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
    half-written entry. Reads check the manifest's key and the arrays' sha256; a corrupt or
    stale entry is moved aside (never deleted) with a warning and recomputed.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_root()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def load(self, kind: str, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The arrays and manifest of a valid entry, or ``None`` (missing, corrupt or stale)."""
        entry = self.path(kind, key)
        if not entry.exists():
            return None
        try:
            manifest = json.loads((entry / "manifest.json").read_text())
            if manifest.get("key") != key or manifest.get("kind") != kind:
                raise ValueError("manifest belongs to another entry (stale)")
            if sha256_file(entry / "arrays.npz") != manifest["sha256"]:
                raise ValueError("arrays do not match their checksum")
            with np.load(entry / "arrays.npz", allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            if sorted(arrays) != sorted(manifest["arrays"]):
                raise ValueError("array names differ from the manifest")
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
            aside = entry.with_name(f"{entry.name}.corrupt-{int(time.time())}")
            warnings.warn(
                f"cache entry {entry} is unusable ({err}); moved to {aside.name}, recomputing",
                stacklevel=2,
            )
            entry.rename(aside)
            return None
        return arrays, manifest

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
        tmp = entry.parent / f".{key}.tmp-{os.getpid()}-{time.monotonic_ns()}"
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
            except OSError:  # a concurrent writer won the race: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
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
