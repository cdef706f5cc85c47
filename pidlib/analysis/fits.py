"""Fitted PID Flow maps kept in the on-disk cache, so that jobs on the same rows share them.

A knockout's paired difference re-measures the clean run with the folds and flow seeds of the
clean layer-wise job, so its clean fits are exactly that job's: :class:`CachedFits` lets the
second job load them (:func:`pidlib.pid.flow.fit_maps`) instead of training the flows again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pidlib.core.cache import ArrayCache, cache_key

__all__ = ["CachedFits"]

_KIND = "pid-flow-fit"
#: The code a stored fit depends on: a change anywhere in the estimators refits.
_CODE: tuple[str, ...] = ("pidlib.pid",)


class CachedFits:
    """A :class:`~pidlib.pid.flow.FitStore` on an :class:`~pidlib.core.cache.ArrayCache` folder
    (picklable by its root, so joblib workers open the same cache)."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(root)

    def _key(self, key: str) -> str:
        return cache_key(_KIND, {"fit": key}, _CODE)

    def get(self, key: str) -> bytes | None:
        hit = ArrayCache(self.root).load(_KIND, self._key(key))
        return None if hit is None else hit[0]["maps"].tobytes()

    def put(self, key: str, blob: bytes) -> None:
        arrays = {"maps": np.frombuffer(blob, dtype=np.uint8)}
        ArrayCache(self.root).save(_KIND, self._key(key), arrays, {"fit": key})
