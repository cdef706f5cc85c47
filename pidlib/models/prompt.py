"""The paper's prompt and batched encoding with exact image / question / last token positions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from pidlib.models.families import (
    ANSWER_CUE,
    ANSWER_INSTRUCTION,
    FAMILIES,
    PROMPT_STYLES,
    VICUNA_SYSTEM,
)

if TYPE_CHECKING:
    from pidlib.data.tasks import Sample
    from pidlib.models.loaded import LoadedModel

__all__ = [
    "Positions",
    "Encoded",
    "build_prompt",
    "encode",
    "image_feature_counts",
    "check_image_tokens",
]


def _prompt_parts(question: str, family: str, style: str = "hf") -> tuple[str, int, int]:
    """``(prompt, start, end)``: the prompt and the character span of the question inside it."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {FAMILIES}")
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {PROMPT_STYLES}")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be a non-empty string, got {question!r}")
    q = question.strip()
    if "<image>" in q:
        raise ValueError(f"question contains the image placeholder '<image>': {question!r}")
    head = "USER: <image>\n" if style == "hf" else f"{VICUNA_SYSTEM} USER: <image>\n"
    sep = "\n" if style == "hf" else " \n"
    prompt = f"{head}{q}{sep}{ANSWER_INSTRUCTION} {ANSWER_CUE}"
    return prompt, len(head), len(head) + len(q)


def build_prompt(question: str, family: str, *, style: str = "hf") -> str:
    """The paper's prompt: image, question, then the single-word instruction.

    ``style="hf"`` (default): the Vicuna format that llava-hf's chat templates for LLaVA-1.5
    and LLaVA-1.6-vicuna render for one user turn holding an image and the text
    ``"{question}\\n{ANSWER_INSTRUCTION}"`` (the same for both families)::

        USER: <image>\\n{question}\\nAnswer the question using a single word or phrase. ASSISTANT:

    ``style="zhang"``: as Zhang et al.'s code builds it, :data:`VICUNA_SYSTEM` first and
    ``" \\n"`` between the question and the instruction.
    """
    return _prompt_parts(question, family, style)[0]


@dataclass(frozen=True)
class Positions:
    """Token indices of one sample in its (padded) batch row.

    ``image``: the expanded image-feature block (its length varies per image for LLaVA-NeXT);
    ``question``: the raw question's tokens only (no template, no instruction); ``last``: the
    final input position, whose logits predict the first answer token.
    """

    image: tuple[int, ...]
    question: tuple[int, ...]
    last: int

    def __post_init__(self) -> None:
        for name in ("image", "question"):
            idx = getattr(self, name)
            if not idx:
                raise ValueError(f"Positions: empty {name} span")
            if list(idx) != list(range(idx[0], idx[0] + len(idx))):
                raise ValueError(f"Positions: {name} span is not contiguous: {idx}")
        if not self.image[-1] < self.question[0] <= self.question[-1] < self.last:
            raise ValueError("Positions: expected image < question < last")


@dataclass(frozen=True, eq=False)
class Encoded:
    """A batch ready for ``model(**inputs)`` plus each sample's :class:`Positions` and prompt.

    ``inputs``: ``input_ids``, ``attention_mask``, ``position_ids`` (B, T); ``pixel_values``
    (B, 3, H, W) or, for LLaVA-NeXT, (B, crops, 3, H, W) with ``image_sizes`` (B, 2).
    """

    inputs: dict[str, torch.Tensor]
    positions: tuple[Positions, ...]
    prompts: tuple[str, ...]


def _check_samples(samples: Sequence[Sample]) -> list[Sample]:
    out = list(samples)
    if not out:
        raise ValueError("no samples given")
    return out


def encode(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    *,
    padding_side: str = "left",
    style: str | None = None,
) -> Encoded:
    """Tokenise a batch of samples (images loaded) and locate the image, question, last tokens.

    The question span comes from the fast tokenizer's offset mapping (tokens whose characters
    overlap the question's characters, after the image placeholder's expansion); the image
    block is the run of expanded image tokens. Tensors are moved to the model's device, pixel
    values to its dtype. With left padding every row's ``last`` is ``T - 1``. ``style``
    defaults to ``loaded.prompt_style``.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    samples = _check_samples(samples)
    if not getattr(loaded.tokenizer, "is_fast", False):
        raise ValueError("encode needs a fast tokenizer: token positions come from its offsets")
    style = style or getattr(loaded, "prompt_style", "hf")
    parts = [_prompt_parts(s.question, loaded.family, style) for s in samples]
    images = [s.load_image() for s in samples]
    batch = loaded.processor(
        images=images,
        text=[p[0] for p in parts],
        return_tensors="pt",
        padding=True,
        padding_side=padding_side,
        return_offsets_mapping=True,
        return_text_replacement_offsets=True,
    )
    offsets = batch.pop("offset_mapping")
    replacements = batch.pop("text_replacement_offsets")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    image_id = loaded.image_token_id
    positions = []
    for b, (_, q0, q1) in enumerate(parts):
        # Shift the question's character span by the growth of placeholders expanded before it.
        shift = sum(
            len(r["replacement"]) - (r["span"][1] - r["span"][0])
            for r in replacements[b]
            if r["span"][1] <= q0
        )
        q0, q1 = q0 + shift, q1 + shift
        real = mask[b].bool()
        start, end = offsets[b, :, 0], offsets[b, :, 1]
        in_q = real & (ids[b] != image_id) & (end > start) & (start < q1) & (end > q0)
        image = torch.nonzero(real & (ids[b] == image_id)).flatten().tolist()
        question = torch.nonzero(in_q).flatten().tolist()
        last = int(torch.nonzero(real).flatten()[-1])
        try:
            positions.append(Positions(tuple(image), tuple(question), last))
        except ValueError as err:
            raise ValueError(f"sample {samples[b].qid}: {err}") from err
    inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
    device, dtype = loaded.device, loaded.dtype
    inputs = {k: v.to(device) for k, v in inputs.items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    return Encoded(inputs, tuple(positions), tuple(p[0] for p in parts))


@torch.no_grad()
def image_feature_counts(loaded: LoadedModel, inputs: dict[str, torch.Tensor]) -> list[int]:
    """Number of image features the model's own image-feature function makes for each image."""
    kw = {"pixel_values": inputs["pixel_values"]}
    if "image_sizes" in inputs:
        kw["image_sizes"] = inputs["image_sizes"]
    out = loaded.model.get_image_features(**kw)
    feats = getattr(out, "pooler_output", out)
    return [int(f.shape[0]) for f in feats]


def check_image_tokens(loaded: LoadedModel, sizes=((30, 70), (64, 40), (50, 50))) -> None:
    """Raise ``ValueError`` unless the processor expands ``<image>`` into exactly as many tokens
    as the model makes image features, for blank images of the given (height, width) sizes."""
    from PIL import Image

    proc = loaded.processor
    for h, w in sizes:
        batch = proc(images=[Image.new("RGB", (w, h), (128, 128, 128))], text=[proc.image_token],
                     return_tensors="pt")  # fmt: skip
        n_tokens = int((batch["input_ids"] == loaded.image_token_id).sum())
        inputs = {k: v.to(loaded.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        inputs["pixel_values"] = inputs["pixel_values"].to(loaded.dtype)
        (n_features,) = image_feature_counts(loaded, inputs)
        if n_tokens != n_features:
            raise ValueError(
                f"{loaded.name}: the processor expands an {h}x{w} image into {n_tokens} image "
                f"tokens but the model makes {n_features} features; make the processor's "
                "patch_size, num_additional_image_tokens and vision_feature_select_strategy "
                "agree with the model config"
            )
