"""The embedded models' recipe: sizes, data, seeds and stages of each model."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

from pidlib.data.minigqa.scenes import MiniGQAConfig
from pidlib.training.stages import StageSpec

__all__ = ["Recipe", "RECIPES"]

_FAMILY = {"tiny-llava-1.5": "llava", "tiny-llava-1.6": "llava_next"}


#: What the decoder's focus phases share (each replaces steps, focus and mixing).
_FOCUS = StageSpec(steps=1, batch=16, turns=8, lr=2e-3, warmup=50, aux=0.1, caption=True,
                   focus_ratio=1.0)  # fmt: skip
#: The tasks of the binding phases (CompareAttr stays in so that it is not forgotten: pilot SP1).
_SPATIAL = ("ChooseRel", "QueryAttr", "CompareAttr")


@dataclass(frozen=True)
class Recipe:
    """Everything that determines one embedded model (sizes, data, seeds, stages).

    Stage ``lm`` and then each ``lm_focus`` stage (shared by both models: the "tiny Vicuna")
    train the decoder on symbolic scenes; ``align`` trains vision tower + projector to produce
    those symbolic tokens from pixels (decoder frozen); ``qa`` fine-tunes projector + decoder
    (and the vision tower at ``vision_lr_mult`` x the learning rate; 0 = frozen) on QA turns
    about rendered images.
    """

    name: str
    family: str
    seed: int = 0
    lm_seed: int = 0
    hidden: int = 64
    layers: int = 8
    heads: int = 4
    intermediate: int = 256
    vision_hidden: int = 64
    vision_layers: int = 3
    vision_heads: int = 4
    image_size: int = 48
    patch_size: int = 16
    grid_pinpoints: tuple[tuple[int, int], ...] = ((48, 48), (48, 96), (96, 48), (96, 96))
    data: MiniGQAConfig = field(default_factory=MiniGQAConfig)
    lm_init_std: float = 0.08
    lm_mimetic: float = 1.0
    lm: StageSpec = StageSpec(steps=2400, batch=16, turns=8, lr=3e-3, aux=0.3, caption=True)
    lm_focus: tuple[StageSpec, ...] = (
        # CompareAttr takes off only after ~1500 steps with two CompareAttr scenes per
        # all-task scene (pilots C1-C3 in data/models/PILOTS.md); the binding phases alone,
        # at a third of that share, leave it at chance (T1, T2).
        replace(_FOCUS, steps=4000, focus=("CompareAttr",), focus_ratio=2.0, focus_mode="per_task"),
        # The decoder read an object's side partly from where its token sits (mirroring the
        # token order cost QueryAttr .91 -> .68): shuffle the order so that only the cell's own
        # row and column words tell (B1), then denser scenes, where answering from the whole
        # scene instead of the named object fails more often (B3).
        replace(
            _FOCUS,
            steps=3000,
            focus=_SPATIAL,
            focus_ratio=2.0,
            focus_mode="per_task",
            shuffle_cells=True,
        ),
        replace(
            _FOCUS,
            steps=3000,
            focus=(*_SPATIAL, "LogicalObj"),
            focus_ratio=2.0,
            focus_mode="per_task",
            shuffle_cells=True,
            objects=(3, 6),
        ),
    )
    align: StageSpec = StageSpec(steps=400, batch=64, turns=1, lr=3e-3, warmup=50)
    # One CompareAttr-only scene per all-task scene: the decoder leaves its phases with
    # CompareAttr near .8, and QA on pixels takes it past .9 (pilots R4, V1-V2).
    qa: StageSpec = StageSpec(
        steps=1000,
        batch=32,
        turns=8,
        lr=1e-3,
        warmup=50,
        aux=0.1,
        caption=True,
        focus=("CompareAttr",),
        focus_ratio=1.0,
        focus_mode="per_task",
    )
    vision_lr_mult: float = 0.0

    def __post_init__(self) -> None:
        if self.family not in ("llava", "llava_next"):
            raise ValueError(f"Recipe.family: expected 'llava' or 'llava_next', got {self.family}")
        if self.layers < 8:
            raise ValueError(
                f"Recipe.layers: the book needs >= 8 decoder layers, got {self.layers}"
            )
        if self.data.layout != "grid" or self.data.grid_size * self.data.cell_px != self.image_size:
            raise ValueError("Recipe.data: needs the grid layout with image side == image_size")
        if self.vision_lr_mult < 0:
            raise ValueError(f"Recipe.vision_lr_mult: expected >= 0, got {self.vision_lr_mult}")

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        d = asdict(self)
        d["data"] = self.data.to_dict()
        d["grid_pinpoints"] = [list(p) for p in self.grid_pinpoints]
        return d

    def lm_key(self) -> str:
        """Digest of what the shared decoder stage depends on (its checkpoint name)."""
        keys = (
            "lm_seed",
            "hidden",
            "layers",
            "heads",
            "intermediate",
            "lm_init_std",
            "lm_mimetic",
            "lm",
            "lm_focus",
        )
        d = {k: self.to_dict()[k] for k in keys} | {"data": self.data.to_dict()}
        return hashlib.blake2b(json.dumps(d, sort_keys=True).encode(), digest_size=6).hexdigest()


#: The two embedded models. They share the decoder stage; 1.6 also tunes its vision tower.
RECIPES: dict[str, Recipe] = {
    "tiny-llava-1.5": Recipe("tiny-llava-1.5", "llava", seed=15),
    "tiny-llava-1.6": Recipe("tiny-llava-1.6", "llava_next", seed=16, vision_lr_mult=0.1),
}
