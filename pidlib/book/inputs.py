"""What the chapters read: a profile's questions and their features per (model, task) (the
profile-to-features pipeline)."""

from __future__ import annotations

import math
import pickle
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pidlib.analysis.parallel import warm_workers
from pidlib.book.workers import run_model_calls
from pidlib.config.profiles import DatasetSpec, ParallelSpec, Profile
from pidlib.core.cache import ArrayCache, cache_key, open_cache
from pidlib.core.paths import REPO_ROOT
from pidlib.core.stages import stage
from pidlib.data.tasks import Sample, validate_tasks
from pidlib.extract.features import Features, cached_features, extract_features
from pidlib.models.fingerprint import source_fingerprint
from pidlib.models.load import load_model

__all__ = ["DATASETS", "pool_size", "load_samples", "draw_pools", "load_features"]

#: Dataset names :func:`load_samples` understands (``DatasetSpec.name``).
DATASETS: tuple[str, ...] = ("minigqa", "gqa", "gqa-csv")
#: Cache kind of a task's Mini-GQA question pool, and the code its key covers.
_POOL = "minigqa-questions"
_POOL_CODE: tuple[str, ...] = ("pidlib.data.minigqa", "pidlib.data.tasks")
#: Mini-GQA pools read or drawn in this process, by (cache folder, key): see :func:`_pool`.
_POOLS: dict[tuple[str, str], tuple[Sample, ...]] = {}


def pool_size(samples_per_task: int, oversample: float) -> int:
    """Questions to draw per task so that about ``samples_per_task`` survive the correct filter.

    ``oversample`` >= 1 is the inverse of the accuracy one plans for (1.5: two in three correct).
    """
    if isinstance(samples_per_task, bool) or not isinstance(samples_per_task, int):
        raise ValueError(f"samples_per_task: expected an integer, got {samples_per_task!r}")
    if samples_per_task < 1:
        raise ValueError(f"samples_per_task: must be >= 1, got {samples_per_task}")
    if not isinstance(oversample, int | float) or not 1.0 <= oversample <= 20.0:
        raise ValueError(f"oversample: must be a number in [1, 20], got {oversample!r}")
    return math.ceil(samples_per_task * oversample)


def _path(raw: str | None, what: str, name: str) -> Path:
    """A profile path: absolute, relative to the working directory, or to the repository root."""
    if raw is None:
        raise ValueError(f"dataset {name!r} needs dataset.{what} (a path)")
    path = Path(raw).expanduser()
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    if not path.exists():
        hint = "the balanced questions JSON" if what == "questions" else "a folder of <imageId>.jpg"
        raise FileNotFoundError(
            f"dataset {name!r}: dataset.{what} {raw!r} not found (looked in the working directory "
            f"and {REPO_ROOT}); it must point at {hint}. See the README on getting GQA."
        )
    return path


def _csv_files(folder: Path, task: str) -> list[Path]:
    from pidlib.data.gqa import task_of_filename

    files = sorted(folder.glob("*.csv")) if folder.is_dir() else [folder]
    mine = [f for f in files if task_of_filename(f) == task]
    if not mine:
        names = ", ".join(f.name for f in files) or "no CSV files"
        raise FileNotFoundError(f"dataset 'gqa-csv': no CSV for {task} in {folder} ({names})")
    return mine


def _make_gqa_folder(spec: DatasetSpec, tasks: tuple[str, ...], per_task: int) -> None:
    """``dataset.make: minigqa``: Mini-GQA questions written where the profile's GQA paths
    point (``images`` must be ``<folder>/images`` beside the questions JSON)."""
    from pidlib.data.minigqa.gqa_format import write_gqa_folder

    questions = Path(spec.questions).expanduser()
    folder = (questions if questions.is_absolute() else REPO_ROOT / questions).parent
    images = Path(spec.images).expanduser()
    if (images if images.is_absolute() else REPO_ROOT / images) != folder / "images":
        raise ValueError("dataset.make: dataset.images must be the 'images' folder beside "
                         f"dataset.questions ({folder / 'images'})")  # fmt: skip
    if questions.name != "val_balanced_questions.json":
        raise ValueError("dataset.make: name dataset.questions val_balanced_questions.json")
    write_gqa_folder(folder, per_task, tasks=tasks, split=spec.split, seed=spec.seed)


def load_samples(
    profile: Profile | DatasetSpec,
    *,
    tasks: str | list[str] | tuple[str, ...] | None = None,
    samples_per_task: int | None = None,
    oversample: float = 1.5,
    cache: ArrayCache | bool = True,
) -> dict[str, list[Sample]]:
    """``{task: samples}`` for a profile (or a bare :class:`~pidlib.config.profiles.DatasetSpec`).

    The pool per task holds ``pool_size(samples_per_task, oversample)`` questions, so that
    after the correct-answer filter (in
    :func:`~pidlib.extract.features.extract_features`, which keeps the first
    ``samples_per_task`` correct ones) enough remain when the model's accuracy is at
    least ``1 / oversample``; a real GQA list may hold fewer (its file order, truncated).

    - ``minigqa``: :func:`pidlib.data.minigqa.questions.generate` with the dataset's split, seed and
      language prior; each task has its own random stream, so a task's pool does not depend
      on which other tasks are asked for. Each pool is kept in ``cache`` (``True``: the default
      :class:`~pidlib.core.cache.ArrayCache`; ``False``: none), keyed by its parameters and the
      Mini-GQA code, so a warm build reads it instead of drawing ~20 scenes per question again.
    - ``gqa``: a GQA balanced-questions JSON (``dataset.questions``) and image folder.
    - ``gqa-csv``: Zhang et al.'s task CSVs (a folder; a file's name names its task, as in
      ``GQA_val_ChooseRel.csv`` or ``ChooseRel_sample.csv``).

    ``tasks`` / ``samples_per_task`` default to the profile's (a ``DatasetSpec`` needs both).
    """
    spec = profile if isinstance(profile, DatasetSpec) else profile.dataset
    if not isinstance(spec, DatasetSpec):
        raise ValueError(f"load_samples: expected a Profile or DatasetSpec, got {type(profile)}")
    if spec.name not in DATASETS:
        raise ValueError(f"dataset.name: unknown dataset {spec.name!r}; expected one of {DATASETS}")
    if isinstance(profile, DatasetSpec) and (tasks is None or samples_per_task is None):
        raise ValueError("load_samples: with a DatasetSpec, pass tasks= and samples_per_task=")
    tasks = validate_tasks(tasks if tasks is not None else profile.tasks or "all")
    n = _profile_pool_size(profile, samples_per_task, oversample)
    if spec.name == "minigqa":
        store = open_cache(cache)
        parallel = None if isinstance(profile, DatasetSpec) else profile.parallel
        drawn = _draw_on_workers(store, [(spec, t, n) for t in tasks], parallel)
        return {t: _pool(store, spec, t, n, (lambda t=t: drawn[spec, t, n]) if (spec, t, n) in
                         drawn else (lambda t=t: _draw(t, n, spec.split, spec.seed, spec.prior)))
                for t in tasks}  # fmt: skip
    if spec.make == "minigqa":
        _make_gqa_folder(spec, tasks, n)
    images = _path(spec.images, "images", spec.name)
    if not images.is_dir():
        raise FileNotFoundError(f"dataset.images {str(images)!r} is not a folder")
    questions = _path(spec.questions, "questions", spec.name)
    out: dict[str, list[Sample]] = {}
    if spec.name == "gqa":
        from pidlib.data.gqa import load_gqa_questions

        samples = load_gqa_questions(questions, images, tasks, limit=n)
        for t in tasks:
            out[t] = [s for s in samples if s.task == t]
    else:
        from pidlib.data.gqa import load_zhang_csv

        for t in tasks:
            rows = [s for f in _csv_files(questions, t) for s in load_zhang_csv(f, images, t)]
            out[t] = rows[:n]
    empty = [t for t, s in out.items() if not s]
    if empty:
        raise ValueError(
            f"dataset {spec.name!r} ({questions}): no questions for {', '.join(empty)}"
        )
    return out


def _draw(task: str, n: int, split: str, seed: int, prior: float) -> list[Sample]:
    """A task's Mini-GQA pool of ``n`` questions, drawn on one thread (also a worker's call)."""
    from pidlib.core.threads import one_thread
    from pidlib.data.minigqa.questions import generate
    from pidlib.data.minigqa.scenes import MiniGQAConfig

    with one_thread():
        return generate([task], n, split=split, seed=seed, config=MiniGQAConfig(prior=prior))


def _pool_key(spec: DatasetSpec, task: str, n: int) -> tuple[dict[str, Any], str]:
    params = {"task": task, "n": n, "split": spec.split, "seed": spec.seed, "prior": spec.prior}
    return params, cache_key(_POOL, params, _POOL_CODE)


#: Fewest questions to draw worth the workers: the cpu book drew 9,000 in 6.9 s here (0.8 ms
#: each), and a worker that is not running yet takes seconds to start.
MIN_POOL_QUESTIONS = 3000


def _draw_on_workers(
    store: ArrayCache | None, wanted: Sequence[tuple[DatasetSpec, str, int]],
    parallel: ParallelSpec | None,
) -> dict[tuple[DatasetSpec, str, int], list[Sample]]:  # fmt: skip
    """The pools ``(dataset, task, n)`` of ``wanted`` neither kept nor stored, drawn on
    ``parallel``'s workers (one thread each) when two or more of them, :data:`MIN_POOL_QUESTIONS`
    questions in all, are missing: each task has its own random stream, so a pool is the same
    wherever it is drawn (the cpu book's chapters drew theirs one after another, 30 s of its
    cold time, while the workers idled). The strongest language priors go first: they reject
    the most scenes, and the longest pool started last would leave a worker idle. ``{}``
    otherwise: :func:`_pool` draws here."""
    if store is None or parallel is None or parallel.backend == "sequential":
        return {}
    todo = [(spec, t, n) for spec, t, n in dict.fromkeys(wanted)
            if (str(store.root), _pool_key(spec, t, n)[1]) not in _POOLS
            and not store.path(_POOL, _pool_key(spec, t, n)[1]).is_dir()]  # fmt: skip
    if len(todo) < 2 or parallel.n_jobs == 1 or sum(n for *_, n in todo) < MIN_POOL_QUESTIONS:
        return {}
    import joblib

    from pidlib.analysis.parallel import backend

    todo.sort(key=lambda w: -w[0].prior)  # stable: the tasks' order within a prior
    with backend(parallel):
        got = joblib.Parallel()(joblib.delayed(_draw)(t, n, spec.split, spec.seed, spec.prior)
                                for spec, t, n in todo)  # fmt: skip
    return dict(zip(todo, got, strict=True))


def _profile_pool_size(
    profile: Profile | DatasetSpec, samples_per_task: int | None, oversample: float
) -> int:
    """:func:`pool_size` of a profile's (or a ``DatasetSpec``'s) pools: no oversampling when
    every question is kept (no correct filter to feed)."""
    if not isinstance(profile, DatasetSpec) and not profile.correct_only:
        oversample = 1.0
    return pool_size(samples_per_task if samples_per_task is not None else profile.samples_per_task,
                     oversample)  # fmt: skip


def draw_pools(profiles: Sequence[Profile], oversample: float = 1.5) -> None:
    """Draw and store, at once on the first profile's workers, every Mini-GQA pool the
    ``profiles`` will read (:func:`load_samples` with ``oversample``) and the cache lacks:
    profiles that differ in their dataset (e.g. the language prior) read their pools in turn,
    and drawing them one profile at a time left a worker idle behind each profile's longest
    pool. Other datasets have no pools to draw."""
    wanted = [(p.dataset, t, _profile_pool_size(p, None, oversample))
              for p in profiles if p.dataset.name == "minigqa"
              for t in validate_tasks(p.tasks or "all")]  # fmt: skip
    store = open_cache(True)
    if not wanted or store is None:
        return
    with stage("questions"):
        drawn = _draw_on_workers(store, wanted, profiles[0].parallel)
        for (spec, t, n), samples in drawn.items():
            _pool(store, spec, t, n, lambda samples=samples: samples)


def _pool(
    store: ArrayCache | None, spec: DatasetSpec, task: str, n: int,
    draw: Callable[[], list[Sample]],
) -> list[Sample]:  # fmt: skip
    """A task's Mini-GQA pool: ``draw()``, or the same samples from ``store`` (pickled with
    their images, zlib-compressed: about 0.6 MB per 1,500 questions, read in 0.1 s). A pool
    read or drawn once is kept for the process (:data:`_POOLS`): a chapter asks for its
    pools about ten times, and each read unpickled every image again (4 s in a warm Seeds
    chapter); the same sample objects also let feature reads reuse their fingerprints."""
    if store is None:
        return draw()
    params, key = _pool_key(spec, task, n)
    kept = _POOLS.get((str(store.root), key))
    if kept is not None:
        return list(kept)
    hit = store.load(_POOL, key)
    samples = _unpickle_pool(hit[0], task) if hit is not None else None
    if samples is None:
        samples = draw()
        if hit is None:  # an unreadable entry is left for the cache's own checks to move aside
            blob = zlib.compress(pickle.dumps(samples, protocol=pickle.HIGHEST_PROTOCOL), 1)
            store.save(_POOL, key, {"pickle": np.frombuffer(blob, np.uint8)}, params)
    _POOLS[str(store.root), key] = tuple(samples)
    return samples


def _unpickle_pool(arrays: Mapping[str, np.ndarray], task: str) -> list[Sample] | None:
    """The samples of a stored pool, or ``None`` (warned) when the entry is unreadable."""
    try:
        samples = pickle.loads(zlib.decompress(arrays["pickle"].tobytes()))  # noqa: S301
        if isinstance(samples, list) and all(isinstance(x, Sample) for x in samples):
            return samples
        raise ValueError("the entry holds no list of samples")
    except (pickle.UnpicklingError, zlib.error, ValueError, TypeError, AttributeError,
            EOFError, KeyError) as err:  # fmt: skip
        warnings.warn(f"a cached Mini-GQA pool ({task}) is unreadable ({err}); drawing it "
                      "again", stacklevel=4)  # fmt: skip
        return None


def load_features(
    profile: Profile,
    *,
    samples: Mapping[str, Sequence[Sample]] | None = None,
    cache: ArrayCache | bool = True,
    oversample: float = 1.5,
    max_new_tokens: int = 5,
    progress: bool | None = None,
) -> dict[tuple[str, str], Features]:
    """``{(model, task): Features}`` with the profile's models, tasks, batch size, device, dtype,
    target and correct filter, ``samples_per_task`` correct samples each where possible.

    ``samples`` default to :func:`load_samples` (``oversample``). Features come from
    :func:`~pidlib.extract.features.extract_features`; a model is loaded only when one of its
    chunks is missing from the cache, so a book built without a GPU reads what a GPU run computed.
    On a CPU profile the missing (model, task) pairs run on its local workers
    (:func:`~pidlib.book.workers.run_model_calls`); on a GPU, here, one model at a time.
    ``progress``: bars over samples; None (the default) shows them only when stderr is a
    terminal, so an executed chapter holds none.
    """
    import sys

    import torch

    if progress is None:
        progress = sys.stderr.isatty()

    if samples is None:
        with stage("questions"):
            samples = load_samples(profile, oversample=oversample, cache=cache)
    store = open_cache(cache)
    opts = {"batch_size": profile.batch_size, "chunk_batches": 8, "limit": profile.samples_per_task,
            "max_new_tokens": max_new_tokens, "correct_only": profile.correct_only,
            "target": profile.target}  # fmt: skip
    out: dict[tuple[str, str], Features] = {}
    missing: list[tuple[str, str]] = []
    for name in profile.models:
        ident = source_fingerprint(name, dtype=profile.dtype, device=profile.device)
        for task in profile.tasks:
            if task not in samples:
                raise ValueError(f"load_features: no samples for task {task}")
            got = None if ident is None else cached_features(
                ident, name, samples[task], cache=store or False, progress=progress, **opts
            )  # fmt: skip
            if got is None:
                missing.append((name, task))
            else:
                out[name, task] = got
    loaded: dict[str, Any] = {}  # the one model the chapter's process holds (GPU: memory)

    def local(name: str) -> Any:
        if name not in loaded:
            loaded.clear()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            with stage("model loading"):
                loaded[name] = load_model(name, dtype=profile.dtype, device=profile.device)
        return loaded[name]

    calls = [(name, extract_features, (samples[task],),
              {"cache": store or False, "progress": progress, **opts})
             for name, task in missing]  # fmt: skip
    if calls:  # a cold chapter: its PID jobs will want the workers, so start them now
        warm_workers(profile.parallel, models=True)
        with stage("feature extraction"):
            forwards = sum(len(samples[task]) for _, task in missing)
            out.update(zip(missing, run_model_calls(profile, calls, local, forwards), strict=True))
    loaded.clear()
    return {(name, task): out[name, task] for name in profile.models for task in profile.tasks}
