"""Mini-GQA questions written as a GQA folder: a balanced-questions JSON and ``images/*.jpg``.

The folder has the layout and record shape of GQA's release (question, answer, imageId, types,
a semantic program with GQA's ``choose`` arguments, the answer listed first as GQA does), so the
real loader (:func:`pidlib.data.gqa.load_gqa_questions`) reads it exactly as it reads GQA.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pidlib.data.tasks import Sample, validate_tasks

__all__ = ["GQA_TYPES", "gqa_record", "write_gqa_folder"]

#: (semantic, structural, detailed) as GQA writes them for each task's typical question.
GQA_TYPES: dict[str, tuple[str, str, str]] = {
    "ChooseAttr": ("attr", "choose", "chooseAttr"),
    "ChooseCat": ("cat", "choose", "categoryThisChoose"),
    "ChooseRel": ("rel", "choose", "relChooser"),
    "CompareAttr": ("attr", "compare", "twoCommon"),
    "LogicalObj": ("obj", "logical", "existThatOr"),
    "QueryAttr": ("attr", "query", "positionQuery"),
}


def _program(s: Sample) -> list[dict[str, Any]]:
    """A GQA-style program; choose steps list the answer first, as GQA's mostly do."""
    select = {"operation": "select", "dependencies": [], "argument": "object (0)"}
    if s.task not in ("ChooseAttr", "ChooseCat", "ChooseRel"):
        return [select]
    other = next(o for o in s.options if o != s.answer)
    if s.task == "ChooseRel":  # GQA writes relation phrases: "to the left of|to the right of"
        arg = f"object,to the {s.answer} of|to the {other} of,s (1)"
        return [select, {"operation": "choose rel", "dependencies": [0], "argument": arg}]
    op = "choose name" if s.task == "ChooseCat" else "choose"
    return [select, {"operation": op, "dependencies": [0], "argument": f"{s.answer}|{other}"}]


def gqa_record(s: Sample, image_id: str) -> dict[str, Any]:
    """One sample as a record of GQA's balanced-questions JSON."""
    sem, struct, det = GQA_TYPES[s.task]
    return {
        "question": s.question,
        "answer": s.answer,
        "fullAnswer": s.answer,
        "imageId": image_id,
        "isBalanced": True,
        "types": {"semantic": sem, "structural": struct, "detailed": det},
        "semantic": _program(s),
    }


def write_gqa_folder(
    folder: str | os.PathLike,
    per_task: int,
    *,
    tasks: Any = "all",
    split: str = "test",
    seed: int = 2026,
) -> Path:
    """Write ``per_task`` Mini-GQA questions per task to ``folder`` in GQA's format; its path.

    ``folder/val_balanced_questions.json`` and ``folder/images/<imageId>.jpg`` (JPEG, quality
    95). Nothing is rewritten when ``folder/manifest.json`` already records the same request.
    """
    from pidlib.data.minigqa.questions import generate

    folder = Path(folder)
    tasks = validate_tasks(tasks)
    if not isinstance(per_task, int) or per_task < 1:
        raise ValueError(f"per_task must be a positive integer, got {per_task!r}")
    request = {"per_task": per_task, "tasks": list(tasks), "split": split, "seed": seed}
    manifest = folder / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()) == request:
        return folder
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    records: dict[str, Any] = {}
    for t in tasks:
        for i, s in enumerate(generate([t], per_task, split=split, seed=seed)):
            image_id = f"mgqa{seed}{t}{i:05d}"
            s.load_image().save(images / f"{image_id}.jpg", quality=95)
            records[f"{t}-{i:05d}"] = gqa_record(s, image_id)
    (folder / "val_balanced_questions.json").write_text(json.dumps(records, indent=1))
    manifest.write_text(json.dumps(request))
    return folder
