"""The supported LLaVA families, the paper's prompt constants and the registry of known models."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pidlib.core.paths import REPO_ROOT

__all__ = [
    "FAMILIES",
    "ANSWER_INSTRUCTION",
    "ANSWER_CUE",
    "VICUNA_SYSTEM",
    "PROMPT_STYLES",
    "check_family",
    "ModelSpec",
    "EMBEDDED_RETRAINS",
    "KNOWN_MODELS",
    "models_dir",
    "resolve_model",
]

#: The two architectures pidlib supports, as ``config.model_type`` spells them.
FAMILIES: tuple[str, ...] = ("llava", "llava_next")

#: The instruction Zhang et al. (CVPR 2025) append to every question.
ANSWER_INSTRUCTION = "Answer the question using a single word or phrase."

ANSWER_CUE = "ASSISTANT:"


#: Vicuna v1's system prompt, which the original LLaVA code (and Zhang et al.'s) puts first.
VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

#: Prompt styles: ``"hf"`` as llava-hf's chat templates render it; ``"zhang"`` as Zhang et al.'s
#: code builds it with the original LLaVA conversation template (system prompt, " \n").
PROMPT_STYLES: tuple[str, ...] = ("hf", "zhang")


def check_family(family: str) -> str:
    """Return ``family`` if it is one of :data:`FAMILIES`, else raise a ``ValueError``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {FAMILIES}")
    return family


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry; ``source`` is a hub id, or a directory name under :func:`models_dir`."""

    name: str
    family: str
    source: str
    local: bool
    description: str


#: Retrains of the embedded recipe (``pidlib.training.recipe.RECIPES``), committed beside the
#: two models above: three per-model seeds of each family on a second decoder ("B"), and
#: ``tiny-llava-1.5-b1``'s QA stage at planted language priors 0.5 and 0.9.
EMBEDDED_RETRAINS: tuple[str, ...] = (
    *(f"tiny-llava-{v}-b{k}" for v in ("1.5", "1.6") for k in (1, 2, 3)),
    "tiny-llava-1.5-b1-p0.5",
    "tiny-llava-1.5-b1-p0.9",
)


def _retrain_spec(name: str) -> ModelSpec:
    family = "llava_next" if name.startswith("tiny-llava-1.6") else "llava"
    return ModelSpec(name, family, name, True, f"retrain of the embedded recipe ({name})")


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
            "llava-1.5-7b-dryrun",
            "llava",
            "dryrun/llava-1.5-7b-dryrun",
            True,
            "LLaVA-1.5-7B's classes, widths and processor, 2 decoder layers, random weights (CPU)",
        ),
        ModelSpec(
            "llava-1.6-7b-dryrun",
            "llava_next",
            "dryrun/llava-1.6-7b-dryrun",
            True,
            "LLaVA-1.6-7B's classes, widths and processor, 2 decoder layers, random weights (CPU)",
        ),
        ModelSpec(
            "llava-1.6-13b",
            "llava_next",
            "llava-hf/llava-v1.6-vicuna-13b-hf",
            False,
            "LLaVA-1.6-13B (Vicuna-13B, anyres image grid)",
        ),
        *(_retrain_spec(name) for name in EMBEDDED_RETRAINS),
    )
}


def models_dir() -> Path:
    """Directory of the embedded models: ``$PIDBOOK_MODELS`` if set, else ``<repo>/data/models``."""
    env = os.environ.get("PIDBOOK_MODELS")
    return Path(env).expanduser() if env else REPO_ROOT / "data" / "models"


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
