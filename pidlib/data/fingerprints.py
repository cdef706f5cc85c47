"""Content fingerprints of question samples (records and images) for cache keys."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pidlib.core.hashing import file_sha256
from pidlib.data.tasks import Sample

__all__ = ["samples_fingerprint"]


#: Fingerprints of the sample lists seen last, by the identity of their samples (see
#: :func:`samples_fingerprint`), each with the samples themselves, so that no identity is reused.
_SEEN: OrderedDict[tuple[int, ...], tuple[tuple[Sample, ...], str]] = OrderedDict()
_SEEN_SIZE = 512


def samples_fingerprint(samples: Sequence[Sample]) -> str:
    """sha256 over each sample's record and its image (pixels in memory, or the file's bytes).

    A list of the same sample objects, every one holding its image in memory, as one
    fingerprinted before in this process gets that fingerprint again without reading the
    pixels (a warm chapter asked for the same feature chunks' fingerprints about 200 times,
    3.5 s). Samples are frozen; an image is taken as unchanged in place (a changed image
    belongs in a new sample, as ``dataclasses.replace`` makes). Image files are hashed through
    :func:`~pidlib.core.hashing.file_sha256`, which notices a changed size or mtime.
    """
    if any(s.image is None for s in samples):
        return _fingerprint(samples)
    ident = tuple(map(id, samples))
    seen = _SEEN.get(ident)
    if seen is not None:
        _SEEN.move_to_end(ident)
        return seen[1]
    digest = _fingerprint(samples)
    _SEEN[ident] = (tuple(samples), digest)
    while len(_SEEN) > _SEEN_SIZE:
        _SEEN.popitem(last=False)
    return digest


def _fingerprint(samples: Sequence[Sample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        rec = [s.qid, s.task, s.question, s.answer, list(s.options), s.image_id]
        h.update(json.dumps(rec).encode())
        if s.image is not None:
            h.update(f"{s.image.mode}{s.image.size}".encode() + np.asarray(s.image).tobytes())
        elif s.image_path is not None and Path(s.image_path).is_file():
            h.update(file_sha256(s.image_path).encode())
        else:
            s.load_image()  # raises a clear FileNotFoundError
    return h.hexdigest()[:24]
