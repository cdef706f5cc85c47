"""What the chapters read: a profile's questions and their features per (model, task), and the
content fingerprints of samples and models that key the feature cache."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pidlib.tasks import Sample, validate_tasks

if TYPE_CHECKING:
    from pidlib.cache import ArrayCache
    from pidlib.features import Features
    from pidlib.models import LoadedModel
    from pidlib.profiles import DatasetSpec, Profile

__all__ = [
    "DATASETS",
    "pool_size",
    "load_samples",
    "load_features",
    "samples_fingerprint",
    "model_fingerprint",
    "source_fingerprint",
]

#: Dataset names :func:`load_samples` understands (``DatasetSpec.name``).
DATASETS: tuple[str, ...] = ("minigqa", "gqa", "gqa-csv")

_REPO_ROOT = Path(__file__).resolve().parent.parent
_SKIP_FILES = frozenset({"README.md", ".gitattributes", "model_card.json"})


def pool_size(samples_per_task: int, oversample: float) -> int:
    """Questions to draw per task so that about ``samples_per_task`` survive the correct filter.

    ``oversample`` >= 1 is the inverse of the accuracy one plans for (1.5: two in three correct).
    """
    if isinstance(samples_per_task, bool) or not isinstance(samples_per_task, int):
        raise ValueError(f"samples_per_task: expected an integer, got {samples_per_task!r}")
    if samples_per_task < 1:
        raise ValueError(f"samples_per_task: must be >= 1, got {samples_per_task}")
    if not isinstance(oversample, int | float) or not 1.0 <= oversample <= 20.0:
        raise ValueError(f"oversample: must be a number in [1, 20], got {oversample!r}")
    return math.ceil(samples_per_task * oversample)


def _path(raw: str | None, what: str, name: str) -> Path:
    """A profile path: absolute, relative to the working directory, or to the repository root."""
    if raw is None:
        raise ValueError(f"dataset {name!r} needs dataset.{what} (a path)")
    path = Path(raw).expanduser()
    if not path.is_absolute() and not path.exists():
        path = _REPO_ROOT / path
    if not path.exists():
        hint = "the balanced questions JSON" if what == "questions" else "a folder of <imageId>.jpg"
        raise FileNotFoundError(
            f"dataset {name!r}: dataset.{what} {raw!r} not found (looked in the working directory "
            f"and {_REPO_ROOT}); it must point at {hint}. See the README on getting GQA."
        )
    return path


def _csv_files(folder: Path, task: str) -> list[Path]:
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else [folder]
    mine = [f for f in files if f.stem.lower().startswith(task.lower())]
    if not mine:
        names = ", ".join(f.name for f in files) or "no CSV files"
        raise FileNotFoundError(f"dataset 'gqa-csv': no CSV for {task} in {folder} ({names})")
    return mine


def load_samples(
    profile: Profile | DatasetSpec,
    *,
    tasks: str | list[str] | tuple[str, ...] | None = None,
    samples_per_task: int | None = None,
    oversample: float = 1.5,
) -> dict[str, list[Sample]]:
    """``{task: samples}`` for a profile (or a bare :class:`~pidlib.profiles.DatasetSpec`).

    The pool per task holds ``pool_size(samples_per_task, oversample)`` questions, so that
    after the correct-answer filter (in :func:`pidlib.features.extract_features`, which keeps
    the first ``samples_per_task`` correct ones) enough remain when the model's accuracy is at
    least ``1 / oversample``; a real GQA list may hold fewer (its file order, truncated).

    - ``minigqa``: :func:`pidlib.minigqa.generate` with the dataset's split, seed and
      language prior; each task has its own random stream, so a task's pool does not depend
      on which other tasks are asked for.
    - ``gqa``: a GQA balanced-questions JSON (``dataset.questions``) and image folder.
    - ``gqa-csv``: Zhang et al.'s task CSVs (a folder, one ``<Task>*.csv`` per task).

    ``tasks`` / ``samples_per_task`` default to the profile's (a ``DatasetSpec`` needs both).
    """
    from pidlib.profiles import DatasetSpec

    spec = profile if isinstance(profile, DatasetSpec) else profile.dataset
    if not isinstance(spec, DatasetSpec):
        raise ValueError(f"load_samples: expected a Profile or DatasetSpec, got {type(profile)}")
    if spec.name not in DATASETS:
        raise ValueError(f"dataset.name: unknown dataset {spec.name!r}; expected one of {DATASETS}")
    if isinstance(profile, DatasetSpec) and (tasks is None or samples_per_task is None):
        raise ValueError("load_samples: with a DatasetSpec, pass tasks= and samples_per_task=")
    tasks = validate_tasks(tasks if tasks is not None else profile.tasks or "all")
    n = pool_size(samples_per_task if samples_per_task is not None else profile.samples_per_task,
                  oversample)  # fmt: skip
    if spec.name == "minigqa":
        from pidlib.minigqa import MiniGQAConfig, generate

        config = MiniGQAConfig(prior=spec.prior)
        return {t: generate([t], n, split=spec.split, seed=spec.seed, config=config) for t in tasks}
    images = _path(spec.images, "images", spec.name)
    if not images.is_dir():
        raise FileNotFoundError(f"dataset.images {str(images)!r} is not a folder")
    questions = _path(spec.questions, "questions", spec.name)
    out: dict[str, list[Sample]] = {}
    if spec.name == "gqa":
        from pidlib.gqa import load_gqa_questions

        samples = load_gqa_questions(questions, images, tasks, limit=n)
        for t in tasks:
            out[t] = [s for s in samples if s.task == t]
    else:
        from pidlib.gqa import load_zhang_csv

        for t in tasks:
            rows = [s for f in _csv_files(questions, t) for s in load_zhang_csv(f, images, t)]
            out[t] = rows[:n]
    empty = [t for t, s in out.items() if not s]
    if empty:
        raise ValueError(
            f"dataset {spec.name!r} ({questions}): no questions for {', '.join(empty)}"
        )
    return out


def load_features(
    profile: Profile,
    *,
    samples: Mapping[str, Sequence[Sample]] | None = None,
    cache: ArrayCache | bool = True,
    oversample: float = 1.5,
    max_new_tokens: int = 5,
    progress: bool = True,
) -> dict[tuple[str, str], Features]:
    """``{(model, task): Features}`` with the profile's models, tasks, batch size, device, dtype,
    target and correct filter, ``samples_per_task`` correct samples each where possible.

    ``samples`` default to :func:`load_samples` (``oversample``). Features come from
    :func:`pidlib.features.extract_features`; a model is loaded only when one of its chunks is
    missing from the cache, so a book built without a GPU reads what a GPU run computed.
    """
    import torch

    from pidlib.features import _cache, _collect, _Missing, extract_features
    from pidlib.models import load_model

    samples = load_samples(profile, oversample=oversample) if samples is None else samples
    store = _cache(cache)
    opts = {"batch_size": profile.batch_size, "chunk_batches": 8, "limit": profile.samples_per_task,
            "max_new_tokens": max_new_tokens, "correct_only": profile.correct_only,
            "target": profile.target, "store_dtype": "auto", "intervention_key": None}  # fmt: skip
    out: dict[tuple[str, str], Features] = {}
    for name in profile.models:
        ident = source_fingerprint(name, dtype=profile.dtype, device=profile.device)
        loaded = None
        for task in profile.tasks:
            if task not in samples:
                raise ValueError(f"load_features: no samples for task {task}")
            if loaded is None and ident is not None and store is not None:
                with contextlib.suppress(_Missing):
                    got = _collect(None, ident, name, samples[task], store, None, opts, progress)
                    out[name, task] = got
                    continue
            if loaded is None:
                loaded = load_model(name, dtype=profile.dtype, device=profile.device)
            out[name, task] = extract_features(
                loaded, samples[task], cache=store or False, progress=progress, **opts
            )
        del loaded
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out


# --------------------------------------------------------------------------- fingerprints


def samples_fingerprint(samples: Sequence[Sample]) -> str:
    """sha256 over each sample's record and its image (pixels in memory, or the file's bytes)."""
    h = hashlib.sha256()
    for s in samples:
        rec = [s.qid, s.task, s.question, s.answer, list(s.options), s.image_id]
        h.update(json.dumps(rec).encode())
        if s.image is not None:
            h.update(f"{s.image.mode}{s.image.size}".encode() + np.asarray(s.image).tobytes())
        elif s.image_path is not None and Path(s.image_path).is_file():
            st = Path(s.image_path).stat()
            h.update(_file_sha(str(s.image_path), st.st_size, st.st_mtime_ns).encode())
        else:
            s.load_image()  # raises a clear FileNotFoundError
    return h.hexdigest()[:24]


@cache
def _file_sha(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _folder(source: str) -> Path | None:
    """A model's files: a local folder, or its snapshot in the local Hugging Face cache."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path if (path / "config.json").is_file() else None
    if source == "memory" or source.count("/") != 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except (OSError, ValueError):  # not in the local cache
        return None


def _files_hash(folder: Path) -> str:
    """Hash of a checkpoint folder's files; Hugging Face blob names already are content hashes."""
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.name in _SKIP_FILES or f.name.startswith(".") or not f.is_file():
            continue
        real = f.resolve()
        st = real.stat()
        blob = real.name if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", real.name) else None
        digest = blob or _file_sha(str(real), st.st_size, st.st_mtime_ns)
        h.update(f.name.encode() + b"\0" + digest.encode() + b"\0")
    return h.hexdigest()[:24]


def _memory_hash(loaded: LoadedModel) -> str:
    """Hash of the config, processor, vocabulary and every parameter of an in-memory model."""
    import torch

    cfg = loaded.model.config.to_dict()
    for k in ("_name_or_path", "transformers_version", "dtype", "torch_dtype"):
        cfg.pop(k, None)
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
    h.update(loaded.processor.to_json_string().encode())
    h.update(json.dumps(sorted(loaded.tokenizer.get_vocab().items())).encode())
    for name, t in sorted(loaded.model.state_dict().items()):
        h.update(name.encode() + str(t.dtype).encode())
        h.update(t.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
    return h.hexdigest()[:24]


def model_fingerprint(loaded: LoadedModel) -> dict[str, str]:
    """The model's identity in feature cache keys (its display name is not part of it).

    A model loaded from a folder or the Hugging Face cache is identified by its files (weights,
    config, processor, tokenizer), so :func:`source_fingerprint` finds its features without
    loading it; an in-memory model (``LoadedModel.from_parts``) by its config, processor,
    vocabulary and parameters (so wrap a model whose weights you edit with ``from_parts``).
    Plus: family, dtype, device type, attention implementation, prompt style.
    """
    folder = _folder(str(loaded.source))
    return {
        "family": loaded.family,
        "content": f"files:{_files_hash(folder)}" if folder else f"memory:{_memory_hash(loaded)}",
        "dtype": str(loaded.dtype).replace("torch.", ""),
        "device": loaded.device.type,
        "attn": str(getattr(loaded.model.config, "_attn_implementation", None)),
        "prompt_style": str(getattr(loaded, "prompt_style", "hf")),
    }


def source_fingerprint(
    name: str, *, dtype: str = "auto", device: str = "cpu", attn_implementation: str = "eager",
    prompt_style: str = "hf",
) -> dict[str, str] | None:  # fmt: skip
    """:func:`model_fingerprint` of ``load_model(name, ...)`` from the files alone (no weights
    loaded); ``None`` when the model is not on disk."""
    import torch

    from pidlib.models import resolve_model

    folder = _folder(resolve_model(name)[0])
    if folder is None:
        return None
    cfg = json.loads((folder / "config.json").read_text())
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    dev = dev.split(":")[0]
    if dtype == "auto":
        text = cfg.get("text_config") or {}
        stored = cfg.get("dtype") or cfg.get("torch_dtype") or text.get("dtype")
        dtype = "float32" if dev == "cpu" else str(stored or "bfloat16").replace("torch.", "")
    return {"family": str(cfg.get("model_type")), "content": f"files:{_files_hash(folder)}",
            "dtype": dtype, "device": dev, "attn": attn_implementation,
            "prompt_style": prompt_style}  # fmt: skip
