"""Mini-GQA question generators and answer-balanced, seeded datasets of the six tasks."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from pidlib.data.minigqa.program import (
    _ATTRS,
    TASK_OPTIONS,
    _relation,
    _select_unique,
    _side,
    _step,
    execute,
)
from pidlib.data.minigqa.render import render
from pidlib.data.minigqa.scenes import (
    MATERIALS,
    PLURALS,
    SIZES,
    SPLITS,
    MiniGQAConfig,
    Scene,
    scene_in_split,
)
from pidlib.data.tasks import TASKS, Sample, validate_task, validate_tasks

__all__ = ["make_question", "generate", "generate_scene_batch"]


# --------------------------------------------------------------------- question generators
def _unique(objs: list[dict[str, Any]], key: str) -> list[int]:
    counts = Counter(o[key] for o in objs)
    return [i for i, o in enumerate(objs) if counts[o[key]] == 1]


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _other(rng: np.random.Generator, vocab: Sequence[str], value: str) -> str:
    return _pick(rng, [v for v in vocab if v != value])


def _two(rng: np.random.Generator, a: Any, b: Any) -> tuple[Any, Any]:
    return (a, b) if rng.random() < 0.5 else (b, a)


# Each generator maps (scene dict, rng, config) to (question, options or None, program), or
# None when the scene cannot support the task. Options None: the task's fixed answer set.
def _choose_attr(scene: dict, rng: np.random.Generator, config: MiniGQAConfig):
    objs, prog = scene["objects"], []
    candidates = _unique(objs, "shape")
    if not candidates:
        return None
    o = objs[_pick(rng, candidates)]
    mix = np.asarray(config.choose_attr_mix) / sum(config.choose_attr_mix)
    attr = _ATTRS[int(rng.choice(3, p=mix))]
    vocab = {"color": config.colors, "size": SIZES, "material": MATERIALS}[attr]
    options = _two(rng, o[attr], _other(rng, vocab, o[attr]))
    i = _select_unique(prog, "shape", o["shape"])
    prog.append(_step("choose", f"{attr}:{options[0]}|{options[1]}", i))
    return f"Is the {o['shape']} {options[0]} or {options[1]}?", options, prog


def _choose_cat(scene: dict, rng: np.random.Generator, config: MiniGQAConfig):
    objs, prog = scene["objects"], []
    candidates = _unique(objs, "color")
    if not candidates:
        return None
    o = objs[_pick(rng, candidates)]
    options = _two(rng, o["shape"], _other(rng, config.shapes, o["shape"]))
    i = _select_unique(prog, "color", o["color"])
    prog.append(_step("choose", f"shape:{options[0]}|{options[1]}", i))
    return f"What is the {o['color']} object, a {options[0]} or a {options[1]}?", options, prog


def _choose_rel(scene: dict, rng: np.random.Generator, config: MiniGQAConfig):
    objs, prog = scene["objects"], []
    named = _unique(objs, "shape")
    pairs = [
        (a, b)
        for a in named
        for b in named
        if a != b and _relation(objs[a], objs[b], config) is not None
    ]
    if not pairs:
        return None
    a, b = (objs[k] for k in _pick(rng, pairs))
    i = _select_unique(prog, "shape", a["shape"])
    j = _select_unique(prog, "shape", b["shape"])
    prog.append(_step("choose rel", "left|right", i, j))
    return f"Is the {a['shape']} to the left or to the right of the {b['shape']}?", None, prog


def _logical_obj(scene: dict, rng: np.random.Generator, config: MiniGQAConfig):
    """One named shape is present; the colour is a named object's half of the time."""
    objs, prog = scene["objects"], []
    s1 = _pick(rng, objs)["shape"]
    s1, s2 = _two(rng, s1, _other(rng, config.shapes, s1))
    named = [o for o in objs if o["shape"] in (s1, s2)]
    color = _pick(rng, named)["color"] if rng.random() < 0.5 else _pick(rng, config.colors)
    for s in (s1, s2):
        prog.append(_step("select", f"shape={s}"))
        prog.append(_step("filter", f"color={color}", len(prog) - 1))
        prog.append(_step("exist", "", len(prog) - 1))
    prog.append(_step("or", "", 2, 5))
    return f"Are there either any {PLURALS[s1]} or {PLURALS[s2]} that are {color}?", None, prog


def _query_attr(scene: dict, rng: np.random.Generator, config: MiniGQAConfig):
    objs, prog = scene["objects"], []
    sided = [k for k in _unique(objs, "shape") if _side(objs[k], scene, config) is not None]
    if not sided:
        return None
    o = objs[_pick(rng, sided)]
    i = _select_unique(prog, "shape", o["shape"])
    prog.append(_step("query side", "", i))
    return f"On which side of the image is the {o['shape']}?", None, prog


def _compare_groups(scene: dict) -> dict[str, list[tuple[int, int]]]:
    """The pairs of uniquely named objects that share exactly one attribute, by attribute."""
    objs = scene["objects"]
    named = _unique(objs, "shape")
    groups: dict[str, list[tuple[int, int]]] = {}
    for n, a in enumerate(named):
        for b in named[n + 1 :]:
            shared = [t for t in _ATTRS if objs[a][t] == objs[b][t]]
            if len(shared) == 1:
                groups.setdefault(shared[0], []).append((a, b))
    return groups


def _compare_attr(scene: dict, rng: np.random.Generator, config: MiniGQAConfig,
                  groups: dict[str, list[tuple[int, int]]] | None = None):  # fmt: skip
    """Pairs sharing exactly one attribute; the shared attribute is drawn first (less rejection).
    ``groups``: the scene's :func:`_compare_groups`, when the caller already has them."""
    objs, prog = scene["objects"], []
    groups = _compare_groups(scene) if groups is None else groups
    if not groups:
        return None
    a, b = _two(rng, *_pick(rng, groups[_pick(rng, sorted(groups))]))
    i = _select_unique(prog, "shape", objs[a]["shape"])
    j = _select_unique(prog, "shape", objs[b]["shape"])
    prog.append(_step("common", "color|material|size", i, j))
    q = f"What do the {objs[a]['shape']} and the {objs[b]['shape']} have in common?"
    return q, None, prog


_GENERATORS = {
    "ChooseAttr": _choose_attr,
    "ChooseCat": _choose_cat,
    "ChooseRel": _choose_rel,
    "CompareAttr": _compare_attr,
    "LogicalObj": _logical_obj,
    "QueryAttr": _query_attr,
}


def make_question(
    scene: Scene, task: str, rng: np.random.Generator, config: MiniGQAConfig
) -> Sample | None:
    """One ``task`` question about ``scene`` (None if the scene cannot support the task).

    The answer is the stored program executed on the scene graph. The sample has no image and a
    content-based ``qid``; :func:`generate` attaches the image, split and seed.
    """
    validate_task(task)
    sd = scene.to_dict()
    made = _GENERATORS[task](sd, rng, config)
    if made is None:
        return None
    return _sample(sd, scene.content_hash(), task, made, execute(made[2], sd, config), config)


def _sample(sd: dict, h: str, task: str, made: tuple, answer: str, config: MiniGQAConfig
            ) -> Sample:  # fmt: skip
    """The :class:`Sample` of a generated ``(question, options, program)`` with its
    ``answer``, about the scene ``sd`` (its dict) with content hash ``h``."""
    question, options, program = made
    return Sample(
        qid=f"mgqa-{h}-{hashlib.blake2b(question.encode(), digest_size=4).hexdigest()}",
        task=task,
        question=question,
        answer=answer,
        options=tuple(options) if options is not None else TASK_OPTIONS[task],
        image_id=f"mgqa-{h}-{config.size}px",
        scene=sd,
        meta={"program": program, "config": config.to_dict(), "scene_hash": h},
    )


# --------------------------------------------------------------------- datasets
def _balance_key(s: Sample) -> str:
    """What balancing equalises: the correct option's position (choose tasks) or the answer."""
    return _balance_of(s.task, s.options, s.answer)


def _balance_of(task: str, options: Sequence[str] | None, answer: str) -> str:
    if task in ("ChooseAttr", "ChooseCat"):
        return f"option{list(options).index(answer)}"
    return answer


def _bins(task: str) -> tuple[str, ...]:
    if task in ("ChooseAttr", "ChooseCat"):
        return ("option0", "option1")
    return TASK_OPTIONS[task]


def _check(split: str, seed: int, config: MiniGQAConfig | None) -> MiniGQAConfig:
    if split not in SPLITS:
        raise ValueError(f"split: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    config = MiniGQAConfig() if config is None else config
    if not isinstance(config, MiniGQAConfig):
        raise ValueError(f"config: expected a MiniGQAConfig, got {type(config).__name__}")
    return config


def _rng(seed: int, split: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), list(SPLITS).index(split), stream])


def _finish(s: Sample, qid: str, image: Image.Image, split: str, seed: int) -> Sample:
    return replace(s, qid=qid, image=image, meta={**s.meta, "split": split, "seed": seed})


def generate(
    task_or_tasks: str | Iterable[str],
    n_per_task: int,
    *,
    split: str = "train",
    seed: int = 0,
    config: MiniGQAConfig | None = None,
) -> list[Sample]:
    """``n_per_task`` balanced questions per task, one scene (image) per question.

    Balance is exact: each answer (choose tasks: each position of the correct option) gets
    ``n_per_task / n_answers`` questions (the remainder to the first answers), by rejection
    sampling. Each task draws from its own random stream keyed by (seed, split, task), and only
    scenes whose content hash falls in ``split``'s bucket are used, so splits never share an
    image. Samples come task by task, in the order of ``task_or_tasks``.
    """
    config = _check(split, seed, config)
    tasks = validate_tasks(task_or_tasks)
    repeated = sorted({t for t in tasks if tasks.count(t) > 1})
    if repeated:  # each task's stream and question ids depend on the task alone
        raise ValueError(f"tasks: {', '.join(repeated)} given more than once; name each task once")
    if isinstance(n_per_task, bool) or not isinstance(n_per_task, int) or n_per_task < 1:
        raise ValueError(f"n_per_task: expected a positive integer, got {n_per_task!r}")
    out: list[Sample] = []
    fp = config.fingerprint()
    for task in tasks:
        rng = _rng(seed, split, TASKS.index(task))
        bins = _bins(task)
        quota = {
            b: n_per_task // len(bins) + (k < n_per_task % len(bins)) for k, b in enumerate(bins)
        }
        counts = dict.fromkeys(bins, 0)
        seen: set[tuple[str, str]] = set()
        accepted = 0
        budget = 500 * n_per_task + 20_000
        for _ in range(budget):
            scene = scene_in_split(rng, config, split)
            if scene is None:
                continue
            s = make_question(scene, task, rng, config)
            if s is None or (s.image_id, s.question) in seen:
                continue
            key = _balance_key(s)
            if counts[key] >= quota[key]:
                continue
            counts[key] += 1
            seen.add((s.image_id, s.question))
            qid = f"mgqa{fp}-{split}-s{seed}-{task}-{accepted:05d}"
            out.append(_finish(s, qid, render(scene, config), split, seed))
            accepted += 1
            if accepted == n_per_task:
                break
        else:
            raise ValueError(
                f"config: could only make {counts} of the quotas {quota} for {task} in "
                f"{budget} scenes; this config hardly supports the task"
            )
    return out


def generate_scene_batch(
    n_scenes: int,
    tasks: str | Iterable[str],
    questions_per_scene: int,
    *,
    split: str = "train",
    seed: int = 0,
    config: MiniGQAConfig | None = None,
) -> list[tuple[Scene, Image.Image, list[Sample]]]:
    """``n_scenes`` scenes, each with its image and 1..``questions_per_scene`` distinct questions.

    For training several QA turns per image. Tasks are drawn uniformly per question; a question
    is rejected while its answer bin leads its task's least-filled bin by more than
    ``max(3, 2%)`` of that task's questions (running balance). Scenes on which no question can
    be asked are skipped.
    """
    config = _check(split, seed, config)
    tasks = validate_tasks(tasks)
    for name, v in (("n_scenes", n_scenes), ("questions_per_scene", questions_per_scene)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    rng = _rng(seed, split, 100)
    counts = {t: dict.fromkeys(_bins(t), 0) for t in tasks}
    fp = config.fingerprint()
    out: list[tuple[Scene, Image.Image, list[Sample]]] = []
    for _ in range(200 * n_scenes + 10_000):
        scene = scene_in_split(rng, config, split)
        if scene is None:
            continue
        # make_question's steps, with the scene's dict, hash and CompareAttr pairs made once
        # and a Sample built only for an accepted question (most tries are rejected): the same
        # random stream, the same questions
        sd, h = scene.to_dict(), scene.content_hash()
        qs: list[Sample] = []
        groups = None  # CompareAttr's pairs of this scene, once asked for
        for _try in range(4 * questions_per_scene):
            task = _pick(rng, tasks)
            if task == "CompareAttr":
                groups = _compare_groups(sd) if groups is None else groups
                made = _compare_attr(sd, rng, config, groups)
            else:
                made = _GENERATORS[task](sd, rng, config)
            if made is None or any(q.question == made[0] for q in qs):
                continue
            answer = execute(made[2], sd, config)
            c, key = counts[task], _balance_of(task, made[1], answer)
            if c[key] - min(c.values()) >= max(3, 0.02 * sum(c.values())):
                continue
            c[key] += 1
            qs.append(_sample(scene.to_dict(), h, task, made, answer, config))
            if len(qs) == questions_per_scene:
                break
        if not qs:
            continue
        image = render(scene, config)
        n = len(out)
        qs = [
            _finish(s, f"mgqa{fp}-{split}-s{seed}-b{n:05d}-q{j}", image, split, seed)
            for j, s in enumerate(qs)
        ]
        out.append((scene, image, qs))
        if len(out) == n_scenes:
            return out
    raise ValueError(f"config: could not make {n_scenes} scenes with questions for {tasks}")
