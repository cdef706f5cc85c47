"""Content fingerprints of question samples (records and images) for cache keys."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pidlib.core.hashing import file_sha256
from pidlib.data.tasks import Sample

__all__ = ["samples_fingerprint"]


def samples_fingerprint(samples: Sequence[Sample]) -> str:
    """sha256 over each sample's record and its image (pixels in memory, or the file's bytes)."""
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
