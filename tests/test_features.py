"""Layer-wise feature extraction: pooled states, targets, answers, cache, resume, errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pidlib.book.inputs import load_features, load_samples, pool_size
from pidlib.config.profiles import DatasetSpec, load_profile
from pidlib.core.cache import ArrayCache
from pidlib.data.fingerprints import samples_fingerprint
from pidlib.data.tasks import Sample
from pidlib.extract import batches as B
from pidlib.extract import features as F
from pidlib.extract.features import Features, extract_features
from pidlib.models.answers import correct_mask, greedy_answers, normalize_answer
from pidlib.models.fingerprint import model_fingerprint, source_fingerprint
from pidlib.models.prompt import encode

# (question, answer, options, image height x width): different question lengths and image
# sizes, so batches are padded and LLaVA-NeXT rows have different numbers of image tokens.
_SPECS = [
    ("Is the jar full or empty?", "full", ("full", "empty"), (32, 32)),
    ("Which color is the mug on the left side of the table, red or blue?", "blue",
     ("red", "blue"), (24, 56)),
    ("Is the cube big or small?", "small", ("big", "small"), (56, 20)),
    ("Is the sphere metal or rubber?", "metal", ("metal", "rubber"), (48, 48)),
    ("Is this a cube or a sphere?", "sphere", ("cube", "sphere"), (20, 64)),
]  # fmt: skip


@pytest.fixture(scope="module")
def samples(make_image) -> list[Sample]:
    return [
        Sample(f"q{i}", "ChooseAttr", q, a, o, f"img{i}", image=make_image(h, w, 10 + i))
        for i, (q, a, o, (h, w)) in enumerate(_SPECS)
    ]


def _extract(loaded, samples, **kw):
    kw.setdefault("cache", False)
    kw.setdefault("correct_only", False)
    return extract_features(loaded, samples, progress=False, **kw)


@torch.no_grad()
def _hidden_states(loaded, batch):
    enc = encode(loaded, batch, padding_side="left")
    out = loaded.model(**enc.inputs, output_hidden_states=True)
    return enc, out


def test_pooled_states_equal_output_hidden_states(tiny_model, samples):
    feats = _extract(tiny_model, samples, batch_size=3)
    n_layers = tiny_model.model.config.text_config.num_hidden_layers
    assert feats.V.shape == feats.L.shape == feats.Last.shape == (5, n_layers + 1, 32)
    assert feats.V.dtype == feats.Last.dtype == np.float32
    for start in (0, 3):  # the same padded batches as the extraction
        enc, out = _hidden_states(tiny_model, samples[start : start + 3])
        assert len(out.hidden_states) == n_layers + 1
        for b, pos in enumerate(enc.positions):
            i = start + b
            for layer, h in enumerate(out.hidden_states):
                v = h[b, list(pos.image)].mean(0).numpy()
                q = h[b, list(pos.question)].mean(0).numpy()
                np.testing.assert_allclose(feats.V[i, layer], v, rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(feats.L[i, layer], q, rtol=1e-5, atol=1e-5)
                # the last prompt position, from the same hooks (left padding: index -1)
                np.testing.assert_allclose(feats.Last[i, layer], h[b, -1], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(
                feats.last_hidden[i], out.hidden_states[-1][b, -1], atol=1e-5
            )
    np.testing.assert_array_equal(feats.Last[:, -1], feats.last_hidden)
    sub = feats.select(np.array([0, 2]))
    np.testing.assert_array_equal(sub.Last, feats.Last[[0, 2]])
    assert feats.with_target("margin").Last is feats.Last


def test_anyres_rows_have_their_own_image_token_counts(tiny_llava_next, samples):
    enc = encode(tiny_llava_next, samples, padding_side="left")
    counts = {len(p.image) for p in enc.positions}
    assert len(counts) > 1  # the test above really mixes image-token counts


def test_pooling_does_not_depend_on_batch_composition(tiny_model, samples):
    alone = _extract(tiny_model, samples, batch_size=1)
    batched = _extract(tiny_model, samples, batch_size=5)
    np.testing.assert_allclose(alone.V, batched.V, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(alone.L, batched.L, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_logodds_target_and_probability_by_hand(tiny_model, samples):
    feats = _extract(tiny_model, samples, batch_size=2)
    enc, out = _hidden_states(tiny_model, samples)
    logits = out.logits[:, -1].double()
    tok = tiny_model.tokenizer  # word-level and lower-casing: one id per option
    for i, s in enumerate(samples):
        ids = tok.convert_tokens_to_ids(list(s.options))
        want = logits[i, ids[0]] - logits[i, ids[1]]
        assert feats.Y[i, 0] == pytest.approx(float(want), abs=1e-4)
        p = torch.softmax(logits[i], -1)[ids[s.options.index(s.answer)]]
        assert feats.prob[i] == pytest.approx(float(p), rel=1e-4)
        assert feats.choice[i] == int(logits[i, ids].argmax())
    assert feats.Y.shape == (5, 1)
    assert list(feats.gold) == [s.options.index(s.answer) for s in samples]


def test_other_targets_and_three_options(tiny_llava, make_image):
    opts = ("color", "material", "shape")
    q = "What do the cube and the sphere have in common?"
    s = [Sample(f"c{i}", "CompareAttr", q, opts[i % 3], opts, f"i{i}", image=make_image(32, 32, i))
         for i in range(4)]  # fmt: skip
    feats = _extract(tiny_llava, s)
    lg = feats.option_logits.astype(np.float64)
    np.testing.assert_allclose(feats.Y, lg[:, :2] - lg[:, 2:], rtol=1e-5, atol=1e-6)
    onehot = feats.with_target("onehot").Y
    np.testing.assert_array_equal(onehot, [[1, 0], [0, 1], [0, 0], [1, 0]])
    assert feats.with_target("hidden").Y.shape == (4, 32)
    sub = feats.select(np.array([True, False, True, False]))
    assert list(sub.qid) == ["c0", "c2"] and sub.V.shape[0] == 2


def _relabel(samples, golds):
    """The same questions with new gold answers (None: unchanged), each with a second option."""
    out = []
    for s, g in zip(samples, golds, strict=True):
        if g is not None:
            other = "blue" if not g.startswith("blue") else "red"
            s = Sample(s.qid, s.task, s.question, g, (g, other), s.image_id, image=s.image)
        out.append(s)
    return out


def test_greedy_answers_agree_with_generate(tiny_model, samples):
    """Correct iff generate()'s full greedy answer equals the gold answer; decoding stops early
    for rows that cannot match, so their answers are prefixes of generate()'s."""
    said = greedy_answers(tiny_model, samples, batch_size=5, max_new_tokens=3)
    assert len(said[1].split()) > 1
    # Gold = the model's full answer (rows 0, 2), its first word only (row 1), unchanged (3, 4).
    golds = [said[0], said[1].split()[0], said[2], None, None]
    relabelled = _relabel(samples, golds)
    feats = _extract(tiny_model, relabelled, batch_size=5, max_new_tokens=3)
    assert list(feats.correct) == [True, False, True, False, False]
    assert list(feats.correct) == list(correct_mask(said, relabelled))
    for got, full in zip(feats.answer, said, strict=True):
        assert got and full.startswith(got)
    assert feats.answer[0] == said[0] and len(feats.answer[1].split()) == 2


def test_correct_filter_keeps_only_correct_samples(tiny_model, samples):
    said = list(_extract(tiny_model, samples, max_new_tokens=1).answer)
    assert all(a and a == normalize_answer(a) for a in said)
    golds = [a if i % 2 == 0 else None for i, a in enumerate(said)]
    feats = _extract(tiny_model, _relabel(samples, golds), max_new_tokens=1, correct_only=True)
    assert list(feats.qid) == ["q0", "q2", "q4"] and feats.correct.all()
    assert feats.info["n_seen"] == 5 and feats.info["n_correct"] == 3


def _count_batches(monkeypatch, fail_after: int | None = None) -> list[int]:
    calls: list[int] = []
    real = B.run_batch

    def counting(*args, **kwargs):
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt("simulated interruption")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(B, "run_batch", counting)
    return calls


def test_cache_hit_returns_identical_arrays(tiny_llava, samples, tmp_path, monkeypatch):
    store = ArrayCache(tmp_path)
    a = _extract(tiny_llava, samples, batch_size=2, chunk_batches=1, cache=store)
    calls = _count_batches(monkeypatch)
    b = _extract(tiny_llava, samples, batch_size=2, chunk_batches=1, cache=store)
    assert calls == [] and b.info["chunks_computed"] == 0
    for k in F._ARRAYS:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    manifest = json.loads(next(tmp_path.glob("features/*/manifest.json")).read_text())
    assert manifest["params"]["model"] == model_fingerprint(tiny_llava)
    assert "git_commit" in manifest["provenance"]


@pytest.mark.parametrize("damage", ["arrays", "manifest"])
def test_corrupt_or_stale_entry_is_recomputed(tiny_llava, samples, tmp_path, monkeypatch, damage):
    store = ArrayCache(tmp_path)
    a = _extract(tiny_llava, samples, batch_size=5, cache=store)
    (entry,) = tmp_path.glob("features/*")
    if damage == "arrays":
        raw = bytearray((entry / "arrays.npz").read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (entry / "arrays.npz").write_bytes(bytes(raw))
    else:  # an entry whose manifest belongs to other parameters (stale)
        m = json.loads((entry / "manifest.json").read_text())
        m["key"] = "0" * 24
        (entry / "manifest.json").write_text(json.dumps(m))
    calls = _count_batches(monkeypatch)
    with pytest.warns(UserWarning, match="unusable"):
        b = _extract(tiny_llava, samples, batch_size=5, cache=store)
    assert len(calls) == 1 and b.info["chunks_computed"] == 1
    np.testing.assert_array_equal(a.V, b.V)
    assert any(p.name.startswith(entry.name + ".corrupt") for p in entry.parent.iterdir())


def test_interrupted_extraction_resumes(tiny_llava, samples, tmp_path, monkeypatch):
    store = ArrayCache(tmp_path)
    full = _extract(tiny_llava, samples, batch_size=2, chunk_batches=1, cache=False)
    with monkeypatch.context() as m:
        _count_batches(m, fail_after=2)
        with pytest.raises(KeyboardInterrupt):
            _extract(tiny_llava, samples, batch_size=2, chunk_batches=1, cache=store)
    assert len(list(tmp_path.glob("features/*/manifest.json"))) == 2
    calls = _count_batches(monkeypatch)
    resumed = _extract(tiny_llava, samples, batch_size=2, chunk_batches=1, cache=store)
    assert len(calls) == 1 and resumed.info["chunks_computed"] == 1
    np.testing.assert_allclose(resumed.V, full.V, rtol=0, atol=0)


def test_limit_stops_after_enough_samples(tiny_llava, samples, monkeypatch):
    calls = _count_batches(monkeypatch)
    feats = _extract(tiny_llava, samples, batch_size=1, chunk_batches=2, limit=3)
    assert feats.n == 3 and len(calls) == 4  # two chunks of two batches
    with pytest.warns(UserWarning, match="only 5 of the 9"):
        _extract(tiny_llava, samples, batch_size=5, limit=9)


def test_knockout_intervention_changes_only_what_it_should(tiny_llava, samples, tmp_path):
    from pidlib.interventions.knockout import knockout_intervention

    clean = _extract(tiny_llava, samples, batch_size=5)
    ko = _extract(tiny_llava, samples, batch_size=5, cache=ArrayCache(tmp_path),
                  intervention=knockout_intervention(tiny_llava, "image->question"),
                  intervention_key={"flow": "image->question"})  # fmt: skip
    # The image precedes the question, so no image position sees the block (causal attention);
    # the question's states change from the first blocked layer's output on.
    np.testing.assert_allclose(ko.V, clean.V, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ko.L[:, 0], clean.L[:, 0], rtol=1e-6, atol=1e-6)
    assert np.abs(ko.L[:, 1:] - clean.L[:, 1:]).max() > 1e-3
    assert ko.info["intervention_key"] == {"flow": "image->question"}


def test_float16_storage(tiny_llava, samples, tmp_path):
    a = _extract(tiny_llava, samples, batch_size=5)
    b = _extract(
        tiny_llava, samples, batch_size=5, store_dtype="float16", cache=ArrayCache(tmp_path)
    )
    manifest = json.loads(next(tmp_path.glob("features/*/manifest.json")).read_text())
    assert manifest["arrays"]["V"][1] == "float16" and b.V.dtype == np.float32
    np.testing.assert_allclose(b.V, a.V, rtol=2e-3, atol=1e-3)


def test_bad_arguments_raise_clear_errors(tiny_llava, samples, make_image):
    other = Sample("x", "LogicalObj", "Are there any cubes?", "yes", ("yes", "no"), "i",
                   image=make_image(32, 32, 0))  # fmt: skip
    cases = [
        ({"target": "probs"}, "target"),
        ({"batch_size": 0}, "batch_size"),
        ({"limit": -1}, "limit"),
        ({"store_dtype": "int8"}, "store_dtype"),
        ({"cache": "yes"}, "cache must be"),
        ({"intervention": lambda enc: None, "cache": ArrayCache(Path("/nonexistent"))},
         "intervention_key"),
    ]  # fmt: skip
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            _extract(tiny_llava, samples, **kw)
    with pytest.raises(ValueError, match="several tasks"):
        _extract(tiny_llava, [*samples, other])
    with pytest.raises(ValueError, match="duplicate qids"):
        _extract(tiny_llava, [samples[0], samples[0]])
    with pytest.raises(ValueError, match="no samples"):
        _extract(tiny_llava, [])
    with pytest.raises(ValueError, match="target"):
        Features("m", "ChooseAttr", target="x", **{k: np.zeros((1, 1, 1)) for k in F._ARRAYS})


# --------------------------------------------------------------------------- datasets


def test_minigqa_pools_are_cached_exactly(tmp_path, monkeypatch):
    """A warm build reads each task's pool from the cache: the same questions and pixels as a
    fresh draw, nothing drawn; another seed or prior is another entry; an unreadable entry is
    drawn again with a warning."""
    import pickle
    import zlib

    from pidlib.book import inputs
    from pidlib.data.minigqa import questions

    store = ArrayCache(tmp_path)
    spec = DatasetSpec(split="test", seed=5)
    args = {"tasks": ["ChooseRel", "QueryAttr"], "samples_per_task": 8, "cache": store}
    fresh = load_samples(spec, **{**args, "cache": False})
    first = load_samples(spec, **args)
    assert len(list((tmp_path / inputs._POOL).iterdir())) == 2

    def no_draw(*a, **k):
        raise AssertionError("drew a pool the cache holds")

    monkeypatch.setattr(questions, "generate", no_draw)
    kept = load_samples(spec, **args)  # this process keeps the pools it read or drew
    assert all(a is b for t in args["tasks"] for a, b in zip(kept[t], first[t], strict=True))
    monkeypatch.setattr(inputs, "_POOLS", {})  # a new process: read from the cache
    warm = load_samples(spec, **args)
    assert all(a is not b for t in args["tasks"] for a, b in zip(warm[t], first[t], strict=True))
    for t in args["tasks"]:
        assert samples_fingerprint(warm[t]) == samples_fingerprint(fresh[t])
        assert samples_fingerprint(first[t]) == samples_fingerprint(fresh[t])
        assert [(s.qid, s.scene, s.meta) for s in warm[t]] == [
            (s.qid, s.scene, s.meta) for s in fresh[t]
        ]
    with pytest.raises(AssertionError, match="drew"):  # another seed: not in the cache
        load_samples(DatasetSpec(split="test", seed=6), **args)
    monkeypatch.undo()
    inputs._POOLS.clear()
    # an entry whose bytes are valid but hold no samples: drawn again, with a warning
    entry = next((tmp_path / inputs._POOL).iterdir())
    key = entry.name
    bad = np.frombuffer(zlib.compress(pickle.dumps(["not a sample"])), np.uint8)
    shutil.rmtree(entry)
    store.save(inputs._POOL, key, {"pickle": bad}, {})
    with pytest.warns(UserWarning, match="unreadable"):
        again = load_samples(spec, **args)
    for t in args["tasks"]:
        assert samples_fingerprint(again[t]) == samples_fingerprint(fresh[t])


def test_minigqa_pools_drawn_on_workers_equal_a_draw_here(tmp_path, monkeypatch):
    """A profile's missing pools are drawn on its workers, two or more at a time: the same
    questions and pixels as a draw in this process; stored, so a second read draws nothing."""
    from pidlib.book import inputs

    monkeypatch.setattr(inputs, "MIN_POOL_QUESTIONS", 0)  # these few questions too
    tasks = ["ChooseRel", "QueryAttr"]
    profile = load_profile("smoke", tasks=tasks, samples_per_task=10)
    store = ArrayCache(tmp_path)
    n = pool_size(10, 1.5)
    wanted = [(profile.dataset, t, n) for t in tasks]
    drawn = inputs._draw_on_workers(store, wanted, profile.parallel)
    assert sorted(drawn) == wanted
    here = load_samples(profile.dataset, tasks=tasks, samples_per_task=10, cache=False)
    got = load_samples(profile, cache=store)
    assert len(list((tmp_path / inputs._POOL).iterdir())) == 2
    for t in tasks:
        assert samples_fingerprint(drawn[profile.dataset, t, n]) == samples_fingerprint(here[t])
        assert samples_fingerprint(got[t]) == samples_fingerprint(here[t])
    assert inputs._draw_on_workers(store, wanted, profile.parallel) == {}
    one = dataclasses.replace(profile.parallel, n_jobs=1)
    assert inputs._draw_on_workers(ArrayCache(tmp_path / "b"), wanted, one) == {}


def test_draw_pools_draws_every_prior_at_once_the_same_questions(tmp_path, monkeypatch):
    """Profiles at other language priors get their pools drawn together, stored under the
    keys each profile reads: the same questions as a draw here, and ``load_samples`` then
    draws nothing."""
    from pidlib.book import inputs

    monkeypatch.setattr(inputs, "MIN_POOL_QUESTIONS", 0)
    monkeypatch.setenv("PIDBOOK_CACHE", str(tmp_path))
    base = load_profile("smoke", tasks=["ChooseAttr", "CompareAttr"], samples_per_task=10)
    at = [dataclasses.replace(base, dataset=dataclasses.replace(base.dataset, prior=p))
          for p in (0.0, 0.9)]  # fmt: skip
    here = [load_samples(p.dataset, tasks=list(p.tasks), samples_per_task=10, cache=False)
            for p in at]  # fmt: skip
    inputs.draw_pools(at)
    assert len(list((tmp_path / inputs._POOL).iterdir())) == 4
    monkeypatch.setattr(inputs, "_draw", lambda *a: pytest.fail(f"drew {a} again"))
    for p, drawn_here in zip(at, here, strict=True):
        got = load_samples(p)
        for t in p.tasks:
            assert samples_fingerprint(got[t]) == samples_fingerprint(drawn_here[t])


def test_samples_fingerprint_reuse_is_exact():
    """The same sample objects get the fingerprint computed from their pixels; another
    image (a new sample) or another order gets another; the memory is bounded."""
    import dataclasses
    import itertools

    from PIL import Image

    from pidlib.data import fingerprints

    pools = load_samples(DatasetSpec(split="test", seed=3), tasks=["ChooseAttr"],
                         samples_per_task=6, cache=False)["ChooseAttr"]  # fmt: skip
    first = samples_fingerprint(pools)
    assert samples_fingerprint(list(pools)) == first == fingerprints._fingerprint(pools)
    blank = dataclasses.replace(pools[0], image=Image.new("RGB", pools[0].image.size))
    changed = [blank, *pools[1:]]
    assert samples_fingerprint(changed) == fingerprints._fingerprint(changed) != first
    assert samples_fingerprint(pools[::-1]) == fingerprints._fingerprint(pools[::-1]) != first
    orders = itertools.islice(itertools.permutations(pools, 5), fingerprints._SEEN_SIZE + 5)
    for order in orders:
        samples_fingerprint(order)
    assert len(fingerprints._SEEN) == fingerprints._SEEN_SIZE


def test_load_samples_minigqa_pools_and_errors():
    spec = DatasetSpec(split="test", seed=3)
    pools = load_samples(spec, tasks=["ChooseAttr", "LogicalObj"], samples_per_task=10, cache=False)
    assert {t: len(s) for t, s in pools.items()} == {"ChooseAttr": 15, "LogicalObj": 15}
    alone = load_samples(spec, tasks=["LogicalObj"], samples_per_task=10, cache=False)
    assert samples_fingerprint(alone["LogicalObj"]) == samples_fingerprint(pools["LogicalObj"])
    assert pool_size(900, 1.25) == 1125
    with pytest.raises(ValueError, match="unknown dataset"):
        load_samples(DatasetSpec(name="coco"), tasks=["ChooseAttr"], samples_per_task=10)
    with pytest.raises(ValueError, match="unknown task"):
        load_samples(spec, tasks=["ChooseColour"], samples_per_task=10, cache=False)
    with pytest.raises(ValueError, match="oversample"):
        load_samples(spec, tasks=["ChooseAttr"], samples_per_task=10, oversample=0.5, cache=False)
    missing = DatasetSpec(name="gqa", questions="no/such/file.json", images="no/such/dir")
    with pytest.raises(FileNotFoundError, match="dataset.images"):
        load_samples(missing, tasks=["ChooseAttr"], samples_per_task=10)


def test_load_features_reads_the_cache_without_the_model(
    tiny_llava, samples, tmp_path, monkeypatch
):
    from pidlib.models.load import load_model
    from pidlib.training.report import save_embedded

    folder = save_embedded(tiny_llava, tmp_path / "model", {"description": "test"})
    loaded = load_model(folder)
    assert source_fingerprint(str(folder)) == model_fingerprint(loaded)
    assert model_fingerprint(loaded)["content"].startswith("files:")
    profile = load_profile("smoke", models=[str(folder)], tasks=["ChooseAttr"],
                           samples_per_task=10, batch_size=2, correct_only=False)  # fmt: skip
    store = ArrayCache(tmp_path / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer than samples_per_task samples
        first = load_features(profile, samples={"ChooseAttr": samples}, cache=store, progress=False)
        monkeypatch.setattr("pidlib.models.load.load_model", _no_model)
        again = load_features(profile, samples={"ChooseAttr": samples}, cache=store, progress=False)
    key = (str(folder), "ChooseAttr")
    np.testing.assert_array_equal(first[key].V, again[key].V)
    with pytest.raises(ValueError, match="unknown model"):
        load_features(load_profile("smoke", models=["no-such-model"]), samples={}, cache=store)


def test_extraction_runs_on_the_profiles_threads_and_restores_them(monkeypatch, samples):
    """The chapter's own forwards run on ``parallel.threads`` (beside a busy process, more
    threads than free cores thrash), and the caller's thread count comes back afterwards."""
    import torch

    seen = []

    def fake_extract(loaded, batch, **kwargs):
        seen.append(torch.get_num_threads())
        raise RuntimeError("stop here")

    monkeypatch.setattr("pidlib.book.inputs.extract_features", fake_extract)
    monkeypatch.setattr("pidlib.book.inputs.load_model", lambda *a, **k: object())
    monkeypatch.setattr("pidlib.book.inputs.source_fingerprint", lambda *a, **k: None)
    before = torch.get_num_threads()
    profile = load_profile("smoke", models=["tiny-llava-1.5"], tasks=["ChooseAttr"],
                           parallel={"threads": before + 1})  # fmt: skip
    with pytest.raises(RuntimeError, match="stop here"):
        load_features(profile, samples={"ChooseAttr": samples}, cache=False, progress=False)
    assert seen == [before + 1] and torch.get_num_threads() == before


def test_extraction_on_workers_equals_the_serial_run(monkeypatch):
    """A CPU profile's missing (model, task) features run on its workers (each loading the
    committed embedded model itself) and equal those of a serial run, in the profile's order."""
    monkeypatch.setattr("pidlib.book.workers.MIN_FORWARDS", 0)  # these few forwards too
    profile = load_profile("smoke", tasks=["ChooseAttr", "QueryAttr"], samples_per_task=10,
                           batch_size=4, correct_only=False)  # fmt: skip
    rows = {t: s[:6] for t, s in load_samples(profile, cache=False).items()}
    serial = dataclasses.replace(
        profile, parallel=dataclasses.replace(profile.parallel, backend="sequential")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer correct answers than samples_per_task
        one = load_features(serial, samples=rows, cache=False, progress=False)
        two = load_features(profile, samples=rows, cache=False, progress=False)
    assert list(one) == list(two) == [(m, t) for m in profile.models for t in profile.tasks]
    for key, a in one.items():
        np.testing.assert_array_equal(a.V, two[key].V)
        np.testing.assert_array_equal(a.L, two[key].L)
        np.testing.assert_array_equal(a.Y, two[key].Y)


def test_workers_start_early_only_when_features_are_missing(
    tiny_llava, samples, tmp_path, monkeypatch
):
    """A cold chapter starts its workers in the background as extraction begins; a warm read
    starts none (they would only compete with it)."""
    from pidlib.training.report import save_embedded

    warmed = []
    monkeypatch.setattr("pidlib.book.inputs.warm_workers", lambda *a, **k: warmed.append(k))
    folder = save_embedded(tiny_llava, tmp_path / "model", {"description": "test"})
    profile = load_profile("smoke", models=[str(folder)], tasks=["ChooseAttr"],
                           samples_per_task=10, batch_size=2, correct_only=False)  # fmt: skip
    store = ArrayCache(tmp_path / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer than samples_per_task samples
        load_features(profile, samples={"ChooseAttr": samples}, cache=store, progress=False)
        assert warmed == [{"models": True}]
        load_features(profile, samples={"ChooseAttr": samples}, cache=store, progress=False)
    assert len(warmed) == 1


def _no_model(*args, **kwargs):
    raise AssertionError("the model was loaded although its features are cached")


def test_targets_canonical_order_and_margin():
    """``canonical`` does not flip with the order the question names its options; ``margin`` is
    the gold logit minus the log-sum-exp of the others."""
    from pidlib.extract.features import Features

    n = 4
    opts = np.array([["red", "blue"], ["blue", "red"], ["red", "blue"], ["blue", "red"]])
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 3.0], [3.0, 1.0]], np.float32)
    f = Features("m", "ChooseAttr", V=np.zeros((n, 2, 3), np.float32),
                 L=np.zeros((n, 2, 3), np.float32), option_logits=logits,
                 last_hidden=np.zeros((n, 3), np.float32), prob=np.ones(n, np.float32),
                 answer=np.array(["red"] * n), correct=np.ones(n, bool), choice=np.zeros(n, int),
                 gold=np.array([0, 1, 1, 0]), qid=np.array(list("abcd")), options=opts)  # fmt: skip
    assert f.Y[:, 0].tolist() == [2.0, -2.0, -2.0, 2.0]  # question order: flips
    canon = f.with_target("canonical").Y[:, 0]  # alphabetical: blue - red
    assert canon.tolist() == [-2.0, -2.0, 2.0, 2.0]
    margin = f.with_target("margin").Y[:, 0]
    assert np.allclose(margin, [2.0, 2.0, 2.0, 2.0])


def test_an_entry_written_before_last_existed_still_loads(tiny_llava, samples, tmp_path):
    """A cache entry without ``Last`` (an older extraction's arrays) loads, with Last = None,
    and the analyses that need Last say so."""
    import shutil

    from pidlib.analysis.lastview import probe_table
    from pidlib.config.views import LastPositionSpec

    store = ArrayCache(tmp_path)
    a = _extract(tiny_llava, samples, batch_size=5, cache=store)
    (key,) = a.info["cache_keys"]
    hit, manifest = store.load("features", key)
    shutil.rmtree(store.path("features", key))
    store.save("features", key, {k: v for k, v in hit.items() if k != "Last"},
               manifest["params"])  # fmt: skip
    b = _extract(tiny_llava, samples, batch_size=5, cache=store)
    assert b.info["chunks_computed"] == 0 and b.Last is None
    np.testing.assert_array_equal(a.V, b.V)
    with pytest.raises(ValueError, match="without Last"):
        probe_table({("m", "t"): b}, LastPositionSpec(), cache=False)
