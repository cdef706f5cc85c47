"""Fail-fast checks of the files a profile names: local model folders and real GQA data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pidlib.core.paths import REPO_ROOT
from pidlib.models.dryrun import is_dryrun
from pidlib.models.families import KNOWN_MODELS, resolve_model

__all__ = ["resolve_data_path", "check_profile_paths"]


def resolve_data_path(raw: str) -> Path:
    """A profile's data path as the loaders read it: absolute; else relative to the working
    directory when it exists there; else relative to the repository root."""
    path = Path(raw).expanduser()
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    return path


def _check_models(profile: str, models: Sequence[str]) -> None:
    for i, name in enumerate(models):
        if is_dryrun(name):  # random-weight dry-run models are built on first use
            continue
        try:
            source, local = resolve_model(name)
        except ValueError as err:
            raise ValueError(f"profile {profile}: models[{i}]: {err}") from None
        if local and not (Path(source) / "config.json").is_file():
            fix = ("retrain it (python -m pidlib.training) or set PIDBOOK_MODELS to the folder "
                   "that holds the embedded models" if name in KNOWN_MODELS
                   else "pass a folder holding config.json and the weights")  # fmt: skip
            raise FileNotFoundError(
                f"profile {profile}: models[{i}] {name!r}: no model at {source} "
                f"(config.json missing); {fix}"
            )


def check_profile_paths(profile: str, models: Sequence[str], dataset: Any) -> None:
    """Raise ``FileNotFoundError`` naming the key and the path when a local model folder
    (``models``) or a real-GQA path (``dataset.questions``, ``dataset.images``) is missing or of
    the wrong kind; hub ids are left to :func:`~pidlib.models.load.load_model`."""
    _check_models(profile, models)
    if dataset.name == "minigqa" or getattr(dataset, "make", None):  # generated on first use
        return
    wanted = {
        "questions": ("file", "the GQA balanced questions JSON")
        if dataset.name == "gqa"
        else ("any", "a folder of Zhang et al.'s task CSVs, or one CSV"),
        "images": ("dir", "a folder of <imageId>.jpg"),
    }
    for key, (kind, what) in wanted.items():
        raw = getattr(dataset, key)
        path = resolve_data_path(raw)
        ok = {"file": path.is_file, "dir": path.is_dir, "any": path.exists}[kind]()
        if not ok:
            kind_found = "a folder" if path.is_dir() else "a file"
            found = f"is {kind_found}" if path.exists() else "not found"
            raise FileNotFoundError(
                f"profile {profile}: dataset.{key} {raw!r} {found} (looked in the working "
                f"directory and {REPO_ROOT}); it must be {what}. See the README on getting GQA."
            )
