"""Loading LLaVA-family checkpoints by registry name, folder or hub id (offline by default)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from pidlib.models.checksums import check_finite, check_folder
from pidlib.models.dryrun import ensure_dryrun
from pidlib.models.families import FAMILIES, PROMPT_STYLES, resolve_model
from pidlib.models.loaded import LoadedModel
from pidlib.models.offline import hub_offline
from pidlib.models.prompt import check_image_tokens
from pidlib.models.tiny import model_class

__all__ = ["load_model"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _check_local_dir(path: Path) -> None:
    if not path.is_dir() or not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no model at {path} (config.json missing). Build the embedded tiny models with the "
            "project's training step, set PIDBOOK_MODELS to a directory holding them, or pass a "
            "directory with config.json, *.safetensors and the processor files"
        )
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        raise FileNotFoundError(
            f"{path} has a config but no weights (*.safetensors): the model was not saved "
            "completely; rebuild it or pass a directory that holds the weights"
        )


def _missing_hub_error(source: str, err: Exception, allow_download: bool = False) -> OSError:
    home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    why = "the download failed" if allow_download else "downloading is off"
    return OSError(
        f"weights for {source!r} are not on disk (HF_HOME={home}) and {why}. "
        f"Download them once with `hf download {source}` (or `huggingface-cli download {source}`), "
        "point HF_HOME at a cache that holds them, pass a local directory, or call "
        f"load_model(..., allow_download=True). Cause: {type(err).__name__}: {err}"
    )


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def _resolve_dtype(dtype: str, device: torch.device, config) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cpu":
            return torch.float32
        stored = getattr(config, "dtype", None) or getattr(config.text_config, "dtype", None)
        stored = _DTYPES.get(str(stored).replace("torch.", ""), None)
        return stored or torch.bfloat16
    return _DTYPES[dtype]


def load_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: str = "auto",
    device: str = "cpu",
    attn_implementation: str = "eager",
    allow_download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    prompt_style: str = "hf",
    check: bool = True,
) -> LoadedModel:
    """Load any LLaVA / LLaVA-NeXT checkpoint by registry name, local directory or hub id.

    The family comes from ``config.model_type``. Remote code is never trusted; the hub is used
    only with ``allow_download``: without it the hub client is kept offline for the whole load
    (:func:`~pidlib.models.offline.hub_offline`), so absent weights fail at once, with no
    request. ``dtype="auto"``: float32 on CPU, the checkpoint's type on GPU. The model is in
    eval mode with gradients off. ``cache_dir`` overrides the Hugging Face cache;
    ``prompt_style`` is used by :func:`encode` (see :func:`build_prompt`).
    ``check`` verifies the files against the sha256 digests in the model card, refuses NaN or
    inf weights, and checks that the processor's image-token count equals the model's image
    features (:func:`check_image_tokens`; one small vision forward per test image).
    """
    from transformers import AutoConfig, AutoProcessor

    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
    if dtype != "auto" and dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {tuple(_DTYPES)}, got {dtype!r}")
    dev = _resolve_device(device)
    ensure_dryrun(name_or_path)  # a dry-run model is built on first use (no-op otherwise)
    source, local = resolve_model(name_or_path)
    if local:
        _check_local_dir(Path(source))
    opts: dict[str, Any] = {"local_files_only": not allow_download, "trust_remote_code": False}
    if cache_dir is not None:
        opts["cache_dir"] = os.fspath(cache_dir)
    try:
        with hub_offline(not allow_download):
            config = AutoConfig.from_pretrained(source, **opts)
    except OSError as err:
        if local:
            raise
        raise _missing_hub_error(source, err, allow_download) from err
    family = getattr(config, "model_type", None)
    if family not in FAMILIES:
        raise ValueError(f"{source}: model_type {family!r} is not a LLaVA family model {FAMILIES}")
    if local:  # sha256 against the model card, readable safetensors headers, a tokenizer file
        check_folder(source, verify=check)
    try:
        with hub_offline(not allow_download):
            model = model_class(family).from_pretrained(
                source,
                dtype=_resolve_dtype(dtype, dev, config),
                attn_implementation=attn_implementation,
                **opts,
            )
            processor = AutoProcessor.from_pretrained(source, **opts)
    except OSError as err:
        if local:
            raise
        raise _missing_hub_error(source, err, allow_download) from err
    # Older llava-hf processor configs lack these; the model config is the authority.
    vc = config.vision_config
    if getattr(processor, "patch_size", None) is None:
        processor.patch_size = vc.patch_size
    if getattr(processor, "vision_feature_select_strategy", None) is None:
        processor.vision_feature_select_strategy = config.vision_feature_select_strategy
    model.to(dev).eval().requires_grad_(False)
    if check:
        check_finite(model, source)
    card_path = Path(source) / "model_card.json" if local else None
    card = json.loads(card_path.read_text()) if card_path and card_path.is_file() else {}
    name = os.fspath(name_or_path)
    loaded = LoadedModel(model, processor, family, name, source, card, prompt_style)
    if check:
        check_image_tokens(loaded)
    return loaded
