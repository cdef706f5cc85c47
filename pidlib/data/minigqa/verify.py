"""Independent Mini-GQA verifier: re-derives each answer from the question text and scene graph."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from pidlib.data.minigqa.render import render
from pidlib.data.minigqa.scenes import MATERIALS, PLURALS, SIZES, MiniGQAConfig, Scene
from pidlib.data.tasks import Sample

__all__ = ["verify", "verify_all"]

# This module shares no code with the question generators in ``pidlib.minigqa`` (it parses the
# question text and reads the scene dict directly), so that it can catch their bugs. It only
# borrows ``execute`` to check that the stored program agrees.
_PARSE = {
    "ChooseAttr": r"Is the (\w+) (\w+) or (\w+)\?",
    "ChooseCat": r"What is the (\w+) object, a (\w+) or a (\w+)\?",
    "ChooseRel": r"Is the (\w+) to the left or to the right of the (\w+)\?",
    "LogicalObj": r"Are there either any (\w+) or (\w+) that are (\w+)\?",
    "QueryAttr": r"On which side of the image is the (\w+)\?",
    "CompareAttr": r"What do the (\w+) and the (\w+) have in common\?",
}


class _Bad(Exception):
    pass


def _scene_problem(scene: dict[str, Any], cfg: MiniGQAConfig) -> None:
    """Raise ``_Bad`` if the scene graph is malformed (vocabulary, cells, overlaps)."""
    objs = scene["objects"]
    for o in objs:
        if o["shape"] not in cfg.shapes or o["color"] not in cfg.colors:
            raise _Bad(f"object {o['id']}: {o['color']} {o['shape']} is outside the vocabulary")
        if o["size"] not in SIZES or o["material"] not in MATERIALS:
            raise _Bad(f"object {o['id']}: unknown size or material")
        x0, y0, x1, y1 = (
            o["x"] - o["radius"],
            o["y"] - o["radius"],
            o["x"] + o["radius"],
            o["y"] + o["radius"],
        )
        if scene["layout"] == "grid":
            g, (row, col) = scene["grid_size"], o["cell"]
            if not (
                col / g <= x0 and x1 <= (col + 1) / g and row / g <= y0 and y1 <= (row + 1) / g
            ):
                raise _Bad(f"object {o['id']} leaves its cell {o['cell']}")
        elif min(x0, y0) < 0 or max(x1, y1) > 1:
            raise _Bad(f"object {o['id']} leaves the image")
    for n, a in enumerate(objs):
        for b in objs[n + 1 :]:
            if np.hypot(a["x"] - b["x"], a["y"] - b["y"]) < a["radius"] + b["radius"]:
                raise _Bad(f"objects {a['id']} and {b['id']} overlap")


def _derive(task: str, words: tuple[str, ...], scene: dict[str, Any], cfg: MiniGQAConfig):
    """(answer, options) of a parsed question, computed directly from the scene graph."""
    objs = scene["objects"]
    g = scene["grid_size"]

    def the(key: str, value: str) -> dict[str, Any]:
        found = [o for o in objs if o[key] == value]
        if len(found) != 1:
            raise _Bad(f"'the {value}' is ambiguous: {len(found)} objects match")
        return found[0]

    def column_side(o: dict[str, Any]) -> str:
        if scene["layout"] == "grid":
            mid = (g - 1) / 2
            if o["cell"][1] == mid:
                raise _Bad("the object is in the middle column")
            return "left" if o["cell"][1] < mid else "right"
        if abs(o["x"] - 0.5) < cfg.side_margin:
            raise _Bad("the object is too close to the vertical midline")
        return "left" if o["x"] < 0.5 else "right"

    if task == "ChooseAttr":
        obj, a, b = the("shape", words[0]), words[1], words[2]
        vocabs = {"color": cfg.colors, "size": SIZES, "material": MATERIALS}
        attrs = [k for k, v in vocabs.items() if a in v and b in v and a != b]
        if len(attrs) != 1 or obj[attrs[0]] not in (a, b):
            raise _Bad(f"options {a!r}/{b!r} do not name the object's value once")
        return obj[attrs[0]], (a, b)
    if task == "ChooseCat":
        obj, a, b = the("color", words[0]), words[1], words[2]
        if a == b or obj["shape"] not in (a, b):
            raise _Bad(f"options {a!r}/{b!r} do not name the object's shape once")
        return obj["shape"], (a, b)
    if task == "ChooseRel":
        s, t = the("shape", words[0]), the("shape", words[1])
        if s is t:
            raise _Bad("an object compared with itself")
        if scene["layout"] == "grid":
            if s["cell"][1] == t["cell"][1]:
                raise _Bad("both objects are in one column")
            return ("left" if s["cell"][1] < t["cell"][1] else "right"), ("left", "right")
        if abs(s["x"] - t["x"]) < cfg.rel_margin:
            raise _Bad("the objects are too close horizontally")
        return ("left" if s["x"] < t["x"] else "right"), ("left", "right")
    if task == "LogicalObj":
        singular = {PLURALS[k]: k for k in cfg.shapes}
        if words[0] not in singular or words[1] not in singular or words[0] == words[1]:
            raise _Bad(f"bad shape names {words[:2]}")
        named = {singular[words[0]], singular[words[1]]}
        hit = any(o["shape"] in named and o["color"] == words[2] for o in objs)
        return ("yes" if hit else "no"), ("yes", "no")
    if task == "QueryAttr":
        return column_side(the("shape", words[0])), ("left", "right")
    if task == "CompareAttr":
        s, t = the("shape", words[0]), the("shape", words[1])
        same = [k for k in ("color", "material", "size") if s[k] == t[k] and s is not t]
        if len(same) != 1:
            raise _Bad(f"the objects share {same}, not exactly one attribute")
        return same[0], ("color", "material", "size")
    raise _Bad(f"unknown task {task!r}")


def _problem(sample: Sample, check_image: bool) -> str | None:
    """Why ``sample`` is wrong, or None."""
    try:
        cfg = MiniGQAConfig(**sample.meta["config"])
        scene = sample.scene
        _scene_problem(scene, cfg)
        m = re.fullmatch(_PARSE[sample.task], sample.question)
        if m is None:
            raise _Bad("the question does not parse")
        answer, options = _derive(sample.task, m.groups(), scene, cfg)
        if (answer, options) != (sample.answer, sample.options):
            raise _Bad(
                f"expected {answer!r} over {options}, sample has "
                f"{sample.answer!r} over {sample.options}"
            )
        from pidlib.data.minigqa.program import execute

        if execute(sample.meta["program"], scene, cfg) != answer:
            raise _Bad("the stored program gives another answer")
        if check_image and sample.image is not None:
            drawn = np.asarray(render(Scene.from_dict(scene), cfg))
            if not np.array_equal(np.asarray(sample.image), drawn):
                raise _Bad("the image is not a rendering of the scene")
    except (_Bad, ValueError, KeyError, TypeError, IndexError) as err:
        return f"{type(err).__name__}: {err}" if not isinstance(err, _Bad) else str(err)
    return None


def verify(sample: Sample, check_image: bool = True) -> bool:
    """True if the answer, options, program and image all agree with the scene graph."""
    return _problem(sample, check_image) is None


def verify_all(samples: Iterable[Sample], check_image: bool = True) -> int:
    """Verify every sample; raise ``ValueError`` naming the first bad one. Returns the count."""
    count = 0
    for s in samples:
        why = _problem(s, check_image)
        if why is not None:
            raise ValueError(f"sample {s.qid} ({s.task}: {s.question!r}): {why}")
        count += 1
    return count
