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
    "PID": "pidlib.gaussian",
    "gaussian_pid": "pidlib.gaussian",
    "gaussian_mi": "pidlib.gaussian",
    "pid_flow": "pidlib.flow",
    "PIDEstimate": "pidlib.flow",
    "canonical": "pidlib.canonical",
    "TASKS": "pidlib.tasks",
    "Sample": "pidlib.tasks",
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
