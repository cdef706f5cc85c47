"""Attention knockouts: specs, masks, hooks, prefix-reuse sweeps, on tiny random LLaVA models."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import stats

from pidlib.interventions.knockout import knockout, knockout_features, knockout_intervention
from pidlib.interventions.masks import apply_block, block_matrix, causal_mask
from pidlib.interventions.replay import capture_clean, replay
from pidlib.interventions.spec import FLOWS, KnockoutSpec, Window, as_spec, window
from pidlib.interventions.sweep import summarize, sweep
from pidlib.models.answers import answer_token_variants, first_token_logits
from pidlib.models.loaded import LoadedModel
from pidlib.models.locate import decoder_layers
from pidlib.models.prompt import Positions, encode
from pidlib.models.tiny import build_model, build_processor, tiny_config

N_LAYERS = 8


def _tiny(family: str, tokenizer, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """An 8-layer tiny model (conftest's are 3 layers: too few for 9-layer windows)."""
    config = tiny_config(family, vocab_size=len(tokenizer), image_token_id=tokenizer.image_token_id,
                         hidden=32, layers=N_LAYERS, heads=2, vision_hidden=16, vision_layers=1,
                         vision_heads=2, image_size=32, patch_size=8)  # fmt: skip
    model = build_model(config, seed=3).to(dtype)  # eager attention
    processor = build_processor(family, tokenizer, image_size=32, patch_size=8)
    return LoadedModel.from_parts(model, processor, name=f"ko-{family}")


@pytest.fixture(scope="module", params=["llava", "llava_next"])
def deep(request, tiny_tokenizer) -> LoadedModel:
    return _tiny(request.param, tiny_tokenizer)


@pytest.fixture(scope="module")
def batch(deep, tiny_samples):
    return encode(deep, tiny_samples)


def _n_hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def _hidden(loaded, inputs, **kw):
    with torch.no_grad():
        return loaded.model(**inputs, output_hidden_states=True, use_cache=False, **kw)


# ----------------------------------------------------------------------------- specs


def test_spec_round_trips_through_dict_and_json():
    specs = [
        KnockoutSpec.from_flow("image->question"),
        KnockoutSpec.windowed("question->last", center=5, k=3),
        KnockoutSpec((3, 1, 2), "last", layers=[4, 0, 4]),
    ]
    for spec in specs:
        assert KnockoutSpec.from_dict(spec.to_dict()) == spec
        assert KnockoutSpec.from_json(spec.to_json()) == spec
    assert specs[2].source == (1, 2, 3) and specs[2].layers == (0, 4)
    assert specs[2].flow == "[1,2,3]->last"
    assert KnockoutSpec.from_dict({"flow": "last->last", "layers": {"center": 2}}) == KnockoutSpec(
        "last", "last", Window(2, 9)
    )
    assert as_spec("image->last") == KnockoutSpec("image", "last")
    assert set(FLOWS) == {"image->question", "image->last", "question->last", "last->last"}


def test_window_is_centre_plus_minus_four_truncated_at_the_ends():
    assert window(0, n_layers=32) == (0, 1, 2, 3, 4)
    assert window(10, n_layers=32) == tuple(range(6, 15))
    assert window(31, n_layers=32) == tuple(range(27, 32))
    assert window(3, k=1, n_layers=8) == (3,)
    assert window(3, k=4, n_layers=8) == (1, 2, 3, 4)  # even k: one more below the centre
    assert KnockoutSpec("image", "question").blocked_layers(5) == (0, 1, 2, 3, 4)
    assert KnockoutSpec("image", "question", layers=()).blocked_layers(5) == ()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: KnockoutSpec.from_flow("image->answer"), "unknown flow"),
        (lambda: KnockoutSpec.windowed("image->last", center=3, k=0), "window size k"),
        (lambda: Window(-1), "window center"),
        (lambda: KnockoutSpec("image", "query"), "unknown target span"),
        (lambda: KnockoutSpec("image", (1, -2)), "target index"),
        (lambda: KnockoutSpec("image", "last", layers="some"), "layers must be"),
        (lambda: KnockoutSpec("image", "last", layers=(True,)), "layer index"),
        (lambda: KnockoutSpec.from_flow("image->last", (2, 8)).blocked_layers(8), "out of range"),
        (lambda: KnockoutSpec.windowed("image->last", 8).blocked_layers(8), "out of range"),
        (lambda: KnockoutSpec.from_dict({"flow": "last->last", "layer": 1}), "unknown knockout"),
        (lambda: causal_mask(2, 3, kind="float"), "mask kind"),
    ],
)
def test_bad_specs_raise_clear_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_block_matrix_axis_order_is_query_then_key():
    pos = [Positions(image=(1, 2), question=(3, 4), last=5), Positions((0,), (1,), 2)]
    got = block_matrix(pos, "image", "question", seq_len=6)
    want = torch.zeros(2, 6, 6, dtype=torch.bool)
    want[0, 3:5, 1:3] = True
    want[1, 1, 0] = True
    assert torch.equal(got, want)
    assert torch.equal(
        block_matrix(pos, "last", "last", 6).nonzero(), torch.tensor([[0, 5, 5], [1, 2, 2]])
    )
    # Only causal edges are cut: a later key is never "blocked".
    assert not block_matrix(pos, "last", "image", 6).any()
    with pytest.raises(ValueError, match="row length"):
        block_matrix(pos, "image", "last", seq_len=5)


def test_mask_builders_cut_exactly_the_blocked_edges():
    blocked = torch.zeros(1, 3, 4, dtype=torch.bool)
    blocked[0, 2, 1] = True
    add = apply_block(causal_mask(3, 4, kind="additive"), blocked)
    boo = apply_block(causal_mask(3, 4, kind="bool"), blocked)
    allowed = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(boo[0, 0], allowed)
    assert torch.equal(add[0, 0] == 0, allowed) and bool((add[0, 0][~allowed] < -1e38).all())


# ----------------------------------------------------------------------------- the hooks


def test_empty_knockout_is_bit_identical(tiny_model, tiny_samples):
    enc = encode(tiny_model, tiny_samples)
    clean = _hidden(tiny_model, enc.inputs)
    for spec in (KnockoutSpec("image", "question", layers=()), KnockoutSpec((), "question")):
        with knockout(tiny_model, spec, enc.positions):
            out = _hidden(tiny_model, enc.inputs)
        assert torch.equal(out.logits, clean.logits)
    with knockout(tiny_model, "image->question", enc.positions):
        assert not torch.equal(_hidden(tiny_model, enc.inputs).logits, clean.logits)


def test_knockout_at_one_layer_changes_only_the_blocked_rows(deep, batch):
    layer, rows_out = 3, []
    attn = decoder_layers(deep)[layer].self_attn
    grab = attn.register_forward_hook(lambda m, a, out: rows_out.append(out[0]) and None)
    try:
        clean = _hidden(deep, batch.inputs)
        with knockout(deep, KnockoutSpec("image", "question", layers=(layer,)), batch.positions):
            ko = _hidden(deep, batch.inputs)
    finally:
        grab.remove()
    for i in range(layer + 1):  # embeddings and the inputs of layers <= `layer`
        assert torch.equal(ko.hidden_states[i], clean.hidden_states[i])
    for b, pos in enumerate(batch.positions):
        q = list(pos.question)
        other = [t for t in range(batch.inputs["input_ids"].shape[1]) if t not in q]
        for clean_h, ko_h in (
            (rows_out[0], rows_out[1]),
            (clean.hidden_states[layer + 1], ko.hidden_states[layer + 1]),
        ):
            assert torch.equal(ko_h[b, other], clean_h[b, other])
            assert (ko_h[b, q] - clean_h[b, q]).abs().amax(-1).min() > 0  # every blocked row moved
        # Real rows before the question never see the change, at any depth. (Padding rows may:
        # a fully masked query row attends uniformly to every key; no real row reads them.)
        real = range(int(batch.inputs["attention_mask"][b].argmax()), pos.question[0])
        assert torch.equal(ko.hidden_states[-1][b, real], clean.hidden_states[-1][b, real])


@pytest.mark.parametrize("flow", list(FLOWS))
def test_blocked_keys_get_exactly_zero_attention(deep, batch, flow):
    spec = KnockoutSpec.windowed(flow, center=1, k=3)
    with knockout(deep, spec, batch.positions) as blocked_layers:
        out = _hidden(deep, batch.inputs, output_attentions=True)
    assert blocked_layers == (0, 1, 2)
    src_name, tgt_name = FLOWS[flow]
    for b, pos in enumerate(batch.positions):
        src = list(
            pos.image
            if src_name == "image"
            else pos.question
            if src_name == "question"
            else [pos.last]
        )
        tgt = list(pos.question if tgt_name == "question" else [pos.last])
        for layer, att in enumerate(out.attentions):  # (B, heads, query, key)
            w = att[b][:, tgt][:, :, src]
            if layer in blocked_layers:
                assert bool((w == 0).all())
                assert torch.allclose(att[b][:, tgt].sum(-1), torch.ones(()))
            else:
                assert bool((w > 0).all())


def test_eager_and_sdpa_give_the_same_knocked_out_logits(tiny_tokenizer, tiny_samples):
    eager = _tiny("llava", tiny_tokenizer)
    sdpa = LoadedModel.from_parts(copy.deepcopy(eager.model), eager.processor)
    sdpa.model.set_attn_implementation("sdpa")
    spec = KnockoutSpec.from_flow("image->question", layers=(1, 2, 3))
    for samples in (tiny_samples, tiny_samples[:1]):  # padded (bool mask) and unpadded (no mask)
        enc = encode(eager, samples)
        real = enc.inputs["attention_mask"].bool()  # padding rows differ by design (sdpa: 0)
        with knockout(eager, spec, enc.positions):
            a = _hidden(eager, enc.inputs).logits[real]
        with knockout(sdpa, spec, enc.positions):
            b = _hidden(sdpa, enc.inputs).logits[real]
        assert torch.allclose(a, b, atol=1e-5, rtol=0)
        assert (a - _hidden(eager, enc.inputs).logits[real]).abs().max() > 1e-3


def test_hooks_are_removed_also_after_exceptions(deep, batch):
    model, before = deep.model, _n_hooks(deep.model)
    with knockout(deep, "image->question", batch.positions):
        assert _n_hooks(model) == before + N_LAYERS
    assert _n_hooks(model) == before
    with pytest.raises(RuntimeError, match="boom"), knockout(deep, "image->last", batch.positions):
        raise RuntimeError("boom")
    assert _n_hooks(model) == before
    # An error raised by the hook itself (wrong number of Positions for the batch).
    with (
        pytest.raises(ValueError, match="Positions"),
        knockout(deep, "last->last", batch.positions[:1]),
    ):
        _hidden(deep, batch.inputs)
    assert _n_hooks(model) == before


def test_cached_generation_and_keyless_queries_are_rejected(deep, batch):
    inputs = {k: v for k, v in batch.inputs.items() if k != "position_ids"}
    with pytest.raises(ValueError, match="prefill"), knockout(deep, "image->last", batch.positions):
        deep.model.generate(**inputs, max_new_tokens=2, do_sample=False, pad_token_id=0)
    before, seq = _n_hooks(deep.model), batch.inputs["input_ids"].shape[1]
    everything = KnockoutSpec(tuple(range(seq)), "last", layers=(0,))
    with pytest.raises(ValueError, match="no key"), knockout(deep, everything, batch.positions):
        _hidden(deep, batch.inputs)
    assert _n_hooks(deep.model) == before


def test_next_batches_images_of_different_sizes(tiny_tokenizer, tiny_samples):
    loaded = _tiny("llava_next", tiny_tokenizer)
    enc = encode(loaded, tiny_samples)
    assert len({len(p.image) for p in enc.positions}) > 1  # anyres: a block per image size
    one = [encode(loaded, [s]) for s in tiny_samples]
    spec = KnockoutSpec.from_flow("image->question", layers=(0, 1))
    with knockout(loaded, spec, enc.positions):
        batched = _hidden(loaded, enc.inputs).logits[:, -1]
    for b, e in enumerate(one):
        with knockout(loaded, spec, e.positions):
            single = _hidden(loaded, e.inputs).logits[0, -1]
        assert torch.allclose(batched[b], single, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- sweeps


def test_prefix_reuse_replay_matches_a_full_forward(deep, batch):
    clean = capture_clean(deep, batch.inputs, batch.positions)
    assert torch.equal(clean.logits, _hidden(deep, batch.inputs).logits[:, -1].float())
    for flow in FLOWS:
        for layers in ((0,), (2, 3, 4), (N_LAYERS - 1,)):
            spec = KnockoutSpec.from_flow(flow, layers)
            with knockout(deep, spec, batch.positions):
                full = _hidden(deep, batch.inputs).logits[:, -1].float()
            for rows in (True, False):  # restart at the first target row / at row 0
                fast = replay(deep, clean, spec, batch.positions, rows=rows)
                assert torch.allclose(fast, full, atol=1e-5, rtol=0), (flow, layers, rows)


def test_reuse_sweep_equals_naive_sweep(deep, tiny_samples):
    centers = [*range(N_LAYERS), "all"]
    kw = {"centers": centers, "batch_size": 4}
    naive = sweep(deep, tiny_samples, method="naive", **kw)
    reuse = sweep(deep, tiny_samples, method="reuse", **kw)
    layers_only = sweep(deep, tiny_samples, method="reuse-layers", **kw).per_sample
    a, b = naive.per_sample, reuse.per_sample
    assert np.abs(a.p_ko - layers_only.p_ko).max() <= 1e-5
    assert len(a) == len(tiny_samples) * len(FLOWS) * len(centers)
    assert a[["qid", "flow", "center", "layers"]].equals(b[["qid", "flow", "center", "layers"]])
    assert np.abs(a.p_ko - b.p_ko).max() <= 1e-5
    assert np.abs(a.rel_change - b.rel_change).max() <= 1e-3  # percent points, float32 model
    assert (a.correct_ko == b.correct_ko).all()
    assert not np.allclose(a.p_ko, a.p_clean, atol=1e-6, rtol=0)  # the knockouts do something


def test_reuse_equals_naive_in_float64(tiny_tokenizer, tiny_samples):
    loaded = _tiny("llava", tiny_tokenizer, dtype=torch.float64)
    kw = {"flows": ["image->question", "question->last"], "centers": [0, 4, 7], "batch_size": 4}
    a = sweep(loaded, tiny_samples, method="naive", **kw).per_sample
    b = sweep(loaded, tiny_samples, method="reuse", **kw).per_sample
    assert np.abs(a.rel_change - b.rel_change).max() <= 1e-5


def test_sweep_numbers_against_an_independent_computation(deep, tiny_samples):
    res = sweep(deep, tiny_samples, flows="image->question", centers=[2], batch_size=4)
    row = res.per_sample
    # p_clean from prompt.first_token_logits (its own forward): the gold option's first tokens.
    logits = first_token_logits(deep, tiny_samples)
    for i, s in enumerate(tiny_samples):
        ids = list(answer_token_variants(deep, s.options)[s.options.index(s.answer)])
        want = float(torch.softmax(logits[i], -1)[ids].sum())
        assert math.isclose(res.clean.p_clean[i], want, rel_tol=1e-5)
    assert np.allclose(row.rel_change, (row.p_ko - row.p_clean) / row.p_clean * 100, atol=1e-6)
    assert row.layers.tolist() == ["0-6"] * len(tiny_samples)
    # Padding in a batch gives the same numbers as one sample at a time.
    single = sweep(deep, tiny_samples, flows="image->question", centers=[2], batch_size=1)
    assert np.allclose(single.per_sample.p_ko, row.p_ko, atol=1e-5, rtol=0)


def test_summarize_means_and_intervals():
    import pandas as pd

    rel = np.array([1.0, 2.0, 6.0])
    df = pd.DataFrame({
        "flow": "f", "center": [0, 0, 0], "layers": "0-4", "first_layer": 0, "last_layer": 4,
        "rel_change": rel, "p_clean": 0.5, "p_ko": [0.5, 0.51, 0.53],
        "correct_ko": [False] * 3, "correct_clean": [True] * 3,
    })  # fmt: skip
    s = summarize(df).iloc[0]
    lo, hi = stats.t.interval(0.95, 2, loc=rel.mean(), scale=stats.sem(rel))
    assert s.n == 3 and math.isclose(s.rel_change, 3.0)
    assert math.isclose(s.rel_change_lo, lo) and math.isclose(s.rel_change_hi, hi)
    z2 = stats.norm.ppf(0.975) ** 2  # Wilson interval of 0 / n is [0, z^2 / (n + z^2)]
    assert s.accuracy == 0 and s.accuracy_lo == 0 and math.isclose(s.accuracy_hi, z2 / (3 + z2))
    with pytest.raises(ValueError, match="grouping"):
        summarize(df, by=("task",))


def test_sweep_rejects_bad_arguments(deep, tiny_samples):
    with pytest.raises(ValueError, match="method"):
        sweep(deep, tiny_samples, method="fast")
    with pytest.raises(ValueError, match="out of range"):
        sweep(deep, tiny_samples, centers=[N_LAYERS])
    with pytest.raises(ValueError, match="window size"):
        sweep(deep, tiny_samples, window=0)
    with pytest.raises(ValueError, match="unknown flow"):
        sweep(deep, tiny_samples, flows=["vision->language"])


def test_knockout_features_change_only_layers_after_the_block(tiny_llava, tiny_samples, make_image):
    from pidlib.extract.features import extract_features

    first = tiny_samples[0]  # extract_features takes one task: two questions of the same type
    samples = [first, dataclasses.replace(first, qid="t0b", image=make_image(40, 24, seed=9))]
    # max_new_tokens=2: the knocked-out prompt forward fills a KV cache (a prefill: allowed).
    kw = {"cache": False, "progress": False, "max_new_tokens": 2, "correct_only": False}
    clean = extract_features(tiny_llava, samples, **kw)
    spec = KnockoutSpec.from_flow("image->question", layers=(1,))
    ko = knockout_features(tiny_llava, samples, spec, **kw)
    assert np.array_equal(ko.V[:, :2], clean.V[:, :2]) and np.array_equal(
        ko.L[:, :2], clean.L[:, :2]
    )
    assert np.array_equal(ko.V[:, 2], clean.V[:, 2])  # image rows are not queries of this flow
    assert not np.allclose(ko.L[:, 2], clean.L[:, 2])
    assert callable(knockout_intervention(tiny_llava, spec))


def test_cached_knockout_features_need_no_model(tiny_llava, tiny_samples, make_image, tmp_path):
    """A warm build reads a knockout's features from the cache alone: the same arrays as the
    run that wrote them; another spec, or a cold cache, gives None (the chapter then loads the
    model)."""
    from pidlib.core.cache import ArrayCache
    from pidlib.interventions.knockout import cached_knockout_features
    from pidlib.models.fingerprint import model_fingerprint

    first = tiny_samples[0]
    samples = [first, dataclasses.replace(first, qid="t0c", image=make_image(36, 20, seed=5))]
    kw = {"cache": ArrayCache(tmp_path), "max_new_tokens": 1, "batch_size": 2}
    ident = model_fingerprint(tiny_llava)
    assert cached_knockout_features(ident, "tiny", samples, "image->question", **kw) is None
    ko = knockout_features(tiny_llava, samples, "image->question", progress=False, **kw)
    got = cached_knockout_features(ident, "tiny", samples, "image->question", **kw)
    assert got is not None
    for k in ("V", "L", "choice", "gold"):
        assert np.array_equal(getattr(got, k), getattr(ko, k))
    assert cached_knockout_features(ident, "tiny", samples, "image->last", **kw) is None


@pytest.mark.parametrize("family", ["llava", "llava_next"])
def test_vision_states_cannot_see_the_question(family, tiny_tokenizer, tiny_samples, make_image):
    """Image tokens precede the question, so under causal attention the pooled image-token state
    V is a function of the image alone: an all-layer Image->Question knockout leaves V
    bit-identical at every layer (while L changes)."""
    from pidlib.extract.features import extract_features

    loaded = _tiny(family, tiny_tokenizer)
    first = tiny_samples[0]
    samples = [first, dataclasses.replace(first, qid="t0b", image=make_image(36, 28, seed=4))]
    kw = {"cache": False, "progress": False, "max_new_tokens": 1, "correct_only": False}
    clean = extract_features(loaded, samples, **kw)
    ko = knockout_features(loaded, samples, "image->question", **kw)
    assert np.array_equal(ko.V, clean.V)
    assert not np.allclose(ko.L[:, 1:], clean.L[:, 1:])


def test_a_one_layer_window_blocks_only_that_layer():
    for n_layers in (8, 32):
        for centre in range(n_layers):
            assert Window(centre, 1).layers(n_layers) == (centre,)
            assert window(centre, 1, n_layers=n_layers) == (centre,)


def test_knockout_forwards_on_workers_equal_the_serial_run(tmp_path, monkeypatch):
    """The book's knockout forwards missing from the cache run on the profile's CPU workers
    (each loads the committed embedded model itself) and give the serial run's features."""
    monkeypatch.setattr("pidlib.book.workers.MIN_FORWARDS", 0)  # these few forwards too
    from pidlib.book.inputs import load_samples
    from pidlib.book.knockouts import ChapterModels
    from pidlib.config.profiles import load_profile
    from pidlib.core.cache import ArrayCache

    profile = load_profile("smoke", tasks=["ChooseAttr"], samples_per_task=12)
    rows = load_samples(profile, cache=False)["ChooseAttr"][:6]
    jobs = [("tiny-llava-1.5", rows), ("tiny-llava-1.6", rows[:4])]
    kw = {"batch_size": 4, "target": profile.target, "progress": False}
    serial = ChapterModels(dataclasses.replace(
        profile, parallel=dataclasses.replace(profile.parallel, backend="sequential")))  # fmt: skip
    one = serial.knockout_features_many(jobs, "image->question", cache=False, **kw)
    two = ChapterModels(profile).knockout_features_many(jobs, "image->question", cache=False, **kw)
    for a, b in zip(one, two, strict=True):
        assert (a.model, a.task, len(a.qid)) == (b.model, b.task, len(b.qid))
        np.testing.assert_array_equal(a.V, b.V)
        np.testing.assert_array_equal(a.L, b.L)
        np.testing.assert_array_equal(a.option_logits, b.option_logits)
    # a warm read loads no model, on workers or here
    store = ArrayCache(tmp_path / "cache")
    ChapterModels(profile).knockout_features_many(jobs, "image->question", cache=store, **kw)
    monkeypatch.setattr("pidlib.book.knockouts.load_model", _no_model_here)
    again = ChapterModels(profile).knockout_features_many(jobs, "image->question", cache=store,
                                                          **kw)  # fmt: skip
    np.testing.assert_array_equal(again[0].V, one[0].V)


def _no_model_here(*args, **kwargs):
    raise AssertionError("a model was loaded although its knockout features are cached")


def test_sweep_on_workers_equals_the_serial_run(tmp_path, monkeypatch):
    """The windowed sweep's (model, task, window) tables missing from the cache run on the CPU
    workers and equal a serial run's; a warm read loads no model."""
    monkeypatch.setattr("pidlib.book.workers.MIN_FORWARDS", 0)  # these few forwards too
    import pandas as pd

    from pidlib.book.inputs import load_features, load_samples
    from pidlib.book.knockouts import ChapterModels, sweep_table
    from pidlib.config.profiles import load_profile

    monkeypatch.setenv("PIDBOOK_CACHE", str(tmp_path / "cache"))
    profile = load_profile("smoke", tasks=["ChooseAttr"], samples_per_task=10,
                           knockout={"stride": 4, "windows": [1, 3]})  # fmt: skip
    samples = {t: s[:10] for t, s in load_samples(profile, cache=False).items()}
    clean = load_features(profile, samples=samples, cache=False, progress=False)
    serial = dataclasses.replace(
        profile, parallel=dataclasses.replace(profile.parallel, backend="sequential")
    )
    one = sweep_table(serial, samples, clean, 4, ChapterModels(serial))
    monkeypatch.setenv("PIDBOOK_CACHE", str(tmp_path / "cache2"))
    two = sweep_table(profile, samples, clean, 4, ChapterModels(profile))
    # models x windows x questions x flows x centres
    assert len(one) == 2 * 2 * 4 * len(profile.knockout.flows) * 2
    pd.testing.assert_frame_equal(one, two)
    monkeypatch.setattr("pidlib.book.knockouts.load_model", _no_model_here)
    monkeypatch.setattr("pidlib.book.workers.load_model", _no_model_here)
    pd.testing.assert_frame_equal(sweep_table(profile, samples, clean, 4, ChapterModels(profile)),
                                  one)  # fmt: skip


def _pid_of(model):
    import os

    return model, os.getpid()


def test_model_calls_below_the_worker_threshold_run_here():
    """Too few forwards to pay for worker processes: the calls run in this process, in order,
    with the models ``local`` gives."""
    import os

    from pidlib.book.workers import MIN_FORWARDS, run_model_calls
    from pidlib.config.profiles import load_profile

    calls = [("a", _pid_of, (), {}), ("b", _pid_of, (), {})]
    got = run_model_calls(load_profile("smoke"), calls, str.upper, MIN_FORWARDS - 1)
    assert got == [("A", os.getpid()), ("B", os.getpid())]


LAST_FLOWS = ["image->last", "question->last", "last->last"]


@pytest.mark.parametrize(("family", "impl", "rows"), [
    ("llava", "eager", 3), ("llava_next", "eager", 3), ("llava", "sdpa", 3), ("llava", "sdpa", 1),
])  # fmt: skip
def test_knockouts_into_the_last_position_share_one_prefix_forward(
    family, impl, rows, tiny_tokenizer, tiny_samples, make_image, tmp_path
):
    """Knockouts whose target is the last prompt position, computed together from one forward
    of the rest of each prompt, give what one full knocked-out forward each gives: V and L bit
    for bit (the clean ones), the last position's states and logits to float32 rounding, the
    same answers; a windowed one too; eager and sdpa attention, padded rows (a mask) and one
    row (sdpa: no mask). Each lands in the cache under knockout_features's key."""
    from pidlib.core.cache import ArrayCache
    from pidlib.extract.features import extract_features
    from pidlib.interventions.knockout import cached_knockout_features, knockout_features_group
    from pidlib.models.fingerprint import model_fingerprint

    loaded = _tiny(family, tiny_tokenizer)
    if impl != "eager":
        loaded.model.set_attn_implementation(impl)
    first = tiny_samples[0]  # one task; questions and images of different lengths: left padding
    others = [dataclasses.replace(first, qid="t0b", question="Is the tall jar full or empty?",
                                  image=make_image(40, 24, seed=9)),
              dataclasses.replace(first, qid="t0c", image=make_image(24, 56, seed=2))]  # fmt: skip
    samples = [first, *others][:rows]
    specs = [*LAST_FLOWS, KnockoutSpec.windowed("image->last", center=3, k=1)]
    kw = {"progress": False, "max_new_tokens": 2, "correct_only": False, "batch_size": 2}
    clean = extract_features(loaded, samples, cache=False, **kw)
    store = ArrayCache(tmp_path)
    shared = knockout_features_group(loaded, samples, specs, cache=store, **kw)
    for spec, got in zip(specs, shared, strict=True):
        full = knockout_features(loaded, samples, spec, cache=False, **kw)
        for k in ("V", "L"):
            np.testing.assert_array_equal(getattr(got, k), getattr(full, k))
            np.testing.assert_array_equal(getattr(got, k), getattr(clean, k))
        np.testing.assert_allclose(got.option_logits, full.option_logits, atol=1e-4)
        np.testing.assert_allclose(got.Last, full.Last, atol=1e-4)
        np.testing.assert_array_equal(got.answer, full.answer)
        assert not np.allclose(got.Last[:, -1], clean.Last[:, -1])  # the knockout acts
        ident = model_fingerprint(loaded)
        cached = cached_knockout_features(ident, loaded.name, samples, spec, cache=store, **kw)
        np.testing.assert_array_equal(cached.option_logits, got.option_logits)


def test_the_chapter_groups_only_flows_into_the_last_position():
    from pidlib.book.knockouts import ChapterModels
    from pidlib.config.profiles import load_profile

    models = ChapterModels(load_profile("cpu"))
    assert models.last_group("question->last") == ["question->last", "image->last", "last->last"]
    assert models.last_group("image->question") == ["image->question"]
