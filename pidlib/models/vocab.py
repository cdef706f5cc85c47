"""LLaMA's genuine 32,000-token vocabulary (vendored) as the tokenizer llava-hf's models use."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from pidlib.core.paths import REPO_ROOT

__all__ = ["LLAMA_VOCAB", "LLAVA_ADDED_TOKENS", "llama_vocab", "llama_tokenizer"]

#: The vendored vocabulary and merges (see ``data/tokenizers/llama/README.md``: source, licence).
LLAMA_VOCAB: Path = REPO_ROOT / "data" / "tokenizers" / "llama" / "llama-bpe.json"

#: Tokens llava-hf adds after LLaMA's 32,000, with their ids (LLaVA-1.5 and 1.6-Vicuna alike).
LLAVA_ADDED_TOKENS: dict[str, int] = {"<image>": 32000, "<pad>": 32001}


@lru_cache(maxsize=1)
def llama_vocab() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """``(tokens in id order, merges in priority order)`` read from :data:`LLAMA_VOCAB`."""
    if not LLAMA_VOCAB.is_file():
        raise FileNotFoundError(
            f"the vendored LLaMA vocabulary is missing: {LLAMA_VOCAB} (restore it from git)"
        )
    raw = json.loads(LLAMA_VOCAB.read_text(encoding="utf-8"))
    vocab, merges = tuple(raw["vocab"]), tuple((a, b) for a, b in raw["merges"])
    if len(vocab) != 32000 or len(set(vocab)) != 32000 or vocab[:3] != ("<unk>", "<s>", "</s>"):
        raise ValueError(f"{LLAMA_VOCAB}: not LLaMA's 32,000-token vocabulary")
    return vocab, merges


def llama_tokenizer(*, added: bool = True):
    """transformers' ``LlamaTokenizer`` on LLaMA's vocabulary, as transformers 5 builds it from
    llava-hf's files: byte-fallback BPE, Metaspace pre-tokenizer (prefix "▁" on the first word
    only, ``legacy=False``), ``<s>`` prepended. ``added``: llava-hf's ``<image>`` (32000, special)
    and ``<pad>`` (32001, the padding token) too; left padding."""
    from tokenizers import AddedToken
    from transformers import LlamaTokenizer

    tokens, merges = llama_vocab()
    tok = LlamaTokenizer(
        vocab={t: i for i, t in enumerate(tokens)},
        merges=list(merges),
        legacy=False,
        add_bos_token=True,
        add_eos_token=False,
        padding_side="left",
    )
    if added:
        for text, want in LLAVA_ADDED_TOKENS.items():
            tok.add_tokens([AddedToken(text, special=True, normalized=False)], special_tokens=True)
            if tok.convert_tokens_to_ids(text) != want:
                raise AssertionError(f"{text} got id {tok.convert_tokens_to_ids(text)}, not {want}")
        tok.pad_token = "<pad>"
        tok.image_token = "<image>"  # read by LlavaProcessor
    return tok
