"""Fault injection, model files (issue 18, cases 1 and 7): corrupt, NaN, truncated or incomplete
weights are refused with an error that names the file, never loaded silently."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import make_tiny_model
from safetensors.torch import load_file, save_file

from pidlib.models.cards import stage_minutes
from pidlib.models.checksums import file_checksums, write_checksums
from pidlib.models.families import EMBEDDED_RETRAINS, models_dir
from pidlib.models.load import load_model
from pidlib.training.report import save_embedded

pytestmark = pytest.mark.faults

EMBEDDED = ("tiny-llava-1.5", "tiny-llava-1.6", *EMBEDDED_RETRAINS)


@pytest.fixture
def model_copy(tmp_path):
    """A copy of the committed tiny-llava-1.5 folder (3 MB), card and all."""
    return shutil.copytree(models_dir() / "tiny-llava-1.5", tmp_path / "tiny")


def _flip_data_bytes(path, n=64):
    """Invert ``n`` bytes spread over the tensor data, leaving the safetensors header intact."""
    raw = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")
    for i in range(start, len(raw), max(1, (len(raw) - start) // n)):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("name", EMBEDDED)
def test_committed_cards_hold_the_files_checksums(name):
    card = json.loads((models_dir() / name / "model_card.json").read_text())
    assert card["sha256"] == file_checksums(models_dir() / name)
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(card["sha256"])


@pytest.mark.parametrize("name", EMBEDDED_RETRAINS)
def test_retrains_answer_from_the_image(name):
    """Every committed retrain answers from the image (>= .9 on every task with its own image)
    and not without it (blank and mismatched images within .15 of chance on average), and its
    card says which decoder and prior it was trained with."""
    card = json.loads((models_dir() / name / "model_card.json").read_text())
    ev = card["evaluation"]
    assert min(ev["accuracy"]["image"].values()) >= 0.9
    chance = sum(ev["chance"].values()) / len(ev["chance"])
    for cond in ("blank", "mismatched"):
        acc = ev["accuracy"][cond]
        assert abs(sum(acc.values()) / len(acc) - chance) < 0.15, cond
    assert card["decoder"] == "B" and card["minutes"]["per_model"] > 0
    minutes = stage_minutes(card["stages"])  # the split the training page reads
    assert {k: round(v, 2) for k, v in minutes.items()} == card["minutes"]
    assert ("evaluation_at_prior" in card) == (card["recipe"]["qa_prior"] > 0)


@pytest.mark.parametrize("name", EMBEDDED_RETRAINS)
def test_retrain_cards_hold_a_full_retiming_on_two_cores(name):
    """Every retrain's card holds its own stages and its decoder's re-timed with every step of
    its recipe on 2 threads (``bench_training.py --fraction 1 --record``), each with the
    commit and date it was measured at, and the minutes are the stages' seconds."""
    from pidlib.training.recipe import RECIPES

    recipe = RECIPES[name]
    timing = json.loads((models_dir() / name / "model_card.json").read_text())["idle_timing"]
    steps = {"per_model": [recipe.align.steps, recipe.qa.steps],
             "decoder": [recipe.lm.steps, *(s.steps for s in recipe.lm_focus)]}  # fmt: skip
    for kind, full in steps.items():
        t = timing[kind]
        assert [g["steps"] for g in t["stages"]] == full, kind
        assert t["threads"] == 2 and t["commit"] and t["date"]
        assert t["minutes"] == pytest.approx(sum(g["seconds"] for g in t["stages"]) / 60, abs=0.01)


def test_save_embedded_records_every_files_checksum(tiny_llava, tmp_path):
    out = save_embedded(tiny_llava, tmp_path / "m", {"description": "test"})
    card = json.loads((out / "model_card.json").read_text())
    assert card["sha256"] == file_checksums(out)
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(card["sha256"])
    load_model(out)  # verifies against the card


def test_flipped_weight_bytes_are_refused_naming_the_file(model_copy):
    """Case 1: bytes flipped inside model.safetensors (header intact) loaded silently."""
    _flip_data_bytes(model_copy / "model.safetensors")
    with pytest.raises(ValueError, match=r"model\.safetensors is corrupt or was changed"):
        load_model(model_copy, check=True)


def test_a_changed_config_is_refused(model_copy):
    cfg = model_copy / "config.json"
    cfg.write_text(cfg.read_text().replace('"eager"', '"sdpa"', 1) + " ")
    with pytest.raises(ValueError, match=r"config\.json is corrupt or was changed"):
        load_model(model_copy)


def test_nan_weights_are_refused_naming_the_tensor(model_copy):
    """Case 1: NaN weights (saved with a card that matches them, as a diverged run would)."""
    path = model_copy / "model.safetensors"
    tensors = load_file(path)
    name = sorted(k for k, t in tensors.items() if t.is_floating_point())[0]
    tensors[name][0] = float("nan")
    save_file(tensors, path, metadata={"format": "pt"})
    write_checksums(model_copy)
    with pytest.raises(ValueError, match=r"hold NaN or inf \(.*" + name.split(".")[-1]):
        load_model(model_copy, check=True)


def test_inf_weights_of_an_in_memory_save_are_refused(tiny_tokenizer, tmp_path):
    loaded = make_tiny_model("llava", tiny_tokenizer)
    with torch.no_grad():
        next(loaded.model.parameters()).view(-1)[0] = float("inf")
    out = save_embedded(loaded, tmp_path / "m", {})
    with pytest.raises(ValueError, match="NaN or inf"):
        load_model(out)


def test_truncated_safetensors_error_names_the_file(model_copy):
    """Case 7: safetensors' own error ('incomplete metadata') named no file."""
    (model_copy / "model_card.json").unlink()  # no checksums: the header check must catch it
    path = model_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{path}.*not a readable safetensors file"):
        load_model(model_copy)


def test_truncated_safetensors_with_a_card_names_the_file(model_copy):
    path = model_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"{path} is corrupt"):
        load_model(model_copy)


@pytest.mark.parametrize("card", [True, False])
def test_missing_tokenizer_json_is_named(model_copy, card):
    """Case 7: a missing tokenizer.json surfaced as "Couldn't instantiate the backend tokenizer"."""
    if not card:
        (model_copy / "model_card.json").unlink()
    (model_copy / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json is missing"):
        load_model(model_copy)


def test_unlisted_weight_files_are_refused(model_copy):
    shutil.copy(model_copy / "model.safetensors", model_copy / "extra.safetensors")
    with pytest.raises(ValueError, match=r"\['extra.safetensors'\] are not covered"):
        load_model(model_copy)


def test_check_false_skips_the_checksums(model_copy):
    _flip_data_bytes(model_copy / "model.safetensors", n=4)
    load_model(model_copy, check=False)  # the caller asked for no checks
