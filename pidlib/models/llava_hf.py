"""llava-hf's LLaVA-1.5-7B / LLaVA-1.6-Vicuna-7B processors and configs, built offline.

The processors use the genuine LLaMA vocabulary (:mod:`pidlib.models.vocab`) and the settings of
llava-hf's ``llava-1.5-7b-hf`` and ``llava-v1.6-vicuna-7b-hf`` (CLIP ViT-L/14 at 336 pixels: 576
image tokens, ``vision_feature_select_strategy="default"``, ``vision_feature_layer=-2``; 1.6 adds
the anyres grid and one ``image_newline`` per grid row). The configs are the real ones, with the
number of decoder layers as a parameter so a CPU can run the exact path with random weights.
"""

from __future__ import annotations

from pidlib.models.families import check_family
from pidlib.models.tiny import _CHAT_TEMPLATE  # llava-hf's Vicuna chat template
from pidlib.models.vocab import LLAVA_ADDED_TOKENS, llama_tokenizer

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGE_SIZE",
    "PATCH_SIZE",
    "LLAVA_16_PINPOINTS",
    "llava_hf_processor",
    "llava_hf_config",
]

#: OpenAI CLIP's normalisation, as llava-hf's image processors use it.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: CLIP ViT-L/14-336: image side and patch side in pixels ((336 / 14) ** 2 = 576 image tokens).
IMAGE_SIZE, PATCH_SIZE = 336, 14
#: LLaVA-1.6's anyres grid shapes, (height, width) in pixels.
LLAVA_16_PINPOINTS: tuple[tuple[int, int], ...] = (
    (336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008),
)  # fmt: skip


def llava_hf_processor(family: str):
    """llava-hf's processor for ``family`` ("llava": 1.5, "llava_next": 1.6) on LLaMA's vocabulary.

    1.5: resize the shortest edge to 336, centre-crop 336 (llava-hf's CLIP image processor; the
    original LLaVA code padded to a square first), 576 image tokens. 1.6: a 336 base view plus
    the best-fitting anyres grid of 336 crops (:data:`LLAVA_16_PINPOINTS`), padded. PIL image
    processors (no torchvision needed), bicubic resampling, CLIP normalisation.
    """
    from transformers import LlavaNextProcessor, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil
    from transformers.models.llava_next.image_processing_pil_llava_next import (
        LlavaNextImageProcessorPil,
    )

    check_family(family)
    image = {
        "size": {"shortest_edge": IMAGE_SIZE},
        "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "resample": 3,  # bicubic
        "do_convert_rgb": True,
    }
    common = {
        "patch_size": PATCH_SIZE,
        "vision_feature_select_strategy": "default",
        "num_additional_image_tokens": 1,  # CLIP's CLS token, dropped by "default"
        "image_token": "<image>",
        "chat_template": _CHAT_TEMPLATE,
    }
    tok = llama_tokenizer()
    if family == "llava":
        ip = LlavaImageProcessorPil(**image, do_center_crop=True, do_pad=False)
        return LlavaProcessor(image_processor=ip, tokenizer=tok, **common)
    pins = [list(p) for p in LLAVA_16_PINPOINTS]
    ip = LlavaNextImageProcessorPil(**image, do_center_crop=True, do_pad=True,
                                    image_grid_pinpoints=pins)  # fmt: skip
    return LlavaNextProcessor(image_processor=ip, tokenizer=tok, **common)


def llava_hf_config(family: str, *, layers: int = 32, vision_layers: int = 24):
    """The real ``LlavaConfig`` / ``LlavaNextConfig`` of the 7B models with ``layers`` decoder
    layers (32 in the released checkpoints): a Vicuna-7B Llama decoder (4096 wide, 32 heads,
    MLP 11008, vocabulary 32064) and a CLIP ViT-L/14-336 tower (1024 wide, ``vision_layers``
    layers: 24 in the release, 16 heads), a two-layer GELU projector, features from the tower's
    penultimate layer without CLS."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaNextConfig

    check_family(family)
    for name, v, top in (("layers", layers, 32), ("vision_layers", vision_layers, 24)):
        low = 2 if name == "vision_layers" else 1  # the penultimate layer must exist
        if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= top:
            raise ValueError(f"{name} must be an integer in [{low}, {top}], got {v!r}")
    vision = CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=vision_layers,
        num_attention_heads=16,
        image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=768,
        hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )  # fmt: skip
    text = LlamaConfig(
        vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
        rms_norm_eps=1e-5, rope_theta=10000.0, hidden_act="silu", tie_word_embeddings=False,
        pad_token_id=LLAVA_ADDED_TOKENS["<pad>"], bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    common = {
        "vision_config": vision,
        "text_config": text,
        "image_token_id": LLAVA_ADDED_TOKENS["<image>"],
        "projector_hidden_act": "gelu",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "image_seq_length": (IMAGE_SIZE // PATCH_SIZE) ** 2,
    }
    if family == "llava":
        return LlavaConfig(**common)
    return LlavaNextConfig(**common, image_grid_pinpoints=[list(p) for p in LLAVA_16_PINPOINTS])
