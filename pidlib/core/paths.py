"""The one place the repository root is computed; every other path is derived from it."""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPO_ROOT", "build_dir"]

#: The checkout pidlib runs from (``pidlib/`` lives directly under it).
REPO_ROOT: Path = Path(__file__).resolve().parents[2]


def build_dir(profile: str) -> Path:
    """Where a profile's executed chapters, claims and timings go: ``build/<profile>/``."""
    return REPO_ROOT / "build" / profile
