"""Builders for the embedded tiny LLaVA-family models: tokenizer, processor, config, weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from pidlib.models.families import ANSWER_INSTRUCTION, check_family

__all__ = [
    "SPECIAL_TOKENS",
    "PROMPT_WORDS",
    "build_tokenizer",
    "build_processor",
    "tiny_config",
    "build_model",
    "model_class",
    "build_untrained",
]

#: Special tokens of the embedded word-level tokenizers, in id order (``<pad>`` = 0 ...).
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<s>", "</s>", "<unk>", "<image>")

#: Words of the prompt template; :func:`build_tokenizer` always puts them in the vocabulary.
PROMPT_WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(f"USER : ASSISTANT : {ANSWER_INSTRUCTION} ? ,".lower().replace(".", " .").split())
)


def build_tokenizer(words: Sequence[str]):
    """A lower-casing word-level fast tokenizer with offsets, for the embedded models.

    ``words`` are words or phrases; each is lower-cased and split like running text (whitespace,
    then punctuation runs), and every piece becomes one vocabulary entry. Ids: the
    :data:`SPECIAL_TOKENS` first (``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<image>`` 4),
    then :data:`PROMPT_WORDS`, then new pieces in first-seen order. Encoding prepends ``<s>``.
    Returns a ``PreTrainedTokenizerFast`` (transformers' tokenizers backend).
    """
    from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    if isinstance(words, str) or not isinstance(words, Sequence):
        raise ValueError(
            "build_tokenizer: words must be a sequence of strings, not a single string"
        )
    pre = pre_tokenizers.Whitespace()
    pieces: dict[str, None] = dict.fromkeys(PROMPT_WORDS)
    for w in words:
        if not isinstance(w, str) or not w.strip():
            raise ValueError(f"build_tokenizer: every word must be a non-empty string, got {w!r}")
        if w in SPECIAL_TOKENS:
            continue
        pieces.update(dict.fromkeys(p for p, _ in pre.pre_tokenize_str(w.lower())))
    vocab = {
        tok: i
        for i, tok in enumerate((*SPECIAL_TOKENS, *(p for p in pieces if p not in SPECIAL_TOKENS)))
    }
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIAL_TOKENS])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        padding_side="left",
    )


def _default_pinpoints(image_size: int) -> list[list[int]]:
    """LLaVA-1.6's grid shapes (1x2, 2x1, 2x2, 3x1, 1x3 crops) at ``image_size`` per crop."""
    s = image_size
    return [[s, 2 * s], [2 * s, s], [2 * s, 2 * s], [3 * s, s], [s, 3 * s]]


def build_processor(
    family: str,
    tokenizer,
    *,
    image_size: int,
    patch_size: int,
    grid_pinpoints: Sequence[Sequence[int]] | None = None,
    pad_to_square: bool = True,
):
    """A real ``LlavaProcessor`` / ``LlavaNextProcessor`` around a PIL image processor.

    Images are resized to ``image_size`` pixels (LLaVA-1.5: padded to a square first when
    ``pad_to_square``, as the original LLaVA-1.5 did; LLaVA-NeXT: a base view plus a grid of
    ``image_size`` crops chosen among ``grid_pinpoints`` (height, width) in pixels). The image
    placeholder expands to one token per image feature (CLS dropped, "default" strategy).
    """
    from transformers import LlavaNextProcessor, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil
    from transformers.models.llava_next.image_processing_pil_llava_next import (
        LlavaNextImageProcessorPil,
    )

    check_family(family)
    if image_size <= 0 or patch_size <= 0 or image_size % patch_size:
        raise ValueError(
            f"image_size {image_size} must be a positive multiple of patch_size {patch_size}"
        )
    sizes = {
        "size": {"shortest_edge": image_size},
        "crop_size": {"height": image_size, "width": image_size},
    }
    common = {
        "patch_size": patch_size,
        "vision_feature_select_strategy": "default",
        "num_additional_image_tokens": 1,
        "chat_template": _CHAT_TEMPLATE,
    }
    if family == "llava":
        ip = LlavaImageProcessorPil(**sizes, do_pad=pad_to_square)
        return LlavaProcessor(image_processor=ip, tokenizer=tokenizer, **common)
    pins = [list(map(int, p)) for p in (grid_pinpoints or _default_pinpoints(image_size))]
    if any(len(p) != 2 or p[0] % image_size or p[1] % image_size for p in pins):
        raise ValueError(
            f"grid_pinpoints must be (height, width) multiples of {image_size}: {pins}"
        )
    ip = LlavaNextImageProcessorPil(**sizes, image_grid_pinpoints=pins)
    return LlavaNextProcessor(image_processor=ip, tokenizer=tokenizer, **common)


# The Vicuna format of llava-hf's 1.5 / 1.6-vicuna templates: "USER: <image>\n{text} ASSISTANT:".
_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'][0]['text'] + ' ' }}"
    "{% else %}{{ message['role'].upper() + ': ' }}"
    "{% for c in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}"
    "{% endfor %}"
    "{% for c in message['content'] | selectattr('type', 'equalto', 'text') %}{{ c['text'] + ' ' }}"
    "{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def tiny_config(
    family: str,
    *,
    vocab_size: int,
    image_token_id: int,
    hidden: int = 64,
    layers: int = 4,
    heads: int = 4,
    intermediate: int | None = None,
    vision_hidden: int = 32,
    vision_layers: int = 2,
    vision_heads: int = 2,
    image_size: int = 32,
    patch_size: int = 8,
    grid_pinpoints: Sequence[Sequence[int]] | None = None,
    max_positions: int = 512,
    pad_token_id: int = 0,
    bos_token_id: int = 1,
    eos_token_id: int = 2,
):
    """A ``LlavaConfig`` / ``LlavaNextConfig``: CLIP vision tower + Llama decoder, tiny sizes.

    Features come from the vision tower's penultimate layer without CLS, as in LLaVA; an image
    yields ``(image_size // patch_size) ** 2`` features (NeXT: base view + unpadded grid + one
    newline per grid row). ``grid_pinpoints`` defaults to LLaVA-1.6's five shapes.
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaNextConfig

    check_family(family)
    if hidden % heads or vision_hidden % vision_heads:
        raise ValueError("hidden sizes must be divisible by their number of heads")
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
    if not 0 <= image_token_id < vocab_size:
        raise ValueError(
            f"image_token_id {image_token_id} outside the vocabulary (size {vocab_size})"
        )
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=4 * vision_hidden,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate or 4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=False,
    )
    common = {
        "vision_config": vision,
        "text_config": text,
        "image_token_id": image_token_id,
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
    }
    if family == "llava":
        return LlavaConfig(**common, image_seq_length=(image_size // patch_size) ** 2)
    pins = [list(map(int, p)) for p in (grid_pinpoints or _default_pinpoints(image_size))]
    return LlavaNextConfig(**common, image_grid_pinpoints=pins)


def model_class(family: str):
    """``LlavaForConditionalGeneration`` or ``LlavaNextForConditionalGeneration``."""
    from transformers import LlavaForConditionalGeneration, LlavaNextForConditionalGeneration

    check_family(family)
    return LlavaForConditionalGeneration if family == "llava" else LlavaNextForConditionalGeneration


def build_model(config, seed: int):
    """A randomly initialised model for ``config`` (eager attention, float32, eval mode).

    Initialisation is seeded with ``seed`` without touching the global RNG state.
    """
    family = check_family(getattr(config, "model_type", None))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(family)._from_config(config, attn_implementation="eager")
    return model.eval()


def build_untrained(name: str, seed: int = 0):
    """An embedded model's exact architecture, tokenizer and processor with fresh random weights.

    Reads ``config.json`` and the processor files of ``name`` (a registry name or a folder) and
    never its weights, so tests and benchmarks get a realistic untrained model without the
    training code. Returns a :class:`~pidlib.models.loaded.LoadedModel` (eval mode, no grads).
    """
    from transformers import AutoConfig, AutoProcessor

    from pidlib.models.families import resolve_model
    from pidlib.models.loaded import LoadedModel

    source, local = resolve_model(name)
    if not local:
        raise ValueError(f"build_untrained: {name!r} is not an embedded model or a local folder")
    config = AutoConfig.from_pretrained(source, local_files_only=True)
    processor = AutoProcessor.from_pretrained(source, local_files_only=True)
    model = build_model(config, seed).requires_grad_(False)
    return LoadedModel.from_parts(model, processor, name=f"{Path(source).name}-untrained")
