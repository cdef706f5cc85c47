"""Keeping the model hub's client off the network for the length of a ``with`` block."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["OFFLINE_ENV", "hub_offline"]

#: Environment variables the hub client and transformers read to stay offline and send nothing.
OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}

#: The same switches as huggingface_hub caches them at import time (``huggingface_hub.constants``).
_CONSTANTS = ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")


@contextlib.contextmanager
def hub_offline(offline: bool = True) -> Iterator[None]:
    """Inside the block the hub client makes no request (``offline=False``: does nothing).

    ``local_files_only=True`` alone is not enough with huggingface_hub 2.x: building request
    headers looks up a registry of agent harnesses over the network. That lookup, telemetry and
    every download check ``huggingface_hub.constants.HF_HUB_OFFLINE``, read once at import, so
    the switch is set on the module as well as in the environment; both are restored after.
    """
    if not offline:
        yield
        return
    from huggingface_hub import constants

    env = {k: os.environ.get(k) for k in OFFLINE_ENV}
    const = {k: getattr(constants, k) for k in _CONSTANTS if hasattr(constants, k)}
    os.environ.update(OFFLINE_ENV)
    for k in const:
        setattr(constants, k, True)
    try:
        yield
    finally:
        for k, v in const.items():
            setattr(constants, k, v)
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
