"""Shared fixtures: tiny random-weight LLaVA and LLaVA-NeXT models built in memory, and samples.

Fixtures (all session-scoped, seeded, CPU, eval mode, gradients off; build time ~0.1 s each):

- ``tiny_tokenizer``: word-level tokenizer over :data:`TINY_WORDS` (+ the prompt words).
- ``tiny_llava`` / ``tiny_llava_next``: a :class:`pidlib.models.loaded.LoadedModel` of each class
  (3 decoder layers, hidden 32, 32x32 images in 8x8 patches -> 16 image tokens for LLaVA,
  base + anyres grid + newlines for NeXT).
- ``tiny_model``: parametrised over both families.
- ``tiny_samples``: four samples (different tasks, question lengths, image sizes; a question that
  repeats template words) whose images are in memory.
- ``tiny_task_samples``: six ChooseAttr samples (a single task), images of varied sizes.
- ``make_image(height, width, seed)``: a seeded random RGB PIL image.

Tests that add hooks to the shared models must remove them (use a context manager).
"""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pidlib.core.paths import REPO_ROOT
from pidlib.data.tasks import Sample
from pidlib.models.families import FAMILIES
from pidlib.models.loaded import LoadedModel
from pidlib.models.tiny import build_model, build_processor, build_tokenizer
from pidlib.models.tiny import tiny_config as _tiny_config

# One intra-op thread for the whole suite: the tiny models gain nothing from more, and
# oversubscribed threads on a busy 2-core machine slow some tests down tenfold.
torch.set_num_threads(1)

#: Vocabulary of the test tokenizer (the prompt words are added by build_tokenizer).
TINY_WORDS: tuple[str, ...] = tuple(
    "is the jar full or empty which color red blue green left right of side photo on yes no "
    "are there any cubes spheres that what do and have in common material shape metal rubber "
    "cube sphere big small coffee table mug this a".split()
)


def load_script(path: str) -> types.ModuleType:
    """A fresh module of the repository's script ``path`` (e.g. "scripts/build_book.py"), for
    tests that call or monkeypatch it."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO_ROOT / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TINY_IMAGE_SIZE = 32
TINY_PATCH_SIZE = 8


def make_tiny_model(family: str, tokenizer, *, layers: int = 3, seed: int = 0) -> LoadedModel:
    """A seeded random-weight tiny model of ``family`` wrapped as a LoadedModel (eval, no grad)."""
    config = _tiny_config(
        family,
        vocab_size=len(tokenizer),
        image_token_id=tokenizer.image_token_id,
        hidden=32,
        layers=layers,
        heads=2,
        vision_hidden=16,
        vision_layers=2,
        vision_heads=2,
        image_size=TINY_IMAGE_SIZE,
        patch_size=TINY_PATCH_SIZE,
    )
    processor = build_processor(
        family, tokenizer, image_size=TINY_IMAGE_SIZE, patch_size=TINY_PATCH_SIZE
    )
    model = build_model(config, seed=seed).eval().requires_grad_(False)
    return LoadedModel.from_parts(model, processor, name=f"test-{family}")


def _image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def make_image():
    """Factory: ``make_image(height, width, seed)`` -> a seeded random RGB PIL image."""
    return _image


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer(TINY_WORDS)


@pytest.fixture(scope="session")
def tiny_llava(tiny_tokenizer) -> LoadedModel:
    return make_tiny_model("llava", tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_llava_next(tiny_tokenizer) -> LoadedModel:
    return make_tiny_model("llava_next", tiny_tokenizer)


@pytest.fixture(scope="session", params=FAMILIES)
def tiny_model(request, tiny_llava, tiny_llava_next) -> LoadedModel:
    return {"llava": tiny_llava, "llava_next": tiny_llava_next}[request.param]


@pytest.fixture(scope="session")
def tiny_samples() -> list[Sample]:
    # (task, question, answer, options, image height x width); the last question repeats
    # template words ("the", "question", "answer"), so positions must come from offsets.
    q1 = "On which side of the photo is the red cube?"
    q3 = "Is the answer to the question a cube or a sphere?"
    specs = [
        ("ChooseAttr", "Is the jar full or empty?", "full", ("full", "empty"), (32, 32)),
        ("QueryAttr", q1, "left", ("left", "right"), (24, 56)),
        ("LogicalObj", "Are there any cubes?", "yes", ("yes", "no"), (56, 20)),
        ("ChooseCat", q3, "cube", ("cube", "sphere"), (48, 48)),
    ]
    return [
        Sample(
            qid=f"t{i}",
            task=task,
            question=q,
            answer=a,
            options=opts,
            image_id=f"img{i}",
            image=_image(h, w, seed=i),
        )
        for i, (task, q, a, opts, (h, w)) in enumerate(specs)
    ]


@pytest.fixture(scope="session")
def tiny_task_samples() -> list[Sample]:
    """Six ChooseAttr samples (one task, as per-task code needs), images of varied sizes."""
    specs = [
        ("Is the jar full or empty?", "empty", ("full", "empty"), (32, 32)),
        ("Is the cube red or blue?", "red", ("red", "blue"), (40, 24)),
        ("Is the sphere big or small?", "small", ("big", "small"), (24, 64)),
        ("Which color is the cube, red or green?", "green", ("red", "green"), (48, 48)),
        ("Is the metal cube big or small?", "big", ("big", "small"), (64, 32)),
        ("Is the jar red or blue?", "blue", ("red", "blue"), (30, 30)),
    ]
    return [
        Sample(f"a{i}", "ChooseAttr", q, a, opts, f"imga{i}", image=_image(h, w, seed=100 + i))
        for i, (q, a, opts, (h, w)) in enumerate(specs)
    ]
