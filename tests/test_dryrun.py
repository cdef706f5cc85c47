"""The llava-dryrun path, cheap parts: real 7B configs, the registry, the GQA-format folder and the
profile's questions read by the real GQA loader (building the 2 GB models is the book's job)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from pidlib.book.inputs import load_samples
from pidlib.config.profiles import load_profile
from pidlib.data.gqa import load_gqa_questions
from pidlib.data.minigqa.gqa_format import write_gqa_folder
from pidlib.data.tasks import TASKS
from pidlib.models.dryrun import (
    DRYRUN_LAYERS,
    DRYRUN_VISION_LAYERS,
    dryrun_dir,
    ensure_dryrun,
    is_dryrun,
)
from pidlib.models.families import models_dir
from pidlib.models.llava_hf import llava_hf_config
from pidlib.models.tiny import model_class


def _n_params(config) -> int:
    with torch.device("meta"):
        model = model_class(config.model_type)(config)
    return sum(p.numel() for p in model.parameters())


def test_real_configs_have_the_7b_models_sizes():
    """32 layers give LLaVA-1.5-7B's 7,063,427,072 parameters; 1.6 adds one image_newline."""
    n15 = _n_params(llava_hf_config("llava"))
    n16 = _n_params(llava_hf_config("llava_next"))
    assert n15 == 7_063_427_072
    assert n16 - n15 == 4096
    assert llava_hf_config("llava").vision_config.num_hidden_layers == 24
    small = llava_hf_config("llava", layers=DRYRUN_LAYERS, vision_layers=DRYRUN_VISION_LAYERS)
    assert small.text_config.hidden_size == 4096 and small.vision_config.hidden_size == 1024
    assert small.vision_config.num_hidden_layers == 2 and small.vision_feature_layer == -2
    with pytest.raises(ValueError, match="layers"):
        llava_hf_config("llava", layers=0)
    with pytest.raises(ValueError, match="vision_layers"):
        llava_hf_config("llava", vision_layers=1)  # no penultimate layer to read


def test_a_dryrun_model_of_another_recipe_is_built_again(tmp_path, monkeypatch):
    """A folder whose model card names another recipe (e.g. the earlier 24-layer tower) is
    replaced; one with this recipe's card is kept as it is."""
    import pidlib.models.tiny as tiny

    monkeypatch.setattr("pidlib.models.dryrun.models_dir", lambda: tmp_path)
    built = []

    class _Model:
        def to(self, dtype):
            return self

        def save_pretrained(self, path):
            path.mkdir(parents=True)
            (path / "config.json").write_text("{}")
            (path / "model.safetensors").write_bytes(b"x")

    def fake_build(config, seed):
        built.append(config.vision_config.num_hidden_layers)
        return _Model()

    monkeypatch.setattr(tiny, "build_model", fake_build)
    monkeypatch.setattr(
        "pidlib.models.llava_hf.llava_hf_processor",
        lambda family: type("P", (), {"save_pretrained": lambda s, p: None})(),
    )
    folder = ensure_dryrun("llava-1.5-7b-dryrun")
    assert built == [DRYRUN_VISION_LAYERS] and (folder / "model_card.json").is_file()
    ensure_dryrun("llava-1.5-7b-dryrun")
    assert built == [DRYRUN_VISION_LAYERS]  # same recipe: kept
    card = json.loads((folder / "model_card.json").read_text())
    (folder / "model_card.json").write_text(json.dumps({**card, "vision_layers": 24}))
    ensure_dryrun("llava-1.5-7b-dryrun")
    assert built == [DRYRUN_VISION_LAYERS] * 2


def test_registry():
    assert is_dryrun("llava-1.5-7b-dryrun") and is_dryrun("llava-1.6-7b-dryrun")
    assert not is_dryrun("llava-1.5-7b") and not is_dryrun("tiny-llava-1.5")
    assert dryrun_dir("llava-1.6-7b-dryrun") == models_dir() / "dryrun" / "llava-1.6-7b-dryrun"
    assert ensure_dryrun("tiny-llava-1.5") is None  # other models are never built
    with pytest.raises(ValueError, match="not a dry-run model"):
        dryrun_dir("llava-1.5-7b")


def test_gqa_folder_reads_like_gqa(tmp_path):
    folder = write_gqa_folder(tmp_path / "gqa", 4)
    raw = json.loads((folder / "val_balanced_questions.json").read_text())
    assert len(raw) == 4 * len(TASKS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped
        samples = load_gqa_questions(folder / "val_balanced_questions.json", folder / "images",
                                     check_images=True)  # fmt: skip
    assert len(samples) == len(raw)
    for s in samples:
        rec = raw[s.qid]
        assert s.answer == rec["answer"] and s.answer in s.options
        if s.task == "ChooseRel":  # programs say "to the left of", options stay "left"/"right"
            assert "to the" in rec["semantic"][1]["argument"]
            assert set(s.options) == {"left", "right"}
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    write_gqa_folder(folder, 4)  # same request: nothing rewritten
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp


def test_dryrun_profile(tmp_path):
    cfg = load_profile("llava-dryrun")
    assert cfg.models == ("llava-1.5-7b-dryrun", "llava-1.6-7b-dryrun")
    assert not cfg.correct_only and cfg.device == "cpu" and cfg.dataset.make == "minigqa"
    q = tmp_path / "gqa" / "val_balanced_questions.json"
    cfg = load_profile("llava-dryrun", **{"dataset.questions": str(q),
                                          "dataset.images": str(q.parent / "images")})  # fmt: skip
    samples = load_samples(cfg, cache=False)
    # No correct filter: the pool is exactly samples_per_task, no oversampling.
    assert {t: len(v) for t, v in samples.items()} == dict.fromkeys(TASKS, cfg.samples_per_task)
    bad = load_profile("llava-dryrun", **{"dataset.questions": str(q),
                                          "dataset.images": str(tmp_path)})  # fmt: skip
    with pytest.raises(ValueError, match="'images' folder beside"):
        load_samples(bad)
    with pytest.raises(ValueError, match="dataset.make"):
        load_profile("llava-dryrun", **{"dataset.make": "clevr"})
