"""Random-weight LLaVA-1.5 / 1.6 with the real classes, widths and processors, built on demand.

A dry run takes the GPU runner's exact path (llava-hf's processors on LLaMA's vocabulary, the 7B
models' vision tower, projector and 4096-wide decoder, all at their real widths) with two
decoder layers, two vision-tower layers (of 24: the tower was 45% of a LLaVA-1.5 forward and
63% of a LLaVA-1.6 one on 2 cores) and random weights, so it fits a CPU. The checkpoints are
written once to ``models_dir()/dryrun/<name>`` (git-ignored, about 1.4 GB each in bfloat16) and
then load like any local checkpoint; a folder built by another recipe is built again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pidlib.models.families import KNOWN_MODELS, models_dir

__all__ = ["DRYRUN_LAYERS", "DRYRUN_VISION_LAYERS", "is_dryrun", "dryrun_dir", "ensure_dryrun"]

#: Decoder layers of the dry-run models (the released 7B models have 32).
DRYRUN_LAYERS = 2
#: CLIP tower layers of the dry-run models (24 released; features come from the penultimate).
DRYRUN_VISION_LAYERS = 2


def is_dryrun(name: str | os.PathLike) -> bool:
    """Whether ``name`` is a registry name of a dry-run model."""
    spec = KNOWN_MODELS.get(os.fspath(name))
    return bool(spec and spec.local and spec.source.startswith("dryrun/"))


def dryrun_dir(name: str) -> Path:
    """Where the dry-run model ``name`` is (or will be) saved."""
    if not is_dryrun(name):
        raise ValueError(f"{name!r} is not a dry-run model")
    return models_dir() / KNOWN_MODELS[name].source


def ensure_dryrun(name: str | os.PathLike, *, seed: int = 0) -> Path | None:
    """Build and save the dry-run model ``name`` if it is not on disk yet; its folder (``None``
    for any other model). Weights are seeded (``seed``), saved in bfloat16 (safetensors), with
    the processor and a ``model_card.json`` that says they are random."""
    if not is_dryrun(name):
        return None
    import torch

    from pidlib.models.llava_hf import llava_hf_config, llava_hf_processor
    from pidlib.models.tiny import build_model

    name = os.fspath(name)
    folder = dryrun_dir(name)
    family = KNOWN_MODELS[name].family
    card = {
        "name": name,
        "family": family,
        "weights": f"random (seed {seed})",
        "decoder_layers": DRYRUN_LAYERS,
        "vision_layers": DRYRUN_VISION_LAYERS,
        "purpose": "CPU dry run of the real LLaVA path",
    }
    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        try:
            if json.loads((folder / "model_card.json").read_text()) == card:
                return folder
        except (OSError, ValueError):
            pass  # an older or damaged recipe: built again below
    config = llava_hf_config(family, layers=DRYRUN_LAYERS, vision_layers=DRYRUN_VISION_LAYERS)
    model = build_model(config, seed)
    tmp = folder.with_name(folder.name + ".partial")
    model.to(torch.bfloat16).save_pretrained(tmp)
    llava_hf_processor(family).save_pretrained(tmp)
    (tmp / "model_card.json").write_text(json.dumps(card, indent=1))
    del model
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder
