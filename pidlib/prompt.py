"""The paper's prompt, batched encoding with exact image/question/last token positions, answers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from pidlib.models import LoadedModel
    from pidlib.tasks import Sample

__all__ = [
    "FAMILIES",
    "ANSWER_INSTRUCTION",
    "VICUNA_SYSTEM",
    "PROMPT_STYLES",
    "Positions",
    "Encoded",
    "build_prompt",
    "encode",
    "image_feature_counts",
    "check_image_tokens",
    "answer_token_ids",
    "answer_token_variants",
    "first_token_logits",
    "greedy_answers",
    "normalize_answer",
    "correct_mask",
]

#: The two architectures pidlib supports, as ``config.model_type`` spells them.
FAMILIES: tuple[str, ...] = ("llava", "llava_next")

#: The instruction Zhang et al. (CVPR 2025) append to every question.
ANSWER_INSTRUCTION = "Answer the question using a single word or phrase."

_ANSWER_CUE = "ASSISTANT:"


#: Vicuna v1's system prompt, which the original LLaVA code (and Zhang et al.'s) puts first.
VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

#: Prompt styles: ``"hf"`` as llava-hf's chat templates render it; ``"zhang"`` as Zhang et al.'s
#: code builds it with the original LLaVA conversation template (system prompt, " \n").
PROMPT_STYLES: tuple[str, ...] = ("hf", "zhang")


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
    prompt = f"{head}{q}{sep}{ANSWER_INSTRUCTION} {_ANSWER_CUE}"
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


def _first_token(tokenizer, text: str) -> int | None:
    """Id of the first token the model would emit for ``text`` after the prompt (None: unknown)."""
    base = tokenizer(_ANSWER_CUE, add_special_tokens=False)["input_ids"]
    full = tokenizer(f"{_ANSWER_CUE} {text}", add_special_tokens=False)["input_ids"]
    if len(full) <= len(base) or full[: len(base)] != base:
        raise ValueError(f"cannot isolate the first token of answer {text!r}")
    tid = int(full[len(base)])
    return None if tid == tokenizer.unk_token_id else tid


def answer_token_variants(loaded: LoadedModel, options: Sequence[str]) -> list[tuple[int, ...]]:
    """Distinct first-token ids of each option as written, then Capitalised ("yes", "Yes").

    The leading space the model emits after ``"ASSISTANT:"`` is included (SentencePiece
    "▁yes"). A Capitalised form the vocabulary lacks is left out; an option as written that
    it lacks, or two options sharing a first token, raise ``ValueError``.
    """
    if isinstance(options, str) or len(options) < 2:
        raise ValueError(f"options must be a sequence of at least two answers, got {options!r}")
    tok = loaded.tokenizer
    out = []
    for o in options:
        first = _first_token(tok, o)
        if first is None:
            raise ValueError(f"answer {o!r} is not in the tokenizer's vocabulary")
        cap = _first_token(tok, o[:1].upper() + o[1:])
        out.append(tuple(dict.fromkeys(i for i in (first, cap) if i is not None)))
    seen: dict[int, str] = {}
    for opt, ids in zip(options, out, strict=True):
        for i in ids:
            if i in seen and seen[i] != opt:
                raise ValueError(f"options {seen[i]!r} and {opt!r} share a first token (id {i})")
            seen[i] = opt
    return out


def answer_token_ids(loaded: LoadedModel, options: Sequence[str]) -> list[int]:
    """First-token id of each option as written (lower case, as GQA writes answers)."""
    return [ids[0] for ids in answer_token_variants(loaded, options)]


def _batches(samples: list, batch_size: int):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i in range(0, len(samples), batch_size):
        yield samples[i : i + batch_size]


@torch.no_grad()
def first_token_logits(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    *,
    batch_size: int = 8,
    options: Sequence[str] | str | None = None,
    case_variants: bool = True,
) -> torch.Tensor:
    """Next-token logits at the last prompt position, float32 on CPU.

    ``options=None``: the full vocabulary, shape (n, vocab). A list of answers, or ``"sample"``
    for each sample's own ``options`` (all of equal length k): shape (n, k), each entry the
    log-sum-exp of the logits of the option's first-token variants (``case_variants``) or the
    logit of its first token as written.
    """
    samples = _check_samples(samples)
    if isinstance(options, str) and options != "sample":
        raise ValueError(f"options must be None, 'sample' or a list of answers, got {options!r}")
    rows = []
    for chunk in _batches(samples, batch_size):
        enc = encode(loaded, chunk, padding_side="left")
        logits = loaded.model(**enc.inputs, logits_to_keep=1).logits[:, -1].float().cpu()
        if options is None:
            rows.append(logits)
            continue
        for s, row in zip(chunk, logits, strict=True):
            opts = s.options if options == "sample" else options
            ids = answer_token_variants(loaded, opts)
            if not case_variants:
                ids = [v[:1] for v in ids]
            rows.append(torch.stack([torch.logsumexp(row[list(v)], 0) for v in ids])[None])
    sizes = {r.shape[1] for r in rows}
    if len(sizes) > 1:
        raise ValueError(f"samples have different numbers of options: {sorted(sizes)}")
    return torch.cat(rows)


def normalize_answer(text: str) -> str:
    """Lower-case, first line, collapsed spaces, surrounding punctuation and quotes removed."""
    text = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return re.sub(r"\s+", " ", text.lower()).strip(" .,!?;:\"'")


@torch.no_grad()
def greedy_answers(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 5,
) -> list[str]:
    """Greedy-decoded answers (left-padded batches), normalised with :func:`normalize_answer`."""
    samples = _check_samples(samples)
    tok = loaded.tokenizer
    answers: list[str] = []
    for chunk in _batches(samples, batch_size):
        inputs = dict(encode(loaded, chunk, padding_side="left").inputs)
        inputs.pop("position_ids")  # generate() derives them from the attention mask
        out = loaded.model.generate(
            **inputs,
            do_sample=False,
            num_beams=1,
            max_new_tokens=max_new_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        new = out[:, inputs["input_ids"].shape[1] :]
        answers += [normalize_answer(t) for t in tok.batch_decode(new, skip_special_tokens=True)]
    return answers


def correct_mask(answers: Sequence[str], samples: Sequence[Sample]) -> np.ndarray:
    """Boolean array: the normalised answer equals the sample's ground-truth answer."""
    if len(answers) != len(samples):
        raise ValueError(f"{len(answers)} answers for {len(samples)} samples")
    return np.array(
        [
            normalize_answer(a) == normalize_answer(s.answer)
            for a, s in zip(answers, samples, strict=True)
        ],
        dtype=bool,
    )
