"""A model folder's integrity: sha256 of every file in its card, readable weights, finite values."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pidlib.core.hashing import file_sha256

__all__ = ["CARD", "file_checksums", "write_checksums", "check_folder", "check_finite"]

#: The model card's file name; its ``sha256`` entry maps each file of the folder to its digest.
CARD = "model_card.json"

#: Files a checksum does not cover: the card itself (it holds the digests) and the prose.
_UNHASHED = frozenset({CARD, "README.md", ".gitattributes"})

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def _hashed_files(folder: Path) -> list[Path]:
    names = (f for f in folder.iterdir() if f.name not in _UNHASHED and not f.name.startswith("."))
    return sorted(f for f in names if f.is_file())


def file_checksums(folder: str | Path) -> dict[str, str]:
    """``{file name: hex sha256}`` of every weight, config, processor and tokenizer file."""
    return {f.name: file_sha256(f) for f in _hashed_files(Path(folder))}


def write_checksums(folder: str | Path) -> dict[str, str]:
    """Record :func:`file_checksums` as the ``sha256`` entry of ``folder``'s model card (which
    must exist; the rest of the card is kept as it is); returns the digests."""
    path = Path(folder) / CARD
    if not path.is_file():
        raise FileNotFoundError(f"no model card at {path}: save the model with save_embedded")
    card = json.loads(path.read_text())
    card["sha256"] = file_checksums(folder)
    path.write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    return card["sha256"]


def _verify_card(folder: Path, card: dict) -> None:
    sums = card.get("sha256")
    if sums is None:
        return
    if not isinstance(sums, dict):
        raise ValueError(f"{folder / CARD}: 'sha256' must map file names to digests")
    for name, want in sorted(sums.items()):
        f = folder / name
        if not f.is_file():
            raise FileNotFoundError(
                f"{f} is missing: the model card lists it (sha256 {str(want)[:12]}...); restore "
                "the file (e.g. git checkout / download it again) or retrain the model"
            )
        got = file_sha256(f)
        if got != want:
            raise ValueError(
                f"{f} is corrupt or was changed: its sha256 is {got[:12]}..., the model card "
                f"({CARD}) records {str(want)[:12]}...; restore the file (e.g. git checkout / "
                "download it again) or retrain the model, which rewrites the card"
            )
    unlisted = [f.name for f in _hashed_files(folder)
                if f.suffix in _WEIGHT_SUFFIXES and f.name not in sums]  # fmt: skip
    if unlisted:
        raise ValueError(
            f"{folder}: weight file(s) {unlisted} are not covered by the model card's sha256 "
            "entry; remove them, or record them with pidlib.models.checksums.write_checksums"
        )


def _check_safetensors(folder: Path) -> None:
    from safetensors import SafetensorError, safe_open

    for f in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(f, framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise ValueError(
                f"{f} is not a readable safetensors file ({err}); it is truncated or corrupt: "
                "restore it or save the model again"
            ) from err


def _check_tokenizer(folder: Path) -> None:
    if (folder / "tokenizer_config.json").is_file() and not any(
        (folder / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "vocab.json")
    ):
        raise FileNotFoundError(
            f"{folder / 'tokenizer.json'} is missing: the processor's tokenizer cannot be built "
            "without it; copy it back from the original model or save the model again"
        )


def check_folder(folder: str | Path, *, verify: bool = True) -> dict:
    """Check a local model folder before loading it; returns its model card (``{}`` if none).

    ``verify``: every file the card's ``sha256`` entry lists must exist with that digest, and
    no weight file may be unlisted. Always: each ``*.safetensors`` header must parse and the
    tokenizer file must be present. Errors name the file to fix.
    """
    folder = Path(folder)
    path = folder / CARD
    card = json.loads(path.read_text()) if path.is_file() else {}
    if not isinstance(card, dict):
        raise ValueError(f"{path}: expected a JSON object")
    if verify:
        _verify_card(folder, card)
    _check_safetensors(folder)
    _check_tokenizer(folder)
    return card


def check_finite(model: torch.nn.Module, source: str) -> None:
    """Refuse a model with NaN or infinite weights, naming the first tensors that hold them."""
    bad = [name for name, p in model.named_parameters()
           if p.is_floating_point() and not bool(torch.isfinite(p).all())]  # fmt: skip
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(
            f"{source}: {len(bad)} weight tensor(s) hold NaN or inf ({shown}); the checkpoint is "
            "corrupt or training diverged: restore or retrain it"
        )
