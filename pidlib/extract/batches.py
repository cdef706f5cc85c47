"""One batch's prompt forward with the pooling hooks, and its answers: the unit of work that
:mod:`pidlib.extract.features` caches chunk by chunk."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pidlib.data.tasks import Sample
from pidlib.extract.pooling import Pooler, pool_weights
from pidlib.models.answers import (
    greedy_continuation,
    normalize_answer,
    option_token_ids,
    score_options,
)
from pidlib.models.hooks import attached
from pidlib.models.locate import decoder_module
from pidlib.models.prompt import Encoded, encode

if TYPE_CHECKING:
    from pidlib.models.loaded import LoadedModel

__all__ = ["answers", "for_disk", "run_batch", "run_batch_last", "run_batches"]

_HALF = ("bfloat16", "float16")


@torch.no_grad()
def run_batch(
    loaded: LoadedModel,
    batch: Sequence[Sample],
    max_new_tokens: int,
    intervention: Callable[[Encoded], contextlib.AbstractContextManager] | None,
    variants: dict,
    enc: Encoded | None = None,
) -> dict[str, np.ndarray]:
    """One batched prompt forward with pooling hooks, then the greedy continuation."""
    enc = encode(loaded, batch, padding_side="left") if enc is None else enc
    weights = pool_weights(enc, enc.inputs["input_ids"].shape[1])
    pooler = Pooler(decoder_module(loaded.model), weights)
    ctx = intervention(enc) if intervention is not None else contextlib.nullcontext()
    with ctx, attached(pooler.hooks()):
        out = loaded.model(**enc.inputs, use_cache=max_new_tokens > 1, logits_to_keep=1)
    states, lasts = pooler.result()
    return answers(loaded, batch, enc, out, states, lasts, max_new_tokens, variants)


#: Inputs laid out along the prompt (B, T): the prefix forward takes their first T - 1 columns.
_ALONG_PROMPT = ("input_ids", "attention_mask", "position_ids")


@torch.no_grad()
def run_batch_last(
    loaded: LoadedModel,
    batch: Sequence[Sample],
    max_new_tokens: int,
    interventions: Sequence[Callable[[Encoded], contextlib.AbstractContextManager]],
    variants: dict,
) -> list[dict[str, np.ndarray]]:
    """What :func:`run_batch` gives under each of ``interventions``, for interventions that
    change the last prompt position only: one clean forward of every position but the last
    (its pooled V and L, and its KV cache), then per intervention the last position alone on a
    copy of that cache, inside the intervention, and the greedy continuation from there.

    Under left padding the last position is the last column, and attention is causal, so no
    earlier position sees it: V and L (pooled over the image block and the question span,
    both before it) are the clean ones, and the prefix is computed once instead of once per
    intervention."""
    enc = encode(loaded, batch, padding_side="left")
    ids = enc.inputs["input_ids"]
    weights = pool_weights(enc, ids.shape[1])
    if bool(weights[..., -1].any()):
        raise ValueError("the last prompt position is inside the image block or question span")
    decoder = decoder_module(loaded.model)
    prefix = Pooler(decoder, weights[..., :-1])
    inputs = {k: v[:, :-1] if k in _ALONG_PROMPT else v for k, v in enc.inputs.items()}
    with attached(prefix.hooks()):
        cache = loaded.model(**inputs, use_cache=True, logits_to_keep=1).past_key_values
    states, _ = prefix.result()
    step = {"input_ids": ids[:, -1:], "attention_mask": enc.inputs["attention_mask"],
            "position_ids": enc.inputs["position_ids"][:, -1:]}  # fmt: skip
    out = []
    for intervention in interventions:
        last = Pooler(decoder, weights[..., -1:])
        with intervention(enc), attached(last.hooks()):
            o = loaded.model(**step, past_key_values=copy.deepcopy(cache),
                             use_cache=max_new_tokens > 1, logits_to_keep=1)  # fmt: skip
        lasts = last.result()[1]
        out.append(answers(loaded, batch, enc, o, states, lasts, max_new_tokens, variants))
    return out


def answers(
    loaded: LoadedModel, batch: Sequence[Sample], enc: Encoded, out: Any, states: torch.Tensor,
    lasts: torch.Tensor, max_new_tokens: int, variants: dict,
) -> dict[str, np.ndarray]:  # fmt: skip
    """The arrays of one batch from its prompt forward ``out`` (logits at the last position,
    the KV cache the greedy continuation decodes from) and the pooled and last states."""
    logits = out.logits[:, -1].float()
    first = logits.argmax(-1)
    gold_text = [normalize_answer(s.answer) for s in batch]
    said = greedy_continuation(loaded, out, enc, first, gold_text, max_new_tokens)
    opt_t, logp = score_options(logits, option_token_ids(loaded, batch, memo=variants))
    gold = np.asarray([s.options.index(s.answer) for s in batch])
    opt, prob = opt_t.numpy(), logp[torch.arange(len(batch)), torch.from_numpy(gold)].exp().numpy()
    return {
        "V": states[:, :, 0].numpy(),
        "L": states[:, :, 1].numpy(),
        "option_logits": opt,
        "last_hidden": lasts[:, -1].numpy(),
        "Last": lasts.numpy(),
        "prob": prob,
        "answer": np.asarray(said, dtype=str),
        "correct": np.asarray([a == g for a, g in zip(said, gold_text, strict=True)]),
        "choice": opt.argmax(1).astype(np.int64),
        "gold": gold.astype(np.int64),
        "qid": np.asarray([s.qid for s in batch], dtype=str),
        "options": np.asarray([list(s.options) for s in batch], dtype=str),
    }


def run_batches(
    loaded: LoadedModel, batch: Sequence[Sample], max_new_tokens: int,
    interventions: Sequence[Callable[[Encoded], contextlib.AbstractContextManager] | None],
    last_only: bool, variants: dict,
) -> list[dict[str, np.ndarray]]:  # fmt: skip
    """One batch's arrays under each of ``interventions``: :func:`run_batch_last` (one shared
    forward) when they change the last prompt position only (``last_only``), otherwise one
    :func:`run_batch` each."""
    if last_only:
        return run_batch_last(loaded, batch, max_new_tokens, interventions, variants)
    return [run_batch(loaded, batch, max_new_tokens, f, variants) for f in interventions]


def for_disk(arrays: dict[str, np.ndarray], store_dtype: str, model_dtype: str) -> dict:
    """float16 on disk for the states of a 16-bit model when finite there: as exact as the
    model's own bf16 states (11 vs 8 significant bits); float32 otherwise."""
    half = store_dtype == "float16" or (store_dtype == "auto" and model_dtype in _HALF)
    out = dict(arrays)
    for k in ("V", "L", "Last", "last_hidden") if half else ():
        cast = arrays[k].astype(np.float16)
        if np.isfinite(cast).all():
            out[k] = cast
    return out
