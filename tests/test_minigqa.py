"""Tests of Mini-GQA: determinism, splits, verified answers, balance, the prior knob, rendering."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections import Counter, defaultdict

import numpy as np
import pytest

from pidlib.data.minigqa.gallery import contact_sheet, gallery
from pidlib.data.minigqa.program import TASK_OPTIONS, question_words, vocabulary
from pidlib.data.minigqa.questions import generate, generate_scene_batch, make_question
from pidlib.data.minigqa.render import render
from pidlib.data.minigqa.scenes import (
    BACKGROUND,
    COLORS,
    RGB,
    SHAPES,
    SPLITS,
    TYPICAL_COLOR,
    MiniGQAConfig,
    Scene,
    make_scene,
    scene_in_split,
    scene_split,
)
from pidlib.data.minigqa.verify import verify, verify_all
from pidlib.data.tasks import TASKS


@pytest.fixture(scope="module")
def train() -> list:
    return generate("all", 60, split="train", seed=11)


def _image_bytes(samples) -> list[bytes]:
    return [s.image.tobytes() for s in samples]


# ----------------------------------------------------------------------------- determinism, splits
def test_same_seed_same_samples_and_image_bytes():
    a = generate(["ChooseAttr", "CompareAttr"], 25, split="val", seed=5)
    b = generate(["ChooseAttr", "CompareAttr"], 25, split="val", seed=5)
    assert [(s.qid, s.question, s.answer, s.options) for s in a] == [
        (s.qid, s.question, s.answer, s.options) for s in b
    ]
    assert _image_bytes(a) == _image_bytes(b)
    c = generate(["ChooseAttr", "CompareAttr"], 25, split="val", seed=6)
    assert [s.question for s in a] != [s.question for s in c]


def test_a_task_stream_does_not_depend_on_the_other_tasks():
    alone = generate("QueryAttr", 20, seed=2)
    mixed = [s for s in generate(["ChooseCat", "QueryAttr"], 20, seed=2) if s.task == "QueryAttr"]
    assert [s.question for s in alone] == [s.question for s in mixed]
    assert _image_bytes(alone) == _image_bytes(mixed)


def test_splits_never_share_a_scene():
    ids = {}
    for split in SPLITS:
        samples = generate("all", 40, split=split, seed=0)
        assert all(s.meta["split"] == split for s in samples)
        assert all(scene_split(Scene.from_dict(s.scene)) == split for s in samples)
        ids[split] = {s.image_id for s in samples}
    for a, b in itertools.combinations(SPLITS, 2):
        assert not ids[a] & ids[b], (a, b)


def test_qids_unique_and_meta_complete(train):
    assert len({s.qid for s in train}) == len(train)
    for s in train:
        assert {"program", "split", "seed", "config", "scene_hash"} <= set(s.meta)
        assert MiniGQAConfig(**s.meta["config"]) == MiniGQAConfig()


# ----------------------------------------------------------------------------- answers
CONFIGS = {
    "default": MiniGQAConfig(),
    "prior": MiniGQAConfig(prior=0.9),
    "grid4": MiniGQAConfig(grid_size=4, cell_px=12, max_objects=6),
    "free": MiniGQAConfig(layout="free", image_px=64, max_objects=5),
    "subsets": MiniGQAConfig(shapes=("circle", "square", "star"), colors=("red", "blue")),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_answer_verifies(name):
    samples = generate("all", 50, split="train", seed=1, config=CONFIGS[name])
    assert verify_all(samples) == 300
    assert Counter(s.task for s in samples) == dict.fromkeys(TASKS, 50)


def _the(objs, key, value):
    (obj,) = [o for o in objs if o[key] == value]
    return obj


def _counterfactual(s):
    """The sample's scene edited so that the true answer changes, and that new answer.

    Written from the question words, independently of both the generator and the verifier.
    """
    scene = copy.deepcopy(s.scene)
    objs, w = scene["objects"], question_words(s.question)
    other = next(o for o in s.options if o != s.answer)
    if s.task == "ChooseAttr":
        obj = _the(objs, "shape", w[2])
        attr = next(k for k in ("color", "size", "material") if obj[k] == s.answer)
        obj[attr] = other
    elif s.task == "ChooseCat":
        _the(objs, "color", w[3])["shape"] = other
    elif s.task in ("ChooseRel", "QueryAttr"):  # mirror the image left-right
        for o in objs:
            o["x"] = 1 - o["x"]
            o["cell"] = [o["cell"][0], scene["grid_size"] - 1 - o["cell"][1]]
    elif s.task == "LogicalObj":
        named = {w[4].removesuffix("es") if w[4] == "crosses" else w[4][:-1],
                 w[6].removesuffix("es") if w[6] == "crosses" else w[6][:-1]}  # fmt: skip
        hits = [o for o in objs if o["shape"] in named and (o["color"] == w[-2]) == (other == "no")]
        for o in hits if other == "no" else hits[:1]:
            o["color"] = next(c for c in COLORS if c != w[-2]) if other == "no" else w[-2]
    else:  # CompareAttr: B stops sharing the answer and shares another attribute with A
        a, b = _the(objs, "shape", w[3]), _the(objs, "shape", w[6])
        values = {"color": COLORS, "size": ("small", "large"), "material": ("metal", "rubber")}
        b[s.answer] = next(v for v in values[s.answer] if v != a[s.answer])
        other = next(k for k in ("color", "material", "size") if k != s.answer)
        b[other] = a[other]
        third = ({"color", "material", "size"} - {s.answer, other}).pop()
        b[third] = next(v for v in values[third] if v != a[third])
    return scene, other


def _ambiguous(s):
    """The sample's scene with its referent's name (shape, or ChooseCat's color) copied."""
    scene = copy.deepcopy(s.scene)
    objs, w = scene["objects"], question_words(s.question)
    position = {"ChooseAttr": 2, "ChooseCat": 3, "ChooseRel": 2, "CompareAttr": 3, "QueryAttr": -2}
    key, value = ("color" if s.task == "ChooseCat" else "shape"), w[position[s.task]]
    ref = _the(objs, key, value)
    next(o for o in objs if o is not ref)[key] = value
    return scene


def test_verifier_follows_counterfactual_edits(train):
    for s in train:
        assert verify(s)
        scene, new = _counterfactual(s)
        edited = dataclasses.replace(s, scene=scene)
        assert not verify(edited, check_image=False), s.question
        assert verify(dataclasses.replace(edited, answer=new), check_image=False), s.question
        if s.task != "LogicalObj" and len(s.scene["objects"]) > 1:
            assert not verify(dataclasses.replace(s, scene=_ambiguous(s)), check_image=False)


def test_verifier_checks_images_and_names_the_bad_sample(train):
    a, b = train[0], train[1]
    assert not verify(dataclasses.replace(a, image=b.image))
    wrong = dataclasses.replace(a, answer=next(o for o in a.options if o != a.answer))
    with pytest.raises(ValueError, match=a.qid):
        verify_all([b, wrong])


def test_options_follow_the_contract(train):
    for s in train:
        if s.task in ("ChooseAttr", "ChooseCat"):
            words = question_words(s.question)
            assert len(s.options) == 2 and s.options[0] != s.options[1]
            assert words.index(s.options[0]) < words.index(s.options[1])
        else:
            assert s.options == TASK_OPTIONS[s.task]
        assert s.answer == s.answer.lower()


def test_vocabulary_covers_every_word(train):
    vocab = set(vocabulary())
    assert all(w == w.lower() for w in vocab)
    for s in train:
        assert set(question_words(s.question)) <= vocab, s.question
        assert set(s.options) <= vocab
    assert "crosses" in vocab and "color" in vocab and "?" in vocab


# ----------------------------------------------------------------------------- balance, prior
def test_generate_balance_is_exact():
    samples = generate("all", 61, split="train", seed=4)
    for task in TASKS:
        ss = [s for s in samples if s.task == task]
        if task in ("ChooseAttr", "ChooseCat"):
            counts = Counter(s.options.index(s.answer) for s in ss)
        else:
            counts = Counter(s.answer for s in ss)
        assert set(counts) <= set(range(2)) | set(TASK_OPTIONS.get(task, ()))
        assert max(counts.values()) - min(counts.values()) <= 1, (task, counts)
        assert len(counts) == (3 if task == "CompareAttr" else 2)


def test_choose_attr_is_mostly_color(train):
    attrs = Counter(s.meta["program"][-1]["argument"].split(":")[0] for s in train
                    if s.task == "ChooseAttr")  # fmt: skip
    assert attrs["color"] > attrs["size"] + attrs["material"]


def _typical_share(prior: float, n: int = 3000) -> float:
    config = MiniGQAConfig(prior=prior)
    rng = np.random.default_rng(0)
    objs = [o for _ in range(n) for o in make_scene(rng, config).objects]
    return float(np.mean([o.color == TYPICAL_COLOR[o.shape] for o in objs]))


def test_prior_sets_the_typical_color_share():
    assert _typical_share(0.0) == pytest.approx(1 / 6, abs=0.02)
    assert _typical_share(0.5) == pytest.approx(0.5 + 0.5 / 6, abs=0.02)
    assert _typical_share(0.9) == pytest.approx(0.9 + 0.1 / 6, abs=0.02)


def _question_only_accuracy(task: str, prior: float) -> float:
    """Majority answer per question text, learned on train, scored on test."""
    config = MiniGQAConfig(prior=prior)
    votes: dict[str, Counter] = defaultdict(Counter)
    for s in generate(task, 2000, split="train", seed=0, config=config):
        votes[s.question][s.answer] += 1
    test = generate(task, 800, split="test", seed=0, config=config)
    hits = [votes[s.question].most_common(1)[0][0] == s.answer if votes[s.question]
            else s.answer == s.options[0] for s in test]  # fmt: skip
    return float(np.mean(hits))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["ChooseAttr", "ChooseCat", "LogicalObj"])
def test_prior_zero_leaves_answers_unpredictable_from_the_question(task):
    chance = 1 / 2
    low = _question_only_accuracy(task, 0.0)
    high = _question_only_accuracy(task, 0.9)
    assert abs(low - chance) < 0.06, low
    assert high > low + 0.15, (low, high)


def test_scene_batch_structure_and_running_balance():
    batch = generate_scene_batch(300, "all", 3, split="train", seed=3)
    assert len(batch) == 300
    counts: dict[str, Counter] = defaultdict(Counter)
    for scene, image, qs in batch:
        assert 1 <= len(qs) <= 3 and len({q.question for q in qs}) == len(qs)
        assert all(q.image is image and q.scene == scene.to_dict() for q in qs)
        for q in qs:
            key = q.options.index(q.answer) if q.task in ("ChooseAttr", "ChooseCat") else q.answer
            counts[q.task][key] += 1
    verify_all(q for _, _, qs in batch for q in qs)
    assert set(counts) == set(TASKS)
    for task, c in counts.items():
        assert max(c.values()) - min(c.values()) <= max(3, 0.02 * sum(c.values())) + 1, (task, c)
    again = generate_scene_batch(300, "all", 3, split="train", seed=3)
    assert [q.qid for *_, qs in again for q in qs] == [q.qid for *_, qs in batch for q in qs]


# ----------------------------------------------------------------------------- rendering
def _alone(shape="square", color="red", size="large", material="metal", cell=(1, 2), g=3):
    from pidlib.data.minigqa.scenes import SceneObject

    r = {"small": 0.27, "large": 0.45}[size] / g
    obj = SceneObject(shape, color, size, material, (cell[1] + 0.5) / g, (cell[0] + 0.5) / g, r,
                      cell)  # fmt: skip
    return Scene((obj,), "grid", g)


def _ink(img) -> np.ndarray:
    return np.any(np.asarray(img, dtype=int) != np.array(BACKGROUND), axis=-1)


@pytest.mark.parametrize("layout", ["grid", "free"])
def test_scene_in_split_is_make_scene_filtered_by_split(layout):
    """The generators' fast path (a grid scene hashed before its objects are built) keeps a
    scene exactly when :func:`scene_split` would, equal to :func:`make_scene`'s, and leaves the
    random stream where :func:`make_scene` leaves it."""
    config = MiniGQAConfig(layout=layout, prior=0.5, max_objects=5)
    kept = dict.fromkeys(SPLITS, 0)
    for split in SPLITS:
        a, b = np.random.default_rng([5, len(split)]), np.random.default_rng([5, len(split)])
        for _ in range(300):
            got, scene = scene_in_split(a, config, split), make_scene(b, config)
            assert got == (scene if scene_split(scene) == split else None)
            if got is not None:
                assert got.content_hash() == scene.content_hash()
                kept[split] += 1
        assert a.random() == b.random()
    assert all(kept.values()), kept


def test_grid_objects_are_drawn_inside_their_cells():
    config = MiniGQAConfig()
    rng = np.random.default_rng(7)
    for _ in range(40):
        scene = make_scene(rng, config)
        for o in scene.objects:
            ink = _ink(render(Scene((o,), "grid", 3), config))
            row, col = o.cell
            outside = ink.copy()
            outside[row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16] = False
            assert ink.any() and not outside.any(), o


def test_free_layout_objects_do_not_overlap_and_stay_in_the_image():
    config = MiniGQAConfig(layout="free", image_px=80, max_objects=6)
    rng = np.random.default_rng(3)
    for _ in range(200):
        objs = make_scene(rng, config).objects
        assert all(o.cell is None and 0 <= min(o.box) and max(o.box) <= 1 for o in objs)
        for a, b in itertools.combinations(objs, 2):
            assert np.hypot(a.x - b.x, a.y - b.y) >= a.radius + b.radius
    assert render(make_scene(rng, config), config).size == (80, 80)


@pytest.mark.parametrize("size", ["small", "large"])
def test_textures_colors_and_shapes_are_visible_at_the_default_size(size):
    config = MiniGQAConfig()
    inks = {s: _ink(render(_alone(s, size=size), config)) for s in SHAPES}
    for a, b in itertools.combinations(SHAPES, 2):  # silhouettes differ by several pixels
        assert (inks[a] ^ inks[b]).sum() >= 4, (a, b)
    palette = np.array([RGB[c] for c in COLORS], dtype=float)
    for color, material in itertools.product(COLORS, ("metal", "rubber")):
        pix = np.asarray(render(_alone("square", color, size, material), config), dtype=float)
        inside = pix[_ink(pix.astype(np.uint8))]
        dist = np.sqrt(((inside[:, None, :] - palette[None]) ** 2).sum(-1))  # (pixels, colours)
        _, best = np.unravel_index(np.argmin(dist), dist.shape)
        assert COLORS[best] == color and dist.min() < 30, (color, material)
        centre = pix[22:26, 38:42].mean(axis=(1, 2))  # four rows inside the square
        assert (np.ptp(centre) > 20) == (material == "rubber"), (color, material, centre)


def test_render_is_deterministic_and_the_right_size():
    config = MiniGQAConfig(cell_px=24)
    scene = make_scene(np.random.default_rng(0), config)
    a, b = render(scene, config), render(scene, config)
    assert a.size == (72, 72) and a.mode == "RGB" and a.tobytes() == b.tobytes()


def test_gallery_and_contact_sheet():
    g = gallery(2, seed=0)
    assert Counter(s.task for s in g) == dict.fromkeys(TASKS, 2)
    assert contact_sheet(g, scale=2).size[0] > 0


# ----------------------------------------------------------------------------- errors
def test_unknown_task_is_a_clear_error():
    scene = make_scene(np.random.default_rng(0), MiniGQAConfig())
    with pytest.raises(ValueError, match="unknown task 'Foo'"):
        generate("Foo", 3)
    with pytest.raises(ValueError, match="unknown task"):
        make_question(scene, "ChooseColour", np.random.default_rng(0), MiniGQAConfig())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("layout", "hex"),
        ("grid_size", 1),
        ("cell_px", 4),
        ("min_objects", 0),
        ("max_objects", 10),
        ("shapes", ("circle", "blob")),
        ("colors", ("red",)),
        ("prior", 1.5),
        ("choose_attr_mix", (1.0, 0.0)),
        ("side_margin", 0.6),
        ("rel_margin", -0.1),
        ("image_px", 50),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        MiniGQAConfig(**{field: value})


def test_cross_field_config_errors():
    with pytest.raises(ValueError, match="min_objects"):
        MiniGQAConfig(min_objects=4, max_objects=3)
    with pytest.raises(ValueError, match="colors"):
        MiniGQAConfig(prior=0.5, colors=("red", "blue"))
    with pytest.raises(ValueError, match="split"):
        generate("ChooseAttr", 2, split="dev")
    with pytest.raises(ValueError, match="n_per_task"):
        generate("ChooseAttr", 0)
    with pytest.raises(ValueError, match="seed"):
        generate("ChooseAttr", 2, seed=-1)
    with pytest.raises(ValueError, match="ChooseRel"):
        generate("ChooseRel", 2, config=MiniGQAConfig(min_objects=1, max_objects=1))


def _scene_batch_by_make_question(n_scenes, tasks, per_scene, *, split, seed, config):
    """generate_scene_batch's loop written with make_question per try (what it did before it
    shared each scene's dict, hash and CompareAttr pairs across tries)."""
    from pidlib.data.minigqa.questions import _balance_key, _bins, _check, _finish, _pick, _rng

    config = _check(split, seed, config)
    rng, out = _rng(seed, split, 100), []
    counts = {t: dict.fromkeys(_bins(t), 0) for t in tasks}
    fp = config.fingerprint()
    while len(out) < n_scenes:
        scene = make_scene(rng, config)
        if scene_split(scene) != split:
            continue
        qs = []
        for _try in range(4 * per_scene):
            task = _pick(rng, tasks)
            s = make_question(scene, task, rng, config)
            if s is None or any(q.question == s.question for q in qs):
                continue
            c = counts[task]
            if c[_balance_key(s)] - min(c.values()) >= max(3, 0.02 * sum(c.values())):
                continue
            c[_balance_key(s)] += 1
            qs.append(s)
            if len(qs) == per_scene:
                break
        if qs:
            image, n = render(scene, config), len(out)
            out.append((scene, image, [_finish(s, f"mgqa{fp}-{split}-s{seed}-b{n:05d}-q{j}",
                                               image, split, seed)
                                       for j, s in enumerate(qs)]))  # fmt: skip
    return out


@pytest.mark.parametrize("tasks", [TASKS, ("CompareAttr",)])
def test_scene_batches_equal_the_question_by_question_loop(tasks):
    """The training pools' generator shares work across a scene's tries (most are rejected);
    the questions, answers, ids and images are those of the plain make_question loop."""
    config = MiniGQAConfig()
    fast = generate_scene_batch(40, tasks, 8, split="train", seed=11, config=config)
    plain = _scene_batch_by_make_question(40, tasks, 8, split="train", seed=11, config=config)
    assert len(fast) == len(plain) == 40
    for (s1, im1, q1), (s2, im2, q2) in zip(fast, plain, strict=True):
        assert s1 == s2 and np.array_equal(np.asarray(im1), np.asarray(im2))
        fields = ("qid", "task", "question", "answer", "options", "image_id", "scene", "meta")
        assert [[getattr(q, f) for f in fields] for q in q1] == [
            [getattr(q, f) for f in fields] for q in q2
        ]
