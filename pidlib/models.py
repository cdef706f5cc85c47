"""LLaVA-family models: registry, loading and saving; re-exports the builders of pidlib.tiny.

Prompting, token positions and answer reading live in :mod:`pidlib.prompt`."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pidlib.prompt import FAMILIES, PROMPT_STYLES, check_image_tokens
from pidlib.tiny import (
    PROMPT_WORDS,
    SPECIAL_TOKENS,
    build_model,
    build_processor,
    build_tokenizer,
    check_family,
    model_class,
    tiny_config,
)

__all__ = [
    "FAMILIES",
    "KNOWN_MODELS",
    "ModelSpec",
    "LoadedModel",
    "models_dir",
    "resolve_model",
    "load_model",
    "build_tokenizer",
    "build_processor",
    "tiny_config",
    "build_model",
    "save_embedded",
    "SPECIAL_TOKENS",
    "PROMPT_WORDS",
]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry; ``source`` is a hub id, or a directory name under :func:`models_dir`."""

    name: str
    family: str
    source: str
    local: bool
    description: str


KNOWN_MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec(
            "tiny-llava-1.5",
            "llava",
            "tiny-llava-1.5",
            True,
            "embedded tiny LLaVA-1.5-style model trained on Mini-GQA (CPU)",
        ),
        ModelSpec(
            "tiny-llava-1.6",
            "llava_next",
            "tiny-llava-1.6",
            True,
            "embedded tiny LLaVA-1.6-style (anyres) model trained on Mini-GQA (CPU)",
        ),
        ModelSpec(
            "llava-1.5-7b",
            "llava",
            "llava-hf/llava-1.5-7b-hf",
            False,
            "LLaVA-1.5-7B (Vicuna-7B, CLIP ViT-L/336, 576 image tokens)",
        ),
        ModelSpec(
            "llava-1.5-13b",
            "llava",
            "llava-hf/llava-1.5-13b-hf",
            False,
            "LLaVA-1.5-13B (Vicuna-13B), the model of Zhang et al. (CVPR 2025)",
        ),
        ModelSpec(
            "llava-1.6-7b",
            "llava_next",
            "llava-hf/llava-v1.6-vicuna-7b-hf",
            False,
            "LLaVA-1.6-7B (Vicuna-7B, anyres image grid)",
        ),
        ModelSpec(
            "llava-1.6-13b",
            "llava_next",
            "llava-hf/llava-v1.6-vicuna-13b-hf",
            False,
            "LLaVA-1.6-13B (Vicuna-13B, anyres image grid)",
        ),
    )
}


def models_dir() -> Path:
    """Directory of the embedded models: ``$PIDBOOK_MODELS`` if set, else ``<repo>/data/models``."""
    env = os.environ.get("PIDBOOK_MODELS")
    return Path(env).expanduser() if env else _REPO_ROOT / "data" / "models"


@dataclass(eq=False)
class LoadedModel:
    """A model in eval mode with its processor; ``family`` is "llava" or "llava_next"."""

    model: Any
    processor: Any
    family: str
    name: str
    source: str
    card: Mapping[str, Any] = field(default_factory=dict)
    prompt_style: str = "hf"

    def __post_init__(self) -> None:
        check_family(self.family)
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(
                f"prompt_style must be one of {PROMPT_STYLES}, got {self.prompt_style!r}"
            )

    @classmethod
    def from_parts(cls, model, processor, *, name: str = "in-memory", prompt_style: str = "hf"):
        """Wrap an in-memory model and processor (nothing is changed: mode and grads stay)."""
        family = check_family(getattr(model.config, "model_type", None))
        return cls(model, processor, family, name, "memory", {}, prompt_style)

    @property
    def tokenizer(self):
        """The processor's tokenizer."""
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the weights."""
        return next(self.model.parameters()).dtype

    @property
    def image_token_id(self) -> int:
        """Id of the (expanded) image placeholder token."""
        return int(self.model.config.image_token_id)

    @property
    def num_layers(self) -> int:
        """Number of decoder layers (hidden states: embeddings + one per layer)."""
        return int(self.model.config.text_config.num_hidden_layers)


def resolve_model(name_or_path: str | os.PathLike) -> tuple[str, bool]:
    """``(source, is_local)`` for a registry name, a local directory or a hub id ("org/name")."""
    key = os.fspath(name_or_path)
    if key in KNOWN_MODELS:
        spec = KNOWN_MODELS[key]
        return (str(models_dir() / spec.source), True) if spec.local else (spec.source, False)
    path = Path(key).expanduser()
    if path.exists():
        return str(path), True
    parts = key.split("/")
    if len(parts) == 2 and all(parts) and not key.startswith((".", "~")):
        return key, False
    raise ValueError(
        f"unknown model {key!r}: not a known name ({', '.join(KNOWN_MODELS)}), "
        "not an existing directory, and not a hub id of the form 'org/name'"
    )


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


def _missing_hub_error(source: str, err: Exception) -> OSError:
    home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return OSError(
        f"weights for {source!r} are not on disk (HF_HOME={home}) and downloading is off. "
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
    only with ``allow_download``. ``dtype="auto"``: float32 on CPU, the checkpoint's type on
    GPU. The model is in eval mode with gradients off. ``cache_dir`` overrides the Hugging
    Face cache; ``prompt_style`` is used by :func:`encode` (see :func:`build_prompt`).
    ``check`` verifies that the processor's image-token count equals the model's image
    features (:func:`check_image_tokens`; one small vision forward per test image).
    """
    from transformers import AutoConfig, AutoProcessor

    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, got {prompt_style!r}")
    if dtype != "auto" and dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {tuple(_DTYPES)}, got {dtype!r}")
    dev = _resolve_device(device)
    source, local = resolve_model(name_or_path)
    if local:
        _check_local_dir(Path(source))
    opts: dict[str, Any] = {"local_files_only": not allow_download, "trust_remote_code": False}
    if cache_dir is not None:
        opts["cache_dir"] = os.fspath(cache_dir)
    try:
        config = AutoConfig.from_pretrained(source, **opts)
    except OSError as err:
        if local:
            raise
        raise _missing_hub_error(source, err) from err
    family = getattr(config, "model_type", None)
    if family not in FAMILIES:
        raise ValueError(f"{source}: model_type {family!r} is not a LLaVA family model {FAMILIES}")
    try:
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
        raise _missing_hub_error(source, err) from err
    # Older llava-hf processor configs lack these; the model config is the authority.
    vc = config.vision_config
    if getattr(processor, "patch_size", None) is None:
        processor.patch_size = vc.patch_size
    if getattr(processor, "vision_feature_select_strategy", None) is None:
        processor.vision_feature_select_strategy = config.vision_feature_select_strategy
    model.to(dev).eval().requires_grad_(False)
    card_path = Path(source) / "model_card.json" if local else None
    card = json.loads(card_path.read_text()) if card_path and card_path.is_file() else {}
    name = os.fspath(name_or_path)
    loaded = LoadedModel(model, processor, family, name, source, card, prompt_style)
    if check:
        check_image_tokens(loaded)
    return loaded


def save_embedded(
    model_or_loaded, path: str | os.PathLike, card: Mapping[str, Any], processor=None
) -> Path:
    """Save a model + processor (safetensors) with ``model_card.json`` and a README to ``path``.

    ``card`` holds what a reader needs (training data, seed, accuracy, licence ...); the family,
    parameter count and library versions are added. :func:`load_model` reads it back.
    """
    import transformers

    if isinstance(model_or_loaded, LoadedModel):
        model, processor = model_or_loaded.model, processor or model_or_loaded.processor
    else:
        model = model_or_loaded
    if processor is None:
        raise ValueError("save_embedded: a processor is needed (pass a LoadedModel or processor=)")
    family = check_family(model.config.model_type)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    full = {
        "name": out.name,
        **dict(card),
        "family": family,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "decoder_layers": int(model.config.text_config.num_hidden_layers),
        "versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    (out / "model_card.json").write_text(
        json.dumps(full, indent=2, sort_keys=True, default=str) + "\n"
    )
    lines = [
        f"# {full['name']}",
        "",
        str(full.get("description", "")),
        "",
        "| field | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {json.dumps(v, default=str)} |" for k, v in sorted(full.items())]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    return out
