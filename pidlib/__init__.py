"""pidlib: layer-wise partial information decomposition (PID Flow) of LLaVA-family models.

The public names are loaded lazily, so that ``import pidlib`` stays light and the pure
estimators never pull in ``transformers``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the one module that defines it
_EXPORTS: dict[str, str] = {
    # estimators (numpy / scipy / torch only)
    "PID": "pidlib.pid.result",
    "gaussian_mi": "pidlib.pid.gaussian",
    "gaussian_pid": "pidlib.pid.gaussian",
    "FlowConfig": "pidlib.pid.flow_nets",
    "PIDFlow": "pidlib.pid.maps",
    "pid_flow": "pidlib.pid.flow",
    # configuration
    "Profile": "pidlib.config.profiles",
    "load_profile": "pidlib.config.profiles",
    # models and features
    "LoadedModel": "pidlib.models.loaded",
    "load_model": "pidlib.models.load",
    "Features": "pidlib.extract.features",
    "extract_features": "pidlib.extract.features",
    "load_samples": "pidlib.book.inputs",
    "load_features": "pidlib.book.inputs",
    # layer-wise analysis and interventions
    "layerwise_pid": "pidlib.analysis.layerwise",
    "KnockoutSpec": "pidlib.interventions.spec",
    "knockout": "pidlib.interventions.knockout",
    "sweep": "pidlib.interventions.sweep",
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
