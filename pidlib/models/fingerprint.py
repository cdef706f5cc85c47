"""A model's identity in feature cache keys: its files, or its in-memory content."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pidlib.core.hashing import file_sha256

if TYPE_CHECKING:
    from pidlib.models.loaded import LoadedModel

__all__ = ["model_fingerprint", "source_fingerprint"]

_SKIP_FILES = frozenset({"README.md", ".gitattributes", "model_card.json"})


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
        blob = real.name if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", real.name) else None
        digest = blob or file_sha256(real)
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

    from pidlib.models.families import resolve_model

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
