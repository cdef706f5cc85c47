"""LLaMA's vendored vocabulary and llava-hf's processors: token positions and first answer tokens
on real GQA questions (the six task lists under ``fixtures/gqa-samples/``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pidlib.data.gqa import load_zhang_csv
from pidlib.data.tasks import TASKS
from pidlib.models.answers import answer_token_variants, first_token_collisions, option_token_ids
from pidlib.models.llava_hf import llava_hf_config, llava_hf_processor
from pidlib.models.loaded import LoadedModel
from pidlib.models.prompt import check_image_tokens, encode
from pidlib.models.tiny import build_model
from pidlib.models.vocab import llama_tokenizer, llama_vocab

CSV_DIR = Path(__file__).parent / "fixtures" / "gqa-samples"

# Reference encodings from llama-tokenizer-js 1.2.2's test suite (ids produced by Meta's
# SentencePiece LLaMA tokenizer; "<s>" and the SentencePiece dummy prefix included).
SENTENCEPIECE_CASES = [
    ("grabbed", [1, 2646, 1327, 287]),
    (" grabbed", [1, 29871, 2646, 1327, 287]),
    ("           grabbed", [1, 9651, 2646, 1327, 287]),
    ("\n", [1, 29871, 13]),
    (" \n", [1, 259, 13]),
    ("\ttabs\t\t\t\tout here", [1, 29871, 12, 21175, 12, 12, 12, 12, 449, 1244]),
    ("ax\n####\nboo", [1, 4853, 13, 4136, 13, 833, 29877]),
    ("镇", [1, 29871, 30411]),
    ("🦙", [1, 29871, 243, 162, 169, 156]),
    ("🦙Ꙋ", [1, 29871, 243, 162, 169, 156, 237, 156, 141]),
    ("Ꙋ🦙", [1, 29871, 237, 156, 141, 243, 162, 169, 156]),
]


def _sentencepiece_equivalent():
    """The vocabulary in the pipeline that reproduces SentencePiece (dummy prefix always)."""
    from tokenizers import Tokenizer, normalizers, processors
    from tokenizers.models import BPE

    tokens, merges = llama_vocab()
    t = Tokenizer(BPE(vocab={s: i for i, s in enumerate(tokens)}, merges=list(merges),
                      unk_token="<unk>", fuse_unk=True, byte_fallback=True))  # fmt: skip
    t.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    t.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return t


@pytest.mark.parametrize(("text", "ids"), SENTENCEPIECE_CASES)
def test_vendored_vocabulary_is_llamas(text, ids):
    assert _sentencepiece_equivalent().encode(text).ids == ids


def test_llama_tokenizer():
    tok = llama_tokenizer()
    assert len(tok) == 32002 and type(tok).__name__ == "LlamaTokenizer"
    assert tok.convert_tokens_to_ids(["<unk>", "<s>", "</s>", "<image>", "<pad>"]) == [
        0, 1, 2, 32000, 32001,
    ]  # fmt: skip
    assert tok.pad_token_id == 32001 and tok.padding_side == "left"
    assert tok("Hello world")["input_ids"] == [1, 15043, 3186]
    assert tok("ASSISTANT: yes", add_special_tokens=False)["input_ids"][-1] == 4874  # "▁yes"
    assert tok.decode(tok("Is the jar full or empty?")["input_ids"], skip_special_tokens=True) == (
        "Is the jar full or empty?"
    )


class _Stub(torch.nn.Module):
    """Stands in for a model where only the config, device and dtype are read (``encode``)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.w = torch.nn.Parameter(torch.zeros(1))


def _narrow(family: str):
    """The real processor with a model of the real vision geometry (336 px, patch 14, the
    anyres grid, image_newline) but narrow widths, so image features are counted cheaply."""
    cfg = llava_hf_config(family, layers=1)
    vc, tc = cfg.vision_config, cfg.text_config
    for c, sizes in ((vc, (16, 32, 2, 2)), (tc, (16, 32, 2, 2))):
        c.hidden_size, c.intermediate_size, c.num_attention_heads = sizes[:3]
    vc.num_hidden_layers, tc.num_key_value_heads, tc.head_dim = 2, 2, 8
    return LoadedModel.from_parts(build_model(cfg, seed=0), llava_hf_processor(family))


def _samples(per_task: int = 12):
    rng = np.random.default_rng(0)
    out = []
    for task in TASKS:
        for s in load_zhang_csv(CSV_DIR / f"{task}_sample.csv", "/none")[:per_task]:
            h, w = (375, 500) if len(out) % 2 else (500, 333)  # GQA's usual sizes, both ways
            img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            out.append(type(s)(**{**s.__dict__, "image": img}))
    return out


@pytest.fixture(scope="module", params=["llava", "llava_next"])
def real_processor(request):
    family = request.param
    cfg = llava_hf_config(family, layers=1)
    return LoadedModel.from_parts(_Stub(cfg), llava_hf_processor(family)), family


def test_positions_on_real_gqa_questions(real_processor):
    loaded, family = real_processor
    samples = _samples()
    tok = loaded.tokenizer
    for i in range(0, len(samples), 6):
        batch = samples[i : i + 6]
        enc = encode(loaded, batch)
        ids = enc.inputs["input_ids"]
        for b, (s, pos) in enumerate(zip(batch, enc.positions, strict=True)):
            row = ids[b]
            assert pos.last == ids.shape[1] - 1
            assert tok.decode(row[pos.last - 4 : pos.last + 1]).strip() == "ASSISTANT:"
            assert bool((row[list(pos.image)] == 32000).all()) and int((row == 32000).sum()) == len(
                pos.image
            )  # fmt: skip
            if family == "llava":
                assert len(pos.image) == 576
            else:  # anyres: base 576 + grid + a newline per row; more than one view
                assert len(pos.image) > 576 + 24
            assert tok.decode(row[list(pos.question)]).strip() == s.question.strip()
            # Nothing of the template or the instruction is in the question span.
            assert pos.question[0] > pos.image[-1] and row[pos.question[0] - 1] == 13  # "\n"


@pytest.mark.parametrize("family", ["llava", "llava_next"])
def test_processor_agrees_with_the_models_image_features(family):
    """The image-token count equals the number of features the real-geometry model makes."""
    loaded = _narrow(family)
    check_image_tokens(loaded, sizes=((375, 500), (500, 333), (48, 48)))


def test_first_answer_token_of_every_answer():
    loaded = LoadedModel.from_parts(_Stub(llava_hf_config("llava", layers=1)),
                                    llava_hf_processor("llava"))  # fmt: skip
    tok = loaded.tokenizer
    samples = [s for t in TASKS for s in load_zhang_csv(CSV_DIR / f"{t}_sample.csv", "/none")]
    option_sets = {s.options for s in samples}
    collided = []
    for opts in option_sets:
        ids = answer_token_variants(loaded, opts)
        for o, v in zip(opts, ids, strict=True):
            first = tok.convert_ids_to_tokens(v[0])
            assert first.startswith("▁") and o.startswith(first[1:].lower()), (o, first)
        collided += first_token_collisions(loaded, opts)
    # LLaMA's vocabulary has one collision in the samples: "cloudy" / "cloudless" ("▁cloud").
    assert collided == [("cloudy", "cloudless")] or collided == [("cloudless", "cloudy")]
    # It never stops a run: the option ids are read (both alike), with a warning.
    with pytest.warns(UserWarning, match="share a first token"):
        rows = option_token_ids(loaded, [s for s in samples if "cloudless" in s.options])
    assert rows and all(r[0] == r[1] and r[0][0] == 9570 for r in rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        option_token_ids(loaded, [s for s in samples if "cloudless" not in s.options])
