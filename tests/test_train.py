"""Tests of the training recipe: data invariants, the stage loop, a few-step smoke run, save."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from pidlib.data.minigqa.questions import generate
from pidlib.data.minigqa.scenes import MiniGQAConfig, make_scene
from pidlib.models.answers import greedy_answers
from pidlib.models.load import load_model
from pidlib.models.loaded import LoadedModel
from pidlib.models.prompt import build_prompt
from pidlib.training.data import (
    EXTRA_WORDS,
    TokenCache,
    build_sequence,
    cell_words,
    collate,
    image_feature_cells,
    model_words,
)
from pidlib.training.evaluate import chance_level, swap_images
from pidlib.training.recipe import RECIPES, Recipe
from pidlib.training.report import save_embedded
from pidlib.training.run import initial_model, train_decoder, train_model
from pidlib.training.stages import StageSpec, run_stage, symbolic_inputs, symbolic_tokens

TINY = StageSpec(steps=2, batch=3, turns=2, warmup=1)


def _tiny_recipe(name: str) -> Recipe:
    return replace(
        RECIPES[name],
        hidden=32,
        intermediate=64,
        heads=2,
        vision_hidden=16,
        vision_heads=2,
        vision_layers=2,
        lm=replace(TINY, aux=0.5),
        lm_focus=(
            replace(
                TINY,
                caption=True,
                focus=("ChooseRel",),
                focus_mode="per_task",
                shuffle_cells=True,
                objects=(3, 5),
            ),
        ),
        align=TINY,
        qa=TINY,
    )


@pytest.fixture(scope="module")
def recipe15():
    return _tiny_recipe("tiny-llava-1.5")


def test_cell_words_cover_every_object_once():
    rng = np.random.default_rng(3)
    scene = make_scene(rng, MiniGQAConfig())
    words = cell_words(scene)
    assert len(words) == 9
    objects = [w for w in words if w[0] != "empty"]
    assert len(objects) == len(scene.objects)
    for o in scene.objects:
        r, c = o.cell
        assert words[3 * r + c][:4] == [o.shape, o.color, o.size, o.material]
    assert set(model_words(MiniGQAConfig())) >= set(EXTRA_WORDS)


def test_cell_words_reject_free_layout():
    rng = np.random.default_rng(0)
    scene = make_scene(rng, MiniGQAConfig(layout="free", image_px=64))
    with pytest.raises(ValueError, match="grid"):
        cell_words(scene)


#: One recipe per code path: the two families, and a QA stage at a planted prior.
PATHS = ("tiny-llava-1.5", "tiny-llava-1.6", "tiny-llava-1.5-b1-p0.9")


@pytest.mark.parametrize("name", PATHS[:2])
def test_first_turn_equals_the_evaluation_prompt(name):
    """The training sequence's first turn is token-for-token what the processor makes."""
    recipe = _tiny_recipe(name)
    model, proc, tok = initial_model(recipe)
    s = generate(["ChooseRel"], 1, split="val", seed=1)[0]
    enc = proc(
        images=[s.image], text=[build_prompt(s.question, recipe.family)], return_tensors="pt"
    )
    n_img = int((enc["input_ids"] == tok.convert_tokens_to_ids("<image>")).sum())
    ids, labels = build_sequence(TokenCache(tok), [(s.question, s.answer), ("what", "yes")], n_img)
    prompt = enc["input_ids"][0].tolist()
    assert ids[: len(prompt)] == prompt
    answer = tok(s.answer, add_special_tokens=False)["input_ids"]
    assert ids[len(prompt)] == answer[0]
    supervised = [t for t in labels if t != -100]
    assert supervised == [*answer, tok.eos_token_id, tok.convert_tokens_to_ids("yes"), 2]
    # the feature layout the recipe assumes is the model's own
    feats = model.model.get_image_features(
        **{k: v for k, v in enc.items() if k in ("pixel_values", "image_sizes")}
    )
    feats = getattr(feats, "pooler_output", feats)
    assert len(image_feature_cells(recipe.family, int(feats[0].shape[0]))) == n_img


def test_symbolic_inputs_place_cell_tokens(recipe15):
    model, _, tok = initial_model(recipe15)
    tc = TokenCache(tok)
    rng = np.random.default_rng(5)
    scenes = [make_scene(rng, MiniGQAConfig()) for _ in range(2)]
    seqs = [build_sequence(tc, [("is the circle red or blue ?", "red")], 9)] * 2
    batch = collate(seqs, [tc.cells(s) for s in scenes], tc.pad_id)
    emb = model.get_input_embeddings()
    x = symbolic_inputs(emb, batch, tc.image_id, image_feature_cells("llava", 9))
    sym = symbolic_tokens(emb, batch.cells)
    pos = (batch.input_ids[0] == tc.image_id).nonzero().flatten()
    torch.testing.assert_close(x[1, pos], sym[1])
    # an independent computation for one cell: sum of its word embeddings / sqrt(#words)
    words = cell_words(scenes[1])[4]
    ids = torch.tensor([tc(w)[0] for w in words])
    torch.testing.assert_close(sym[1, 4], emb(ids).sum(0) / len(words) ** 0.5)
    other = (batch.input_ids[0] != tc.image_id).nonzero().flatten()
    torch.testing.assert_close(x[0, other], emb(batch.input_ids[0, other]))


def test_stage_spec_and_recipe_validation():
    with pytest.raises(ValueError, match="steps"):
        StageSpec(steps=0)
    with pytest.raises(ValueError, match="aux"):
        StageSpec(steps=1, aux=1.5)
    with pytest.raises(ValueError, match="layers"):
        replace(RECIPES["tiny-llava-1.5"], layers=4)
    with pytest.raises(ValueError, match="family"):
        replace(RECIPES["tiny-llava-1.5"], family="blip")


def test_run_stage_fits_a_least_squares_problem():
    """The optimisation loop reaches the closed-form least-squares solution's loss."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(256, generator=g)
    w = torch.nn.Parameter(torch.zeros(4))
    best = torch.linalg.lstsq(x, y[:, None]).solution.flatten()
    floor = float(((x @ best - y) ** 2).mean())
    spec = StageSpec(steps=400, lr=0.05, warmup=10, weight_decay=0.0)
    log = run_stage(
        "lsq", [w], lambda _: ((x @ w - y) ** 2).mean(), lambda: None, spec, progress=False
    )
    assert log.loss_end < 1.05 * floor + 1e-4 < log.loss_start
    torch.testing.assert_close(w.detach(), best, atol=0.02, rtol=0)


def test_swap_images_and_chance():
    samples = generate(["QueryAttr", "CompareAttr"], 4, split="val", seed=2)
    mism = swap_images(samples, "mismatched")
    assert all(a.image_id != b.image_id for a, b in zip(samples, mism, strict=True))
    blank = swap_images(samples, "blank")
    assert len({b.load_image().tobytes() for b in blank}) == 1
    assert chance_level(samples) == pytest.approx({"QueryAttr": 0.5, "CompareAttr": 1 / 3})
    with pytest.raises(ValueError, match="condition"):
        swap_images(samples, "noise")


@pytest.mark.slow
@pytest.mark.parametrize("name", PATHS)
def test_smoke_train_save_load(name, tmp_path):
    """A few steps of every stage, then save_pretrained / load_model reproduce the logits."""
    recipe = _tiny_recipe(name)
    state, lm_logs = train_decoder(recipe, workdir=tmp_path / "work", progress=False)
    assert [g.name for g in lm_logs] == ["lm (symbolic)", "lm (symbolic, focus 1)"]
    assert all(np.isfinite(g.loss_end) for g in lm_logs)
    again, _ = train_decoder(recipe, workdir=tmp_path / "work", progress=False)  # cached
    for k, v in state["lm"].items():
        torch.testing.assert_close(again["lm"][k], v)
    # one more decoder stage: resumes from the saved prefix and trains only the new stage
    longer = replace(recipe, lm_focus=(*recipe.lm_focus, replace(recipe.lm_focus[0], steps=1)))
    _, longer_logs = train_decoder(longer, workdir=tmp_path / "work", progress=False)
    assert longer_logs[:2] == lm_logs and longer_logs[2].name == "lm (symbolic, focus 2)"
    assert len(list((tmp_path / "work").glob("tiny-vicuna-*.pt"))) == 3
    model, proc, logs = train_model(recipe, state, progress=False)
    assert [g.name for g in logs] == ["align (vision)", "qa (images)"]
    assert all(np.isfinite(g.loss_end) for g in logs)
    out = save_embedded(model, tmp_path / name, {"recipe": recipe.to_dict()}, processor=proc)
    loaded = load_model(out)
    assert loaded.family == recipe.family and loaded.num_layers == recipe.layers
    samples = generate(["ChooseAttr", "LogicalObj"], 2, split="test", seed=9)
    mine = LoadedModel.from_parts(model, proc)
    assert greedy_answers(loaded, samples) == greedy_answers(mine, samples)


def test_shuffled_cells_keep_their_words_and_dense_scenes_follow_the_stage(recipe15):
    """``shuffle_cells`` permutes each scene's cell tokens (row and column words travel with
    them); ``objects`` sets the scene size of the stage's pool; pixels refuse the shuffle."""
    from pidlib.training.run import _pool
    from pidlib.training.stages import _text_batch

    _, _, tok = initial_model(recipe15)
    tc = TokenCache(tok)
    plain = replace(recipe15.lm_focus[0], shuffle_cells=False)
    spec = recipe15.lm_focus[0]
    a = _text_batch(_pool(recipe15, 5, plain, chunk=8), tc, plain, 9, False)
    b = _text_batch(_pool(recipe15, 5, spec, chunk=8), tc, spec, 9, False)
    assert torch.equal(a.input_ids, b.input_ids)  # the same scenes and turns
    for x, y in zip(a.cells.tolist(), b.cells.tolist(), strict=True):
        assert sorted(x) == sorted(y)
    assert any(not torch.equal(x, y) for x, y in zip(a.cells, b.cells, strict=True))
    n_objects = (a.cells[:, :, 0] != tc("empty")[0]).sum(1)
    assert 3 <= int(n_objects.min()) and int(n_objects.max()) <= 5
    with pytest.raises(ValueError, match="shuffle_cells"):
        _text_batch(_pool(recipe15, 5, spec, chunk=8), tc, spec, 9, True)
    with pytest.raises(ValueError, match="objects"):
        StageSpec(steps=1, objects=(4, 2))


def test_lm_key_tracks_every_decoder_stage_setting():
    r = RECIPES["tiny-llava-1.5"]
    assert r.lm_key() == RECIPES["tiny-llava-1.6"].lm_key()  # the two models share the decoder
    assert replace(r, seed=99, vision_lr_mult=0.5).lm_key() == r.lm_key()
    changed = [
        replace(r, lm_focus=r.lm_focus[:1]),
        replace(r, lm=replace(r.lm, steps=r.lm.steps + 1)),
        replace(r, lm_init_std=0.05),
        replace(r, hidden=96),
        replace(r, data=replace(r.data, max_objects=3)),
        replace(r, lm_focus=(*r.lm_focus[:-1], replace(r.lm_focus[-1], shuffle_cells=False))),
    ]
    assert len({c.lm_key() for c in changed} | {r.lm_key()}) == len(changed) + 1


def test_retrains_share_decoder_b_and_differ_only_where_named():
    """Every retrain is on decoder B (one decoder key, not A's), the per-model seeds draw
    disjoint data streams, and the prior variants differ from their seed only in ``qa_prior``."""
    from pidlib.models.families import EMBEDDED_RETRAINS, KNOWN_MODELS
    from pidlib.training.recipe import decoder_of

    assert set(RECIPES) == {"tiny-llava-1.5", "tiny-llava-1.6", *EMBEDDED_RETRAINS}
    assert all(name in KNOWN_MODELS for name in RECIPES)
    retrains = [RECIPES[n] for n in EMBEDDED_RETRAINS]
    assert {decoder_of(r) for r in retrains} == {"B"}
    assert len({r.lm_key() for r in retrains}) == 1
    assert retrains[0].lm_key() != RECIPES["tiny-llava-1.5"].lm_key()
    # (the committed pair's streams overlap: 1.5's QA data seed is 1.6's alignment seed)
    committed = {
        s
        for n in ("tiny-llava-1.5", "tiny-llava-1.6")
        for s in (RECIPES[n].seed, RECIPES[n].seed + 1)
    }
    streams = [s for r in retrains if r.qa_prior == 0 for s in (r.seed, r.seed + 1)]
    assert len(set(streams)) == len(streams) and not committed & set(streams)
    for p in (0.5, 0.9):
        variant = RECIPES[f"tiny-llava-1.5-b1-p{p}"]
        assert (
            replace(variant, name="tiny-llava-1.5-b1", qa_prior=0.0) == RECIPES["tiny-llava-1.5-b1"]
        )
    with pytest.raises(ValueError, match="qa_prior"):
        replace(RECIPES["tiny-llava-1.5"], qa_prior=1.5)


def test_qa_prior_reaches_the_qa_pool_only(recipe15):
    """``_pool(..., prior=p)`` draws its scenes at prior p; without it, at the recipe's data
    prior (the decoder and alignment stages)."""
    from pidlib.training.run import _pool

    assert _pool(recipe15, 7, recipe15.qa, chunk=8).config.prior == recipe15.data.prior == 0
    assert _pool(recipe15, 7, recipe15.qa, chunk=8, prior=0.9).config == replace(
        recipe15.data, prior=0.9
    )


def test_training_tables_read_the_cards(tmp_path):
    """The book's tables are written from model_card.json, numbers unchanged."""
    from pidlib.models.cards import training_tables

    acc = {"image": {"ChooseAttr": 0.875}, "blank": {"ChooseAttr": 0.5}}
    for name in ("m1", "m2"):
        card = {
            "evaluation": {
                "accuracy": acc,
                "chance": {"ChooseAttr": 0.5},
                "n_per_task": 8,
                "split": "test",
                "seed": 3,
            },
            "stages": [
                {"name": "qa", "steps": 5, "seconds": 90.0, "loss_start": 2.0, "loss_end": 1.25}
            ],
            "pilots_markdown": "# log\n\n| id |\n|---|\n| P1 |\n",
        }
        (tmp_path / name).mkdir()
        (tmp_path / name / "model_card.json").write_text(json.dumps(card))
    text = training_tables(["m1", "m2"], tmp_path)
    assert "| ChooseAttr | 0.875 | 0.500 | 0.875 | 0.500 | 0.500 |" in text
    assert "| m2 | qa | 5 | 1.5 | 2.000 | 1.250 |" in text
    assert "| P1 |" in text and "# log" not in text
    with pytest.raises(FileNotFoundError, match="m3"):
        training_tables(["m3"], tmp_path)


@pytest.mark.slow
def test_run_writes_a_card_with_the_decoder_minutes_and_the_prior_accuracy(tmp_path, monkeypatch):
    """``run`` on a planted-prior retrain: the card names the decoder, splits the minutes into
    the shared decoder and the per-model stages, and evaluates at the training prior too."""
    import json

    from pidlib.training import run as run_module

    name = "tiny-llava-1.5-b1-p0.9"
    monkeypatch.setitem(run_module.RECIPES, name, _tiny_recipe(name))
    run_module.run([name], out_dir=tmp_path / "models", workdir=tmp_path / "work", eval_n=2,
                   progress=False)  # fmt: skip
    card = json.loads((tmp_path / "models" / name / "model_card.json").read_text())
    assert card["decoder"] == "B" and card["recipe"]["qa_prior"] == 0.9
    stages = {g["name"]: g["seconds"] / 60 for g in card["stages"]}
    lm = sum(v for k, v in stages.items() if k.startswith("lm"))
    assert card["minutes"]["decoder"] == pytest.approx(lm, abs=0.01)
    per_model = stages["align (vision)"] + stages["qa (images)"]
    assert card["minutes"]["per_model"] == pytest.approx(per_model, abs=0.01)
    at_prior = card["evaluation_at_prior"]
    assert at_prior["prior"] == 0.9 and set(at_prior["accuracy"]) == {"image", "blank",
                                                                       "mismatched"}  # fmt: skip
    readme = (tmp_path / "models" / name / "README.md").read_text()
    assert "at the training prior p = 0.9" in readme and "per-model stages" in readme


def test_a_full_retiming_is_recorded_in_the_card_and_read_by_the_seeds_table(tmp_path):
    """``record_timing`` keeps the weights' checksums and the training run's stages, adds the
    re-timing per kind (per-model, decoder) with its threads, commit and date, rewrites the
    README, and refuses a partial run or a run without provenance, leaving the card as it was;
    the Seeds chapter's table reads the re-timed minutes and says how they were timed."""
    from pidlib.models.cards import retrain_table
    from pidlib.models.families import models_dir
    from pidlib.training.report import record_timing

    name = "tiny-llava-1.5-b2"
    path = tmp_path / name
    path.mkdir()
    before = json.loads((models_dir() / name / "model_card.json").read_text())
    before.pop("idle_timing", None)  # the committed card's own re-timing
    (path / "model_card.json").write_text(json.dumps(before))
    env = {"threads": 2, "torch": "2.x", "commit": "0123456789abcdef", "date": "2026-12-07"}
    stages = [{"name": "align (vision)", "steps": 400, "seconds": 30.0},
              {"name": "qa (images)", "steps": 1000, "seconds": 510.0}]  # fmt: skip
    row = {"what": name, "steps": [400, 1000], "full_steps": [400, 1000], "minutes": 9.0,
           "stages": stages}  # fmt: skip
    with pytest.raises(ValueError, match="only a full re-timing"):
        record_timing(path, "per_model", {**row, "steps": [40, 100]}, env)
    with pytest.raises(ValueError, match="lacks \\['commit'"):
        record_timing(path, "per_model", row, {"threads": 2, "torch": "2.x", "date": "x"})
    assert json.loads((path / "model_card.json").read_text()) == before
    record_timing(path, "per_model", row, env)
    card = record_timing(path, "decoder", {**row, "minutes": 47.5}, {**env, "threads": 1})
    assert json.loads((path / "model_card.json").read_text()) == card
    assert card["sha256"] == before["sha256"] and card["stages"] == before["stages"]
    assert card["idle_timing"]["per_model"] == {"minutes": 9.0, "stages": stages, **env}
    assert card["idle_timing"]["decoder"]["minutes"] == 47.5
    assert card["idle_timing"]["decoder"]["threads"] == 1
    readme = (path / "README.md").read_text()
    assert "per-model stages 9.0 min on 2 cores (2026-12-07, commit 0123456789ab)" in readme
    assert "decoder B 47.5 min on 1 cores" in readme
    table = retrain_table({name: card, "as trained": before})
    assert table.loc[name, "own min"] == 9.0 and table.loc[name, "decoder min"] == 47.5
    assert table.loc[name, "own timed on"] == "2 idle cores"
    assert table.loc["as trained", "own min"] == round(before["minutes"]["per_model"], 1)
    assert table.loc["as trained", "own timed on"] == "1 thread(s), as trained"
