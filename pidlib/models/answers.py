"""Reading answers: first answer tokens, option scores, greedy decoding and the correct filter."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pidlib.models.families import ANSWER_CUE
from pidlib.models.prompt import Encoded, _check_samples, encode

if TYPE_CHECKING:
    from pidlib.data.tasks import Sample
    from pidlib.models.loaded import LoadedModel

__all__ = [
    "answer_token_variants",
    "first_token_collisions",
    "answer_token_ids",
    "option_token_ids",
    "score_options",
    "first_token_logits",
    "normalize_answer",
    "greedy_answers",
    "greedy_continuation",
    "correct_mask",
]


def _first_token(tokenizer, text: str) -> int | None:
    """Id of the first token the model would emit for ``text`` after the prompt (None: unknown)."""
    base = tokenizer(ANSWER_CUE, add_special_tokens=False)["input_ids"]
    full = tokenizer(f"{ANSWER_CUE} {text}", add_special_tokens=False)["input_ids"]
    if len(full) <= len(base) or full[: len(base)] != base:
        raise ValueError(f"cannot isolate the first token of answer {text!r}")
    tid = int(full[len(base)])
    return None if tid == tokenizer.unk_token_id else tid


def answer_token_variants(loaded: LoadedModel, options: Sequence[str]) -> list[tuple[int, ...]]:
    """Distinct first-token ids of each option as written, then Capitalised ("yes", "Yes").

    The leading space the model emits after ``"ASSISTANT:"`` is included (SentencePiece
    "▁yes"). A Capitalised form the vocabulary lacks is left out; an option as written that
    it lacks raises ``ValueError``. Options whose first tokens collide ("cloudy" / "cloudless"
    both start with "▁cloud" in LLaMA's vocabulary) never stop a run: as in Zhang et al., whose
    measure is the probability of the answer's first token, each keeps its first token as
    written, so the colliding options score alike (their log-odds is 0); a Capitalised variant
    that is another option's token is dropped; :func:`first_token_collisions` lists them.
    """
    if isinstance(options, str) or len(options) < 2:
        raise ValueError(f"options must be a sequence of at least two answers, got {options!r}")
    tok = loaded.tokenizer
    firsts, caps = [], []
    for o in options:
        first = _first_token(tok, o)
        if first is None:
            raise ValueError(f"answer {o!r} is not in the tokenizer's vocabulary")
        firsts.append(first)
        caps.append(_first_token(tok, o[:1].upper() + o[1:]))
    taken = set(firsts)
    return [
        tuple(dict.fromkeys(i for i in (f, c) if i is not None and (i == f or i not in taken)))
        for f, c in zip(firsts, caps, strict=True)
    ]


def first_token_collisions(loaded: LoadedModel, options: Sequence[str]) -> list[tuple[str, ...]]:
    """Groups of options that share their first token as written (empty when all differ)."""
    by_id: dict[int, list[str]] = {}
    for o, ids in zip(options, answer_token_variants(loaded, options), strict=True):
        by_id.setdefault(ids[0], []).append(o)
    return [tuple(g) for g in by_id.values() if len(g) > 1]


def answer_token_ids(loaded: LoadedModel, options: Sequence[str]) -> list[int]:
    """First-token id of each option as written (lower case, as GQA writes answers)."""
    return [ids[0] for ids in answer_token_variants(loaded, options)]


def option_token_ids(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    *,
    case_variants: bool = True,
    memo: dict | None = None,
) -> list[list[tuple[int, ...]]]:
    """Per sample, the first-token ids of each of its options (:func:`answer_token_variants`;
    only the form as written when not ``case_variants``). ``memo`` caches them per option tuple."""
    memo = {} if memo is None else memo
    out = []
    for s in samples:
        key = tuple(s.options)
        if key not in memo:
            memo[key] = answer_token_variants(loaded, s.options)
            if len({v[0] for v in memo[key]}) < len(key):
                warnings.warn(
                    f"options {key} share a first token ({first_token_collisions(loaded, key)}): "
                    "they score alike, so the target cannot tell them apart",
                    stacklevel=2,
                )
        out.append([v if case_variants else v[:1] for v in memo[key]])
    return out


def score_options(
    logits: torch.Tensor, ids: Sequence[Sequence[tuple[int, ...]]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The one option scorer: next-token ``logits`` (B, vocab) read at each row's options.

    ``ids``: per row, each option's first-token ids (all rows with k options). Returns float32
    CPU tensors (B, k): each option's log-sum-exp of its tokens' logits, and its log-probability
    under the full-vocabulary softmax (summed over its tokens).
    """
    if not len(ids) or len({len(r) for r in ids}) != 1:
        raise ValueError("score_options: every row needs the same number of options")
    if len(ids) != logits.shape[0]:
        raise ValueError(
            f"score_options: {len(ids)} rows of option ids for {logits.shape[0]} logits"
        )
    m = max(len(v) for r in ids for v in r)
    idx = torch.tensor([[list(v) + [v[0]] * (m - len(v)) for v in r] for r in ids])  # (B, k, m)
    pad = torch.tensor([[[j >= len(v) for j in range(m)] for v in r] for r in ids])
    B, k, _ = idx.shape
    logits = logits.float().cpu()
    opt = logits.gather(1, idx.view(B, -1)).view(B, k, m).masked_fill(pad, -torch.inf)
    logp = torch.log_softmax(logits, -1).gather(1, idx.view(B, -1)).view(B, k, m)
    return opt.logsumexp(-1), logp.masked_fill(pad, -torch.inf).logsumexp(-1)


@dataclass(frozen=True)
class _Options:
    """A bare option list in the shape :func:`option_token_ids` reads (``.options``)."""

    options: Sequence[str]


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
        opts = [list(s.options) if options == "sample" else options for s in chunk]
        if len({len(o) for o in opts}) > 1:
            raise ValueError(
                f"samples have different numbers of options: {sorted({len(o) for o in opts})}"
            )
        ids = option_token_ids(loaded, [_Options(o) for o in opts], case_variants=case_variants)
        rows.append(score_options(logits, ids)[0])
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


def greedy_continuation(
    loaded: LoadedModel, out: Any, enc: Encoded, first: torch.Tensor, gold: list[str], steps: int
) -> list[str]:
    """Greedy decoding continued from the prompt's KV cache, for up to ``steps`` tokens.

    A row stops at EOS, at a newline (the answer is the first line), or as soon as its
    normalised text is no longer a prefix of its gold answer (it can no longer be correct, and
    its answer is the text so far): the rows that can still match decide how many steps run.
    """
    tok = loaded.tokenizer
    eos, pad = tok.eos_token_id, tok.pad_token_id if tok.pad_token_id is not None else 0
    tokens, done = [first], (first == eos).cpu()
    mask, pos = enc.inputs["attention_mask"], enc.inputs["position_ids"][:, -1:]
    past = out.past_key_values
    for step in range(steps):
        text = tok.batch_decode(torch.stack(tokens, 1).cpu(), skip_special_tokens=True)
        dead = [
            "\n" in t.strip() or not g.startswith(normalize_answer(t))
            for t, g in zip(text, gold, strict=True)
        ]
        done = done | torch.tensor(dead)
        if step == steps - 1 or bool(done.all()):
            return [normalize_answer(t) for t in text]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        step_in = {
            "input_ids": tokens[-1][:, None],
            "attention_mask": mask,
            "position_ids": pos + 1 + step,
        }
        o = loaded.model(**step_in, past_key_values=past, use_cache=True, logits_to_keep=1)
        past = o.past_key_values
        nxt = o.logits[:, -1].argmax(-1)
        nxt = torch.where(done.to(nxt.device), torch.full_like(nxt, pad), nxt)
        tokens.append(nxt)
        done = done | (nxt == eos).cpu()
    raise AssertionError("unreachable")
