"""Tests of the LLaVA-family model path: builders, prompt, positions, padding, save/load, errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pidlib.data.tasks import Sample
from pidlib.models.answers import (
    answer_token_ids,
    answer_token_variants,
    correct_mask,
    first_token_logits,
    greedy_answers,
    normalize_answer,
)
from pidlib.models.families import ANSWER_INSTRUCTION, KNOWN_MODELS, VICUNA_SYSTEM
from pidlib.models.load import load_model
from pidlib.models.loaded import LoadedModel
from pidlib.models.prompt import (
    Positions,
    build_prompt,
    check_image_tokens,
    encode,
    image_feature_counts,
)
from pidlib.models.tiny import (
    SPECIAL_TOKENS,
    build_model,
    build_processor,
    build_tokenizer,
    tiny_config,
)
from pidlib.training.report import save_embedded

# --------------------------------------------------------------------------- prompt and tokenizer


def test_build_prompt_matches_llava_hf_format():
    q = "Is the jar full or empty?"
    expected = f"USER: <image>\n{q}\n{ANSWER_INSTRUCTION} ASSISTANT:"
    assert build_prompt(q, "llava") == expected
    assert build_prompt(f"  {q} ", "llava_next") == expected
    zhang = build_prompt(q, "llava", style="zhang")
    assert zhang == f"{VICUNA_SYSTEM} USER: <image>\n{q} \n{ANSWER_INSTRUCTION} ASSISTANT:"


def test_build_prompt_equals_processor_chat_template(tiny_model):
    q = "Is the jar full or empty?"
    text = f"{q}\n{ANSWER_INSTRUCTION}"
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    rendered = tiny_model.processor.apply_chat_template(conv, add_generation_prompt=True)
    assert rendered == build_prompt(q, tiny_model.family)


@pytest.mark.parametrize(
    ("question", "family", "match"),
    [
        ("", "llava", "non-empty"),
        ("What is <image>?", "llava", "placeholder"),
        ("Is it red?", "qwen", "unknown model family"),
    ],
)
def test_build_prompt_errors(question, family, match):
    with pytest.raises(ValueError, match=match):
        build_prompt(question, family)
    with pytest.raises(ValueError, match="prompt style"):
        build_prompt("Is it red?", "llava", style="chatml")


def test_tokenizer_is_word_level_lowercase_with_offsets(tiny_tokenizer):
    assert [tiny_tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tiny_tokenizer.image_token_id == 4
    enc = tiny_tokenizer("Is the JAR full?", return_offsets_mapping=True)
    toks = tiny_tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert toks == ["<s>", "is", "the", "jar", "full", "?"]
    assert enc["offset_mapping"][1:] == [(0, 2), (3, 6), (7, 10), (11, 15), (15, 16)]
    assert tiny_tokenizer("zebra", add_special_tokens=False)["input_ids"] == [3]  # <unk>


def test_tokenizer_splits_phrases_and_rejects_bad_words():
    tok = build_tokenizer(["T-shirt", "coffee table", "red"])
    for piece in ("t", "-", "shirt", "coffee", "table", "red", "answer", "assistant"):
        assert tok.convert_tokens_to_ids(piece) != tok.unk_token_id, piece
    with pytest.raises(ValueError, match="sequence of strings"):
        build_tokenizer("red blue")
    with pytest.raises(ValueError, match="non-empty"):
        build_tokenizer(["red", " "])


# --------------------------------------------------------------------------- configs and weights


def test_tiny_config_and_build_model_are_seeded(tiny_tokenizer):
    cfg = tiny_config(
        "llava", vocab_size=len(tiny_tokenizer), image_token_id=4, hidden=16, layers=2
    )
    state = torch.random.get_rng_state()
    a, b, c = build_model(cfg, 1), build_model(cfg, 1), build_model(cfg, 2)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.config._attn_implementation == "eager"
    assert not a.training


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"family": "blip"}, "unknown model family"),
        ({"hidden": 30, "heads": 4}, "divisible"),
        ({"image_size": 30}, "multiple of patch_size"),
        ({"image_token_id": 99}, "outside the vocabulary"),
    ],
)
def test_tiny_config_errors(kwargs, match):
    base = {"family": "llava", "vocab_size": 40, "image_token_id": 4}
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        tiny_config(base.pop("family"), **base)


def test_build_processor_errors(tiny_tokenizer):
    with pytest.raises(ValueError, match="multiple of patch_size"):
        build_processor("llava", tiny_tokenizer, image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="grid_pinpoints"):
        build_processor(
            "llava_next", tiny_tokenizer, image_size=32, patch_size=8, grid_pinpoints=[[32, 50]]
        )


# --------------------------------------------------------------------------- encode and positions


def test_forward_runs(tiny_model, tiny_samples):
    enc = encode(tiny_model, tiny_samples)
    with torch.no_grad():
        out = tiny_model.model(**enc.inputs, output_hidden_states=True)
    n, t = enc.inputs["input_ids"].shape
    assert out.logits.shape == (n, t, len(tiny_model.tokenizer))
    assert torch.isfinite(out.logits).all()
    assert len(out.hidden_states) == tiny_model.num_layers + 1


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_image_positions_match_model_features(tiny_model, tiny_samples, padding_side):
    enc = encode(tiny_model, tiny_samples, padding_side=padding_side)
    ids = enc.inputs["input_ids"]
    counts = image_feature_counts(tiny_model, enc.inputs)
    for row, pos, count in zip(ids, enc.positions, counts, strict=True):
        assert (row[list(pos.image)] == tiny_model.image_token_id).all()
        assert int((row == tiny_model.image_token_id).sum()) == len(pos.image) == count
    if tiny_model.family == "llava":
        assert set(counts) == {(32 // 8) ** 2}
    else:  # anyres: base view + unpadded grid + one newline per row; varies with aspect ratio
        assert len(set(counts)) > 1 and min(counts) > (32 // 8) ** 2


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_question_positions_are_the_question_tokens(tiny_model, tiny_samples, padding_side):
    tok = tiny_model.tokenizer
    enc = encode(tiny_model, tiny_samples, padding_side=padding_side)
    for s, row, pos in zip(tiny_samples, enc.inputs["input_ids"], enc.positions, strict=True):
        expected = tok(s.question, add_special_tokens=False)["input_ids"]  # tokenised on its own
        assert row[list(pos.question)].tolist() == expected
        # the template around the question is excluded: image block before, instruction after
        assert pos.question[0] == pos.image[-1] + 1
        after = tok.convert_ids_to_tokens([int(row[pos.question[-1] + 1])])
        assert after == ["answer"]


def test_last_position_and_padding(tiny_model, tiny_samples):
    for side in ("left", "right"):
        enc = encode(tiny_model, tiny_samples, padding_side=side)
        mask = enc.inputs["attention_mask"]
        for row, m, pos in zip(enc.inputs["input_ids"], mask, enc.positions, strict=True):
            assert tiny_model.tokenizer.convert_ids_to_tokens([int(row[pos.last])]) == [":"]
            real = torch.nonzero(m).flatten()
            assert pos.last == int(real[-1])
            if side == "left":
                assert pos.last == mask.shape[1] - 1


def test_batch_positions_shift_by_padding(tiny_model, tiny_samples):
    batch = encode(tiny_model, tiny_samples)
    width = batch.inputs["input_ids"].shape[1]
    for s, pos in zip(tiny_samples, batch.positions, strict=True):
        single = encode(tiny_model, [s])
        shift = width - single.inputs["input_ids"].shape[1]
        (p,) = single.positions
        assert pos.image == tuple(i + shift for i in p.image)
        assert pos.question == tuple(i + shift for i in p.question)
        assert pos.last == p.last + shift


def test_left_padding_gives_single_sample_logits(tiny_model, tiny_samples):
    batched = first_token_logits(tiny_model, tiny_samples, batch_size=len(tiny_samples))
    single = torch.cat([first_token_logits(tiny_model, [s]) for s in tiny_samples])
    assert batched.shape == (len(tiny_samples), len(tiny_model.tokenizer))
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    # right padding, read at each row's own last position, agrees too
    enc = encode(tiny_model, tiny_samples, padding_side="right")
    with torch.no_grad():
        logits = tiny_model.model(**enc.inputs).logits
    right = torch.stack([logits[i, p.last] for i, p in enumerate(enc.positions)])
    torch.testing.assert_close(right, single, atol=1e-5, rtol=0)


def test_positions_validation():
    Positions(image=(1, 2), question=(3, 4), last=6)
    with pytest.raises(ValueError, match="contiguous"):
        Positions(image=(1, 3), question=(4,), last=6)
    with pytest.raises(ValueError, match="empty"):
        Positions(image=(), question=(4,), last=6)
    with pytest.raises(ValueError, match="image < question < last"):
        Positions(image=(5, 6), question=(2, 3), last=9)


def test_encode_errors(tiny_llava, tiny_samples):
    with pytest.raises(ValueError, match="no samples"):
        encode(tiny_llava, [])
    with pytest.raises(ValueError, match="padding_side"):
        encode(tiny_llava, tiny_samples, padding_side="middle")
    q = "Is it red or blue?"
    missing = Sample("m1", "ChooseAttr", q, "red", ("red", "blue"), "x9", image_path="/no/x9.jpg")
    with pytest.raises(FileNotFoundError, match="x9"):
        encode(tiny_llava, [missing])


# --------------------------------------------------------------------------- answers


def test_answer_token_ids_word_level(tiny_llava):
    tok = tiny_llava.tokenizer
    assert answer_token_ids(tiny_llava, ["left", "right"]) == tok.convert_tokens_to_ids(
        ["left", "right"]
    )
    yes, no = tok.convert_tokens_to_ids(["yes", "no"])
    assert answer_token_variants(tiny_llava, ["Yes", "no"]) == [(yes,), (no,)]  # lower-cased
    coffee = tok.convert_tokens_to_ids("coffee")  # a shared first token scores both alike
    assert answer_token_ids(tiny_llava, ["coffee table", "coffee mug"]) == [coffee, coffee]
    with pytest.raises(ValueError, match="not in the tokenizer's vocabulary"):
        answer_token_ids(tiny_llava, ["left", "zebra"])
    with pytest.raises(ValueError, match="at least two"):
        answer_token_ids(tiny_llava, ["left"])


def test_answer_token_ids_take_the_leading_space_token():
    """SentencePiece-style vocabularies: the answer after "ASSISTANT:" is "▁yes", not "yes"."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "▁ASSISTANT:": 1, "yes": 2, "▁yes": 3, "▁Yes": 4, "no": 5, "▁no": 6}
    raw = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>")
    assert tok("yes", add_special_tokens=False)["input_ids"] == [3]  # "first" prepends ▁ ...
    raw.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>")
    stub = SimpleNamespace(tokenizer=tok)
    assert tok("yes", add_special_tokens=False)["input_ids"] == [2]  # ... "never" does not,
    assert answer_token_ids(stub, ["yes", "no"]) == [3, 6]  # but after the cue it is "▁yes"
    assert answer_token_variants(stub, ["yes", "no"]) == [(3, 4), (6,)]  # no "▁No" in vocab


def test_first_token_logits_restricted_to_options(tiny_model, tiny_samples):
    full = first_token_logits(tiny_model, tiny_samples, batch_size=3)
    per_sample = first_token_logits(tiny_model, tiny_samples, batch_size=3, options="sample")
    assert per_sample.shape == (len(tiny_samples), 2)
    for i, s in enumerate(tiny_samples):
        ids = answer_token_ids(tiny_model, s.options)
        torch.testing.assert_close(per_sample[i], full[i, ids], atol=1e-5, rtol=0)
    shared = first_token_logits(tiny_model, tiny_samples, batch_size=2, options=["yes", "no"])
    ids = answer_token_ids(tiny_model, ["yes", "no"])
    torch.testing.assert_close(shared, full[:, ids], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="options must be"):
        first_token_logits(tiny_model, tiny_samples, options="yes")


def test_greedy_answers_follow_the_logits(tiny_model, tiny_samples):
    tok = tiny_model.tokenizer
    answers = greedy_answers(tiny_model, tiny_samples, batch_size=3, max_new_tokens=3)
    assert len(answers) == len(tiny_samples)
    assert answers == greedy_answers(tiny_model, tiny_samples, batch_size=1, max_new_tokens=3)
    first = greedy_answers(tiny_model, tiny_samples, batch_size=4, max_new_tokens=1)
    argmax = first_token_logits(tiny_model, tiny_samples).argmax(-1)
    assert first == [
        normalize_answer(tok.decode([int(i)], skip_special_tokens=True)) for i in argmax
    ]
    for a, a1 in zip(answers, first, strict=True):
        assert a == a.lower() and a.startswith(a1)


def test_normalize_and_correct_mask(tiny_samples):
    assert normalize_answer("  Yes.\nextra") == "yes"
    assert normalize_answer("Light   Brown ") == "light brown"
    assert normalize_answer("") == ""
    mask = correct_mask(["FULL", "right", "yes.", "sphere"], tiny_samples)
    assert mask.dtype == np.bool_ and mask.tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="answers for"):
        correct_mask(["yes"], tiny_samples)


# --------------------------------------------------------------------------- save, load, errors


def test_save_load_round_trip(tiny_model, tiny_samples, tmp_path):
    out = save_embedded(tiny_model, tmp_path / "m", {"description": "a test model", "seed": 0})
    card = json.loads((out / "model_card.json").read_text())
    assert card["family"] == tiny_model.family and card["seed"] == 0
    assert card["n_parameters"] == sum(p.numel() for p in tiny_model.model.parameters())
    assert (out / "README.md").read_text().startswith("# m")
    loaded = load_model(out)
    assert loaded.family == tiny_model.family and loaded.card["seed"] == 0
    assert type(loaded.processor) is type(tiny_model.processor)
    assert not loaded.model.training and loaded.dtype == torch.float32
    assert not any(p.requires_grad for p in loaded.model.parameters())
    a, b = encode(tiny_model, tiny_samples), encode(loaded, tiny_samples)
    assert all(torch.equal(a.inputs[k], b.inputs[k]) for k in a.inputs)
    assert a.positions == b.positions
    with torch.no_grad():
        assert torch.equal(tiny_model.model(**a.inputs).logits, loaded.model(**b.inputs).logits)


def test_save_embedded_needs_a_processor(tiny_llava, tmp_path):
    with pytest.raises(ValueError, match="processor"):
        save_embedded(tiny_llava.model, tmp_path, {})


def test_registry_names_and_unknown_name():
    assert {"tiny-llava-1.5", "tiny-llava-1.6", "llava-1.5-7b", "llava-1.6-7b"} <= set(KNOWN_MODELS)
    assert KNOWN_MODELS["llava-1.6-7b"].source == "llava-hf/llava-v1.6-vicuna-7b-hf"
    with pytest.raises(ValueError, match="unknown model 'llava-9'.*tiny-llava-1.5"):
        load_model("llava-9")


def test_load_model_without_weights(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="config.json missing"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_model(tmp_path)
    monkeypatch.setenv("PIDBOOK_MODELS", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="PIDBOOK_MODELS"):
        load_model("tiny-llava-1.5")


def test_load_model_hub_id_not_cached(tmp_path):
    with pytest.raises(OSError, match="hf download llava-hf/llava-1.5-7b-hf"):
        load_model("llava-1.5-7b", cache_dir=tmp_path)


def test_load_model_rejects_other_architectures(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not a LLaVA family model"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": "float64"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"prompt_style": "x"}, "style"),
    ],
)
def test_load_model_option_errors(tiny_llava, tmp_path, kwargs, match):
    save_embedded(tiny_llava, tmp_path, {})
    with pytest.raises(ValueError, match=match):
        load_model(tmp_path, **kwargs)


def test_loaded_model_from_parts(tiny_llava):
    wrapped = LoadedModel.from_parts(tiny_llava.model, tiny_llava.processor)
    assert wrapped.family == "llava" and wrapped.num_layers == 3 and wrapped.image_token_id == 4
    with pytest.raises(ValueError, match="prompt_style"):
        LoadedModel.from_parts(tiny_llava.model, tiny_llava.processor, prompt_style="x")


def test_check_image_tokens_catches_a_mismatched_processor(tiny_model, tiny_tokenizer):
    check_image_tokens(tiny_model)
    proc = build_processor(tiny_model.family, tiny_tokenizer, image_size=32, patch_size=8)
    proc.num_additional_image_tokens = 0  # forgets CLIP's CLS token: one token short
    bad = LoadedModel.from_parts(tiny_model.model, proc)
    with pytest.raises(ValueError, match="image tokens but the model makes"):
        check_image_tokens(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_requested_without_cuda(tiny_llava, tmp_path):
    save_embedded(tiny_llava, tmp_path, {})
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_model(tmp_path, device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bfloat16_matches_cpu(tiny_llava_next, tiny_samples, tmp_path):
    save_embedded(tiny_llava_next, tmp_path, {})
    gpu = load_model(tmp_path, device="cuda", dtype="bfloat16")
    assert gpu.device.type == "cuda" and gpu.dtype == torch.bfloat16
    assert load_model(tmp_path, device="cuda").dtype == torch.float32  # "auto": as stored
    cpu_logits = first_token_logits(tiny_llava_next, tiny_samples)
    gpu_logits = first_token_logits(gpu, tiny_samples, batch_size=2)
    torch.testing.assert_close(gpu_logits, cpu_logits, atol=0.05, rtol=0.05)  # bf16 rounding
    assert len(greedy_answers(gpu, tiny_samples, batch_size=4)) == len(tiny_samples)


def test_single_task_fixture_encodes(tiny_model, tiny_task_samples):
    enc = encode(tiny_model, tiny_task_samples)
    assert {s.task for s in tiny_task_samples} == {"ChooseAttr"}
    assert len(enc.positions) == 6
    logits = first_token_logits(tiny_model, tiny_task_samples, batch_size=6, options="sample")
    assert logits.shape == (6, 2) and torch.isfinite(logits).all()


def test_load_model_reads_the_legacy_llava_hf_layout(tiny_model, tiny_samples, tmp_path):
    """llava-hf checkpoints keep the image processor in preprocessor_config.json, named after
    the torchvision class (CLIPImageProcessor for 1.5); without torchvision the PIL one loads."""
    save_embedded(tiny_model, tmp_path, {})
    proc_cfg = json.loads((tmp_path / "processor_config.json").read_text())
    image_cfg = proc_cfg.pop("image_processor")
    if tiny_model.family == "llava":
        image_cfg["image_processor_type"] = "CLIPImageProcessor"
        image_cfg.pop("do_pad")
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(image_cfg))
    (tmp_path / "processor_config.json").write_text(json.dumps(proc_cfg))
    (tmp_path / "model_card.json").unlink()  # llava-hf folders carry no pidlib card (checksums)
    loaded = load_model(tmp_path)  # check_image_tokens runs inside
    expected = (
        "CLIPImageProcessorPil" if tiny_model.family == "llava" else "LlavaNextImageProcessorPil"
    )
    assert type(loaded.processor.image_processor).__name__ == expected
    assert (
        encode(loaded, tiny_samples[:1]).positions == encode(tiny_model, tiny_samples[:1]).positions
    )
