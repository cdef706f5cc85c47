"""The six GQA question types and the sample record every dataset loader produces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TASKS", "TASK_GQA_TYPES", "FIXED_ANSWERS", "Sample", "validate_task", "validate_tasks"]

#: The six question types of the paper, in the book's display order.
TASKS: tuple[str, ...] = (
    "ChooseAttr",
    "ChooseCat",
    "ChooseRel",
    "CompareAttr",
    "LogicalObj",
    "QueryAttr",
)

#: How Zhang et al. (CVPR 2025) select each task from GQA: (semantic, structural, detailed or None).
TASK_GQA_TYPES: dict[str, tuple[str, str, str | None]] = {
    "ChooseAttr": ("attr", "choose", None),
    "ChooseCat": ("cat", "choose", None),
    "ChooseRel": ("rel", "choose", None),
    "CompareAttr": ("attr", "compare", "twoCommon"),
    "LogicalObj": ("obj", "logical", None),
    "QueryAttr": ("attr", "query", "positionQuery"),
}

#: Tasks whose answer set does not depend on the question (choose tasks take it from the question).
FIXED_ANSWERS: dict[str, tuple[str, ...]] = {
    "LogicalObj": ("yes", "no"),
    "QueryAttr": ("left", "right"),
}


def validate_task(task: str) -> str:
    """Return ``task`` if it is one of :data:`TASKS`, else raise a ``ValueError`` listing them."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return task


def validate_tasks(tasks: Any) -> tuple[str, ...]:
    """Validate a task name, a list of them, or ``"all"``; return a tuple of known task names."""
    if tasks == "all" or tasks is None:
        return TASKS
    if isinstance(tasks, str):
        tasks = [tasks]
    out = tuple(validate_task(t) for t in tasks)
    if not out:
        raise ValueError("tasks: at least one task is needed")
    return out


@dataclass(frozen=True, eq=False)
class Sample:
    """One question about one image, as every loader (Mini-GQA, real GQA) returns it.

    ``options`` is the ordered answer set the target Y is read over: the two options named in
    the question for the choose tasks (in question order), a fixed set otherwise. ``answer`` is
    always one of ``options``.
    """

    qid: str
    task: str
    question: str
    answer: str
    options: tuple[str, ...]
    image_id: str
    image: Any = None  # a PIL image held in memory (Mini-GQA) ...
    image_path: str | None = None  # ... or a file read on demand (real GQA)
    scene: Mapping[str, Any] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_task(self.task)
        if not self.question or not self.question.strip():
            raise ValueError(f"sample {self.qid}: empty question")
        if not self.answer:
            raise ValueError(f"sample {self.qid}: question without an answer: {self.question!r}")
        if self.answer not in self.options:
            raise ValueError(
                f"sample {self.qid}: answer {self.answer!r} is not among options {self.options}"
            )

    def load_image(self):
        """The image as an RGB PIL image; a clear ``FileNotFoundError`` if it is missing."""
        if self.image is not None:
            return self.image
        if self.image_path is None:
            raise FileNotFoundError(f"sample {self.qid}: no image and no image path")
        path = Path(self.image_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"sample {self.qid}: image {self.image_id!r} not found at {path}"
            )
        from PIL import Image

        with Image.open(path) as im:
            return im.convert("RGB")
