"""Provenance recorded with every result: git commit, package versions, platform, hardware."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

from pidlib.core.paths import REPO_ROOT

__all__ = ["PACKAGES", "provenance"]

#: The packages whose versions every result records.
PACKAGES: tuple[str, ...] = (
    "pidlib", "numpy", "scipy", "torch", "transformers", "nflows", "scikit-learn",
)  # fmt: skip


def _git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("-dirty" if dirty else "")


def provenance() -> dict[str, Any]:
    """Git commit, package versions, Python, platform and hardware: stored with every result."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    hw: dict[str, Any] = {"cpus": os.cpu_count(), "machine": platform.machine()}
    if "torch" in sys.modules:
        import torch

        hw["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            hw["gpu"] = torch.cuda.get_device_name(0)
    return {
        "git_commit": _git_commit(),
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hardware": hw,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
