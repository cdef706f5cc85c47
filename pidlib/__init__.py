"""pidlib: layer-wise partial information decomposition (PID Flow) of LLaVA-family models.

The public names are loaded lazily, so that ``import pidlib`` stays light and the pure
estimators never pull in ``transformers``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # estimators (numpy / scipy / torch only)
    "PID": "pidlib.gaussian",
    "gaussian_pid": "pidlib.gaussian",
    "gaussian_mi": "pidlib.gaussian",
    "pid_flow": "pidlib.flow",
    "PIDFlow": "pidlib.flow",
    "FlowConfig": "pidlib.flow",
    "canonical": "pidlib.canonical",
    # data
    "TASKS": "pidlib.tasks",
    "Sample": "pidlib.tasks",
    "MiniGQAConfig": "pidlib.minigqa",
    "generate": "pidlib.minigqa",
    "generate_scene_batch": "pidlib.minigqa",
    "make_scene": "pidlib.minigqa",
    "make_question": "pidlib.minigqa",
    "render": "pidlib.minigqa",
    "verify": "pidlib.minigqa",
    "verify_all": "pidlib.minigqa",
    "vocabulary": "pidlib.minigqa",
    "gallery": "pidlib.minigqa",
    "load_gqa_questions": "pidlib.gqa",
    "load_zhang_csv": "pidlib.gqa",
    # models
    "load_model": "pidlib.models",
    "LoadedModel": "pidlib.models",
    "KNOWN_MODELS": "pidlib.models",
    "save_embedded": "pidlib.models",
    "build_tokenizer": "pidlib.models",
    "build_processor": "pidlib.models",
    "tiny_config": "pidlib.models",
    "build_model": "pidlib.models",
    "encode": "pidlib.prompt",
    "Positions": "pidlib.prompt",
    "Encoded": "pidlib.prompt",
    "build_prompt": "pidlib.prompt",
    "first_token_logits": "pidlib.prompt",
    "greedy_answers": "pidlib.prompt",
    "answer_token_ids": "pidlib.prompt",
    "correct_mask": "pidlib.prompt",
    # layer-wise analysis
    "Features": "pidlib.features",
    "extract_features": "pidlib.features",
    "load_samples": "pidlib.datasets",
    "load_features": "pidlib.datasets",
    "layerwise_pid": "pidlib.layerwise",
    "KnockoutSpec": "pidlib.knockout",
    "sweep": "pidlib.knockout_sweep",
    "knockout_features": "pidlib.knockout_sweep",
    # configuration
    "load_profile": "pidlib.profiles",
    "Profile": "pidlib.profiles",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'pidlib' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    return mod if module.endswith("." + name) else getattr(mod, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
