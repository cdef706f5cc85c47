"""Layer-wise pooled activations V, L and answer targets Y of LLaVA-family models, cached."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pidlib.core.cache import ArrayCache, cache_key, open_cache
from pidlib.core.provenance import provenance
from pidlib.data.fingerprints import samples_fingerprint
from pidlib.data.tasks import Sample, validate_task
from pidlib.extract import batches
from pidlib.extract.targets import TARGETS
from pidlib.models.fingerprint import model_fingerprint

if TYPE_CHECKING:
    from pidlib.models.loaded import LoadedModel
    from pidlib.models.prompt import Encoded

__all__ = ["CODE", "Features", "extract_features", "extract_features_last", "cached_features"]

#: Modules whose source is part of every feature cache key (the "code version").
CODE: tuple[str, ...] = (
    "pidlib.extract.features", "pidlib.extract.batches", "pidlib.extract.pooling",
    "pidlib.models.prompt", "pidlib.models.answers",
)  # fmt: skip
_KIND = "features"


@dataclass(frozen=True, eq=False)
class Features:
    """Pooled activations of one model on one task: the inputs of the layer-wise PID.

    Layer ``l`` is ``output_hidden_states[l]``: 0 = the embeddings (image features already
    merged), ``1 .. n_layers - 1`` = decoder-layer outputs, ``n_layers`` = the last decoder
    layer after the final norm. Shapes (n samples, d hidden units, k options):

    - ``V`` (n, n_layers + 1, d): mean over the image-token positions; ``L``: mean over the
      question span (the raw question's tokens only); ``Last``: the state at the last prompt
      position, whose next-token logits give the answer (``None`` for features built without
      it). float32, all three from the same hooks in one forward.
    - ``option_logits`` (n, k): first-answer-token logit of each option (log-sum-exp over the
      option's case variants, "yes" / "Yes"); ``last_hidden`` (n, d): final-norm state at the
      last prompt position. ``prob`` (n,): softmax probability (full vocabulary) of the gold
      answer's first token, summed over its case variants.
    - ``answer`` (n,): the normalised greedy answer (cut where it stopped being a prefix of the
      gold answer); ``correct``: it equals the gold answer (lower-cased, Zhang et al.'s filter);
      ``choice``: argmax of ``option_logits``; ``gold``: the gold answer's index in ``options``.
    """

    model: str
    task: str
    V: np.ndarray
    L: np.ndarray
    option_logits: np.ndarray
    last_hidden: np.ndarray
    prob: np.ndarray
    answer: np.ndarray
    correct: np.ndarray
    choice: np.ndarray
    gold: np.ndarray
    qid: np.ndarray
    options: np.ndarray
    target: str = "logits"
    info: Mapping[str, Any] = field(default_factory=dict)
    Last: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target: {self.target!r} is not one of {TARGETS}")
        n = len(self.qid)
        for name in ("V", "L", "option_logits", "last_hidden", "prob", "answer", "correct"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Features.{name}: {len(getattr(self, name))} rows, expected {n}")
        if self.V.shape != self.L.shape or self.V.ndim != 3:
            raise ValueError(
                f"Features: V {self.V.shape} and L {self.L.shape} must be (n, layers, d)"
            )
        if self.Last is not None and self.Last.shape != self.V.shape:
            raise ValueError(f"Features: Last {self.Last.shape} must match V {self.V.shape}")

    @property
    def n(self) -> int:
        """Number of samples."""
        return len(self.qid)

    @property
    def n_layers(self) -> int:
        """Number of decoder layers (``V`` holds ``n_layers + 1`` hidden states)."""
        return self.V.shape[1] - 1

    @property
    def layers(self) -> tuple[int, ...]:
        """Hidden-state indices: 0 (embeddings) ... ``n_layers``."""
        return tuple(range(self.V.shape[1]))

    @property
    def Y(self) -> np.ndarray:
        """The target for :attr:`target`, float32 (n, dy).

        ``logits``: log-odds of the two options in the order the question names them (dy = 1);
        with k > 2 options, the additive log-ratios of the first k - 1 options against the last
        (dy = k - 1). Where the order is drawn at random per question (the choose tasks), this Y
        flips with it, so ``I(image; Y) = 0`` by construction. ``canonical``: the same log-ratios
        with each question's options in alphabetical order, a question-independent order.
        ``margin``: the gold answer's logit minus the log-sum-exp of the other options' (dy = 1),
        the model's confidence in the right answer. ``hidden``: ``last_hidden`` (dy = d).
        ``onehot``: the gold answer's one-hot over the options without the last, redundant
        column (dy = k - 1).
        """
        lg = self.option_logits.astype(np.float64)
        if self.target in ("logits", "canonical"):
            if self.target == "canonical":
                lg = np.take_along_axis(lg, np.argsort(self.options, axis=1), axis=1)
            return (lg[:, :-1] - lg[:, -1:]).astype(np.float32)
        if self.target == "margin":
            gold = np.take_along_axis(lg, self.gold[:, None], axis=1)[:, 0]
            others = np.where(np.arange(lg.shape[1]) == self.gold[:, None], -np.inf, lg)
            return (gold - np.logaddexp.reduce(others, axis=1))[:, None].astype(np.float32)
        if self.target == "hidden":
            return self.last_hidden.astype(np.float32)
        k = self.option_logits.shape[1]
        return np.eye(k, dtype=np.float32)[self.gold][:, :-1]

    def select(self, mask: np.ndarray) -> Features:
        """The samples where boolean ``mask`` (n,) is true (or at integer indices)."""
        idx = np.asarray(mask)
        if idx.dtype == bool and idx.shape != (self.n,):
            raise ValueError(f"select: mask has shape {idx.shape}, expected ({self.n},)")
        arrays = {k: getattr(self, k)[idx] for k in _ARRAYS}
        last = None if self.Last is None else self.Last[idx]
        return Features(self.model, self.task, target=self.target, info=self.info, Last=last,
                        **arrays)  # fmt: skip

    def with_target(self, target: str) -> Features:
        """The same features with another target variable."""
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        return Features(self.model, self.task, target=target, info=self.info, Last=self.Last,
                        **arrays)  # fmt: skip


_ARRAYS = ("V", "L", "option_logits", "last_hidden", "prob", "answer", "correct", "choice",
           "gold", "qid", "options")  # fmt: skip


# --------------------------------------------------------------------------- driver


class _Missing(LookupError):
    """A chunk is not in the cache and no model is at hand to compute it."""


def _check(samples: Sequence[Sample], opts: Mapping[str, Any]) -> tuple[list[Sample], str]:
    samples = list(samples)
    if not samples:
        raise ValueError("extract_features: no samples given")
    tasks = {s.task for s in samples}
    if len(tasks) != 1:
        raise ValueError(
            f"extract_features: samples of several tasks {sorted(tasks)}; pass one task"
        )
    if len({len(s.options) for s in samples}) != 1:
        raise ValueError("extract_features: the samples have different numbers of options")
    if len({s.qid for s in samples}) != len(samples):
        raise ValueError("extract_features: duplicate qids in samples")
    for name in ("batch_size", "chunk_batches", "max_new_tokens", "limit"):
        v = opts[name]
        bad = isinstance(v, bool) or not isinstance(v, int) or v < 1
        if bad and not (name == "limit" and v is None):
            raise ValueError(f"extract_features: {name} must be a positive integer, got {v!r}")
    if opts["target"] not in TARGETS:
        raise ValueError(f"extract_features: target {opts['target']!r} is not one of {TARGETS}")
    if opts["store_dtype"] not in ("auto", "float32", "float16"):
        raise ValueError(f"extract_features: store_dtype {opts['store_dtype']!r} is not "
                         "auto, float32 or float16")  # fmt: skip
    return samples, validate_task(tasks.pop())


def _collect(
    loaded: LoadedModel | None, ident: Mapping[str, str], name: str, samples: Sequence[Sample],
    store: ArrayCache | None, runs: Sequence[tuple[Callable | None, dict[str, Any]]],
    last_only: bool, progress: bool, stacklevel: int,
) -> list[Features]:  # fmt: skip
    """Features for each ``(intervention, opts)`` of ``runs`` (the same samples and options but
    the ``intervention_key``), chunk by chunk from the cache, computing missing chunks
    (``_Missing`` when ``loaded`` is None) for every run at once (``last_only``: see
    :func:`~pidlib.extract.batches.run_batches`); ``stacklevel``: a too-few-samples warning's."""
    from tqdm import tqdm  # not tqdm.auto: a bar shows on a terminal only, and in a kernel
    # without ipywidgets tqdm.auto printed a warning into every chapter's log

    opts = runs[0][1]
    samples, task = _check(samples, opts)
    bs, limit, correct_only = opts["batch_size"], opts["limit"], opts["correct_only"]
    size = bs * opts["chunk_batches"]
    parts: list[list[dict]] = [[] for _ in runs]
    keys: list[list[str]] = [[] for _ in runs]
    computed, variants = 0, {}
    bar = tqdm(total=len(samples), desc=f"{name} {task}", unit="q", disable=not progress)
    try:
        for start in range(0, len(samples), size):
            chunk = samples[start : start + size]
            params = [{"model": ident, "task": task, "samples": samples_fingerprint(chunk),
                       "n": len(chunk), "first_qid": chunk[0].qid, "batch_size": bs,
                       "max_new_tokens": opts["max_new_tokens"],
                       "store_dtype": opts["store_dtype"],
                       "intervention": o["intervention_key"]} for _, o in runs]  # fmt: skip
            chunk_keys = [cache_key(_KIND, p, CODE) for p in params]
            hits = [store.load(_KIND, k) if store is not None else None for k in chunk_keys]
            if all(h is not None for h in hits):
                got = [h[0] for h in hits]
                bar.update(len(chunk))
            elif loaded is None:
                raise _Missing(chunk_keys[hits.index(None)])
            else:
                out: list[list[dict]] = [[] for _ in runs]
                for i in range(0, len(chunk), bs):
                    rows, steps = chunk[i : i + bs], opts["max_new_tokens"]
                    done = batches.run_batches(loaded, rows, steps, [r[0] for r in runs],
                                               last_only, variants)  # fmt: skip
                    for o, d in zip(out, done, strict=True):
                        o.append(d)
                    bar.update(len(rows))
                got = [batches.for_disk({k: np.concatenate([b[k] for b in run]) for k in run[0]},
                                        opts["store_dtype"], ident["dtype"])
                       for run in out]  # fmt: skip
                computed += 1
                for arrays, key, p in zip(got, chunk_keys, params, strict=True):
                    if store is not None:
                        store.save(_KIND, key, arrays, p, {"model_name": name})
            for r, arrays in enumerate(got):
                parts[r].append(arrays)
                keys[r].append(chunk_keys[r])
            have = min(sum(int(p["correct"].sum()) if correct_only else len(p["qid"]) for p in ps)
                       for ps in parts)  # fmt: skip
            if limit is not None and have >= limit:
                break
    finally:
        bar.close()
    return [_assemble(name, task, ident, ps, ks, computed, o, stacklevel)
            for ps, ks, (_, o) in zip(parts, keys, runs, strict=True)]  # fmt: skip


def _assemble(
    name: str, task: str, ident: Mapping[str, str], parts: list[dict], keys: list[str],
    computed: int, opts: dict[str, Any], stacklevel: int,
) -> Features:  # fmt: skip
    """One run's chunks as :class:`Features` (the correct samples only where ``correct_only``,
    the first ``limit``), with ``info``."""
    limit, correct_only = opts["limit"], opts["correct_only"]
    # an entry written before ``Last`` existed has none: such features have Last = None
    names = (*_ARRAYS, "Last") if all("Last" in p for p in parts) else _ARRAYS
    cat = {k: np.concatenate([p[k] for p in parts]) for k in names}
    for k in ("V", "L", "Last", "last_hidden", "option_logits", "prob"):
        if k in cat:
            cat[k] = cat[k].astype(np.float32)
    n_seen, n_correct = len(cat["qid"]), int(cat["correct"].sum())
    idx = np.flatnonzero(cat["correct"] if correct_only else np.ones(n_seen, bool))[:limit]
    info = {"model": ident, "task": task, "n_seen": n_seen, "n_correct": n_correct,
            "accuracy": n_correct / n_seen, "cache_keys": keys, "chunks_computed": computed,
            **opts, "provenance": provenance()}  # fmt: skip
    feats = Features(name, task, target=opts["target"], info=info,
                     **{k: cat[k][idx] for k in names})  # fmt: skip
    if limit is not None and feats.n < limit:
        what = "correct " if correct_only else ""
        warnings.warn(f"{name} {task}: only {feats.n} of the {limit} requested {what}samples",
                      stacklevel=stacklevel)  # fmt: skip
    return feats


def extract_features(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    *,
    batch_size: int = 32,
    chunk_batches: int = 8,
    max_new_tokens: int = 5,
    correct_only: bool = True,
    limit: int | None = None,
    target: str = "logits",
    cache: ArrayCache | bool = True,
    store_dtype: str = "auto",
    intervention: Callable[[Encoded], contextlib.AbstractContextManager] | None = None,
    intervention_key: Any = None,
    progress: bool = True,
) -> Features:
    """Pooled V / L at every layer, the targets and the greedy answers of one model on one task.

    One batched forward per ``batch_size`` samples (left padding, any image sizes, CPU or GPU):
    hooks on the decoder mean-pool each hidden state in float32 as it is made, so no
    hidden-state tuple is kept. The greedy answer continues decoding from the prompt's KV cache
    for up to ``max_new_tokens`` tokens (``1``: the first token alone, no KV cache kept),
    stopping early for rows that can no longer match their gold answer, so that a batch of
    wrong answers costs no decoding step; a sample is correct when its normalised, lower-cased
    greedy answer equals the gold answer (as Zhang et al. filter).

    Cached per chunk of ``chunk_batches`` batches in ``cache`` (an
    :class:`~pidlib.core.cache.ArrayCache`, ``True`` for the default one, ``False`` for none), keyed
    by :func:`model_fingerprint`, the samples' content, these parameters, the intervention and
    the code version; an interrupted run resumes at its first missing chunk. Chunks go in order
    and the run stops once ``limit`` samples (correct ones if ``correct_only``) are in hand; the
    first ``limit`` are returned, with ``info`` (accuracy over all samples seen, cache keys,
    provenance). ``store_dtype``: "auto" = float16 on disk for 16-bit models, float32 otherwise.

    ``intervention(encoded)`` gives a context manager wrapped around each batch's prompt forward
    (an attention knockout); the greedy continuation runs outside it, on the KV cache the
    intervened prompt made. ``intervention_key`` (JSON-able) must name it when caching.
    """
    opts = {"batch_size": batch_size, "chunk_batches": chunk_batches, "limit": limit,
            "max_new_tokens": max_new_tokens, "correct_only": bool(correct_only), "target": target,
            "store_dtype": store_dtype, "intervention_key": intervention_key}  # fmt: skip
    _check(samples, opts)
    store = open_cache(cache)
    if intervention is not None and store is not None and intervention_key is None:
        raise ValueError(
            "extract_features: name the intervention with intervention_key= (JSON-able) so "
            "its features are cached apart from clean ones, or pass cache=False"
        )
    ident = model_fingerprint(loaded)
    return _collect(loaded, ident, str(loaded.name), samples, store, [(intervention, opts)],
                    False, progress, stacklevel=4)[0]  # fmt: skip


def extract_features_last(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    interventions: Sequence[tuple[Callable[[Encoded], contextlib.AbstractContextManager], Any]],
    **options: Any,
) -> list[Features]:
    """:func:`extract_features` under each ``(intervention, intervention_key)`` of
    ``interventions``, for interventions that change the state of the last prompt position
    only (an attention knockout whose target is the last position): one clean forward of the
    rest of each prompt serves them all, and each runs the last position alone on its KV cache
    (:func:`~pidlib.extract.batches.run_batch_last`), not one full forward each. The context
    managers must allow a forward whose queries are fewer than its keys. ``options``:
    extract_features's keyword arguments but ``intervention``; results are cached under the
    keys extract_features uses, so either reads the other's chunks (the two paths agree to
    float32 rounding: the last position's attention over the cached keys instead of within
    the full forward)."""
    unknown = sorted(set(options) - set(_DEFAULTS) - {"cache", "progress"})
    if unknown:
        raise ValueError(f"extract_features_last: unknown options {unknown}")
    if not interventions:
        raise ValueError("extract_features_last: no interventions given")
    keys = [k for _, k in interventions]
    if any(k is None for k in keys) or len({repr(k) for k in keys}) != len(keys):
        raise ValueError("extract_features_last: name each intervention with a distinct key")
    opts = {**_DEFAULTS, **{k: v for k, v in options.items() if k in _DEFAULTS}}
    opts["correct_only"] = bool(opts["correct_only"])
    _check(samples, opts)
    runs = [(f, {**opts, "intervention_key": k}) for f, k in interventions]
    return _collect(loaded, model_fingerprint(loaded), str(loaded.name), samples,
                         open_cache(options.get("cache", True)), runs, True,
                         options.get("progress", True), stacklevel=3)  # fmt: skip


#: extract_features's options and their defaults (but the cache, the progress bar and the
#: intervention itself).
_DEFAULTS: dict[str, Any] = {
    "batch_size": 32, "chunk_batches": 8, "max_new_tokens": 5, "correct_only": True,
    "limit": None, "target": "logits", "store_dtype": "auto", "intervention_key": None,
}  # fmt: skip


def cached_features(
    ident: Mapping[str, str],
    name: str,
    samples: Sequence[Sample],
    *,
    cache: ArrayCache | bool = True,
    progress: bool = False,
    **options: Any,
) -> Features | None:
    """The features :func:`extract_features` would return, read from the cache alone (no model):
    ``None`` when any needed chunk is missing. ``ident``: the model's
    :func:`~pidlib.models.fingerprint.source_fingerprint`; ``options``: extract_features's
    keyword arguments (``batch_size``, ``limit``, ``target`` ...)."""
    opts = dict(_DEFAULTS)
    unknown = sorted(set(options) - set(opts))
    if unknown:
        raise ValueError(f"cached_features: unknown options {unknown}")
    opts.update(options)
    store = open_cache(cache)
    if store is None:
        return None
    try:
        return _collect(None, ident, name, samples, store, [(None, opts)], False, progress,
                        stacklevel=4)[0]  # fmt: skip
    except _Missing:
        return None
