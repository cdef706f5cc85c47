"""Loading a real model whose weights are absent makes no network request (the network blocked)."""

from __future__ import annotations

import os
import socket

import pytest

from pidlib.models.load import load_model
from pidlib.models.offline import OFFLINE_ENV, hub_offline


@pytest.fixture
def blocked_network(monkeypatch, tmp_path):
    """Every connection attempt and name lookup is recorded and refused; the hub client starts
    online, with no cached agent registry (so it would fetch one), and an empty cache."""
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent

    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for k in OFFLINE_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", False)
    if hasattr(constants, "AGENT_HARNESSES_PATH"):
        monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agents.json"))
    monkeypatch.setattr(_detect_agent, "_registry", None, raising=False)
    return attempts


def test_absent_weights_fail_without_any_request(blocked_network, tmp_path):
    with pytest.raises(
        OSError, match="'llava-hf/llava-1.5-7b-hf' are not on disk.*downloading is off"
    ):
        load_model("llava-1.5-7b", cache_dir=tmp_path / "cache")
    assert blocked_network == []


def test_the_blocked_network_catches_the_hub_clients_lookup(blocked_network):
    """The check above has teeth: online, merely building the hub's request headers (as every
    ``from_pretrained`` does, ``local_files_only`` or not) reaches for the network."""
    from huggingface_hub.utils import build_hf_headers

    build_hf_headers()
    assert blocked_network
    blocked_network.clear()
    from huggingface_hub.utils import _detect_agent

    _detect_agent._registry = None
    with hub_offline():
        build_hf_headers()
    assert blocked_network == []


def test_hub_offline_restores_what_it_changed(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with hub_offline():
        assert constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"
        assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert constants.HF_HUB_OFFLINE is False and os.environ["HF_HUB_OFFLINE"] == "0"
    assert "TRANSFORMERS_OFFLINE" not in os.environ
    with hub_offline(False):
        assert constants.HF_HUB_OFFLINE is False
