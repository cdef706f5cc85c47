"""Mini-GQA's functional programs (GQA-like) and their executor; the vocabulary of questions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pidlib.data.minigqa.scenes import (
    MATERIALS,
    PLURALS,
    SIZES,
    MiniGQAConfig,
)

__all__ = ["TASK_OPTIONS", "execute", "vocabulary", "question_words"]

#: Fixed answer sets (the order Y is read over); the choose tasks take theirs from the question.
TASK_OPTIONS: dict[str, tuple[str, ...]] = {
    "ChooseRel": ("left", "right"),
    "CompareAttr": ("color", "material", "size"),
    "LogicalObj": ("yes", "no"),
    "QueryAttr": ("left", "right"),
}
_ATTRS = ("color", "size", "material")
_TEMPLATE_WORDS = (
    "is the or what object a to left right of are there either any that on which side image "
    "do and have in common yes no color material size ? ,"
).split()


# --------------------------------------------------------------------- programs (GQA-like)
def _side(obj: dict[str, Any], scene: dict[str, Any], config: MiniGQAConfig) -> str | None:
    """'left' / 'right' / None (centre) for one object."""
    if obj["cell"] is not None:
        twice = 2 * obj["cell"][1] + 1
        g = scene["grid_size"]
        return None if twice == g else ("left" if twice < g else "right")
    if abs(obj["x"] - 0.5) < config.side_margin:
        return None
    return "left" if obj["x"] < 0.5 else "right"


def _relation(a: dict[str, Any], b: dict[str, Any], config: MiniGQAConfig) -> str | None:
    """Whether ``a`` is 'left' or 'right' of ``b`` (None: too close to tell)."""
    if a["cell"] is not None:
        da = a["cell"][1] - b["cell"][1]
        return None if da == 0 else ("left" if da < 0 else "right")
    dx = a["x"] - b["x"]
    return None if abs(dx) < config.rel_margin else ("left" if dx < 0 else "right")


def execute(program: Sequence[dict[str, Any]], scene: dict[str, Any], config: MiniGQAConfig) -> str:
    """Run a stored program (list of ``{operation, argument, dependencies}``) on a scene dict.

    Operations: ``select`` (``attr=value`` → object ids), ``filter`` (ids, ``attr=value``),
    ``unique`` (exactly one id, else ``ValueError``), ``exist`` (ids → bool), ``or``,
    ``choose`` (``attr:a|b``), ``choose rel`` (``left|right``), ``query side``, ``common``.
    Returns the final step's result as the answer string.
    """
    objs = scene["objects"]
    out: list[Any] = []
    for step in program:
        op, arg, deps = step["operation"], step.get("argument", ""), step.get("dependencies", [])
        ins = [out[d] for d in deps]
        if op == "select":
            key, value = arg.split("=")
            res: Any = [i for i, o in enumerate(objs) if o[key] == value]
        elif op == "filter":
            key, value = arg.split("=")
            res = [i for i in ins[0] if objs[i][key] == value]
        elif op == "unique":
            if len(ins[0]) != 1:
                raise ValueError(f"unique: {len(ins[0])} objects match, expected 1")
            res = ins[0][0]
        elif op == "exist":
            res = bool(ins[0])
        elif op == "or":
            res = "yes" if any(ins) else "no"
        elif op == "choose":
            attr, pair = arg.split(":")
            res = objs[ins[0]][attr]
            if res not in pair.split("|"):
                raise ValueError(f"choose: the {attr} {res!r} is not among {pair!r}")
        elif op == "choose rel":
            res = _relation(objs[ins[0]], objs[ins[1]], config)
        elif op == "query side":
            res = _side(objs[ins[0]], scene, config)
        elif op == "common":
            shared = [a for a in TASK_OPTIONS["CompareAttr"] if objs[ins[0]][a] == objs[ins[1]][a]]
            res = shared[0] if len(shared) == 1 else None
        else:
            raise ValueError(f"unknown operation {op!r}")
        out.append(res)
    if not isinstance(out[-1], str):
        raise ValueError(f"program ends in {out[-1]!r}, not an answer")
    return out[-1]


def _step(operation: str, argument: str = "", *deps: int) -> dict[str, Any]:
    return {"operation": operation, "argument": argument, "dependencies": list(deps)}


def _select_unique(program: list[dict[str, Any]], key: str, value: str) -> int:
    program.append(_step("select", f"{key}={value}"))
    program.append(_step("unique", "", len(program) - 1))
    return len(program) - 1


# --------------------------------------------------------------------- words and display
def vocabulary(config: MiniGQAConfig | None = None) -> list[str]:
    """Every lower-case word (and ``?``, ``,``) that questions and answers can contain, sorted.

    Together with :func:`question_words` this is the closed vocabulary of a word tokenizer.
    """
    config = MiniGQAConfig() if config is None else config
    words = set(_TEMPLATE_WORDS) | set(config.shapes) | set(config.colors)
    words |= {PLURALS[s] for s in config.shapes} | set(SIZES) | set(MATERIALS)
    return sorted(words)


_WORD = re.compile(r"\w+|[^\w\s]")


def question_words(text: str) -> list[str]:
    """Split a question or answer into lower-case words and punctuation marks."""
    return _WORD.findall(text.lower())
