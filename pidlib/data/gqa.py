"""Real GQA questions (balanced JSON or Zhang et al.'s task CSVs) as :class:`Sample` records."""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pidlib.data.options import choose_options, in_answer_vocabulary, question_order
from pidlib.data.tasks import (
    FIXED_ANSWERS,
    TASK_GQA_TYPES,
    TASKS,
    Sample,
    validate_task,
    validate_tasks,
)

__all__ = [
    "CSV_COLUMNS",
    "task_of_types",
    "task_of_filename",
    "choose_options",
    "load_gqa_questions",
    "load_zhang_csv",
]

#: Columns every released task CSV of Zhang et al. carries (the loader needs no others).
CSV_COLUMNS: tuple[str, ...] = (
    "question_id",
    "img_id",
    "question",
    "answer",
    "type_detailed",
    "type_semantic",
    "type_structural",
)

_CHOOSE_TASKS = tuple(t for t in TASKS if TASK_GQA_TYPES[t][1] == "choose")


def task_of_types(semantic: str, structural: str, detailed: str | None) -> str | None:
    """The task a GQA question belongs to, by its types (Zhang et al.'s rule), or ``None``.

    ``detailed`` is compared case-insensitively (GQA writes e.g. ``positionQuery``,
    ``twoCommon``; the released CSVs copy these names).
    """
    for task, (sem, struct, det) in TASK_GQA_TYPES.items():
        if semantic == sem and structural == struct:
            if det is None or (detailed or "").lower() == det.lower():
                return task
    return None


def task_of_filename(path: str | os.PathLike) -> str | None:
    """The task a file name names, or ``None``: a part of its stem, split at ``_ - .`` and
    spaces, equal to a task name (any case). Zhang et al.'s released lists end in
    ``_<Task>.csv``; ``<Task>_sample.csv`` and ``<Task>.csv`` work too. A name with two task
    names is ambiguous: ``ValueError``."""
    parts = {p.lower() for p in re.split(r"[_\-. ]+", Path(path).stem) if p}
    found = [t for t in TASKS if t.lower() in parts]
    if len(found) > 1:
        raise ValueError(f"{path}: the file name names several tasks ({', '.join(found)})")
    return found[0] if found else None


class _Skips:
    """Counts questions skipped per (task, reason) and reports them in one warning."""

    def __init__(self, source: str, strict: bool) -> None:
        self.source, self.strict, self.counts = source, strict, Counter()

    def skip(self, task: str, reason: str, qid: str) -> None:
        if self.strict:
            raise ValueError(f"{self.source}: question {qid} ({task}): {reason}")
        self.counts[(task, reason)] += 1

    def report(self) -> None:
        if self.counts:
            parts = "; ".join(f"{t}: {n} {r}" for (t, r), n in sorted(self.counts.items()))
            warnings.warn(
                f"{self.source}: skipped {sum(self.counts.values())} questions ({parts})",
                stacklevel=3,
            )


def _build_samples(
    records: list[dict[str, Any]],
    images_dir: Path,
    skips: _Skips,
    compare_options: Sequence[str] | None,
    limit: int | None,
) -> list[Sample]:
    """Records with qid, task, question, answer, image_id, program, options?, meta -> samples."""
    if compare_options is None:
        seen = sorted({r["answer"] for r in records if r["task"] == "CompareAttr"})
        compare_options = tuple(seen) if len(seen) >= 2 else ("color", "material", "shape")
    per_task: Counter = Counter()
    out = []
    for r in records:
        task = r["task"]
        if limit is not None and per_task[task] >= limit:
            continue
        if task in _CHOOSE_TASKS:
            opts = r.get("options") or choose_options(r["question"], r["answer"], r["program"])
        elif task == "CompareAttr":
            opts = tuple(compare_options)
        else:
            opts = FIXED_ANSWERS[task]
        if not opts or r["answer"] not in opts:
            skips.skip(task, "answer not among the options", r["qid"])
            continue
        out.append(
            Sample(
                qid=r["qid"],
                task=task,
                question=r["question"].strip(),
                answer=r["answer"],
                options=tuple(opts),
                image_id=r["image_id"],
                image_path=str(images_dir / f"{r['image_id']}.jpg"),
                meta=r["meta"],
            )
        )
        per_task[task] += 1
    skips.report()
    return out


def _check_images(samples: list[Sample]) -> None:
    missing = [s.image_path for s in samples if not Path(s.image_path).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(samples)} images are missing, e.g. {missing[:3]}"
        )


def _file(path: str | os.PathLike, what: str, pattern: str, example: str) -> Path:
    """``path`` as an existing file; a missing path or a folder raise an error that says so."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.glob(pattern))[:5]
        listing = f" it holds {', '.join(inside)}" if inside else f" it holds no {pattern} file"
        raise IsADirectoryError(
            f"{what} {path} is a folder, not a file:{listing}. Point at the file itself, "
            f"e.g. {path / example}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")


def load_gqa_questions(
    path: str | os.PathLike,
    images_dir: str | os.PathLike,
    tasks: str | Sequence[str] = "all",
    limit: int | None = None,
    *,
    compare_options: Sequence[str] | None = None,
    strict: bool = False,
    check_images: bool = False,
) -> list[Sample]:
    """Select the six tasks from a GQA balanced-questions JSON (qid -> question record).

    ``limit`` caps the questions per task (file order). Options: choose tasks as
    :func:`choose_options` finds them; LogicalObj yes/no, QueryAttr left/right; CompareAttr
    ``compare_options`` or else the sorted answers seen. A question whose answer is not among
    its options is skipped and counted in one warning (``strict=True``: ``ValueError``). A
    question with no answer (GQA's test/challenge files) is an error. Images are
    ``images_dir/<imageId>.jpg``, read when a sample's image is loaded (``check_images``: now).
    """
    wanted = set(validate_tasks(tasks))
    _check_limit(limit)
    path = _file(path, "GQA questions file", "*.json", "val_balanced_questions.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a GQA questions JSON file ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object mapping question ids to questions")
    if not data:
        raise ValueError(
            f"{path}: the file holds no questions ({{}}); point it at GQA's balanced questions "
            "(val_balanced_questions.json or testdev_balanced_questions.json)"
        )
    records = []
    for qid, q in data.items():
        if not isinstance(q, dict):
            raise ValueError(f"{path}: question {qid} is not a JSON object")
        lacking = [k for k in ("question", "imageId", "types") if k not in q]
        if lacking:
            raise ValueError(f"{path}: question {qid} lacks {', '.join(lacking)}")
        types = q["types"] or {}
        task = task_of_types(types.get("semantic"), types.get("structural"), types.get("detailed"))
        if task not in wanted:
            continue
        answer = str(q.get("answer") or "").strip().lower()
        if not answer:
            raise ValueError(
                f"{path}: question {qid} has no answer (GQA's test and challenge files have "
                "none; use the balanced val or testdev questions)"
            )
        meta = {"source": "gqa", "types": dict(types), "full_answer": q.get("fullAnswer")}
        records.append(
            {
                "qid": str(qid),
                "task": task,
                "question": q["question"],
                "answer": answer,
                "image_id": str(q["imageId"]),
                "program": q.get("semantic"),
                "meta": meta,
            }
        )
    samples = _build_samples(
        records, Path(images_dir), _Skips(str(path), strict), compare_options, limit
    )
    if check_images:
        _check_images(samples)
    return samples


def _csv_task(path: Path, rows: list[dict[str, str]], task: str | None) -> str:
    if task is not None:
        return validate_task(task)
    by_name = task_of_filename(path)
    if by_name:
        return by_name
    found = {
        task_of_types(r["type_semantic"], r["type_structural"], r["type_detailed"]) for r in rows
    }
    if len(found) == 1 and None not in found:
        return found.pop()
    raise ValueError(
        f"{path}: cannot tell the task from the file name or the type columns; pass task="
    )


def _parse_program(text: str) -> list[dict[str, Any]] | None:
    try:
        prog = ast.literal_eval(text) if text else None
    except (ValueError, SyntaxError):
        return None
    return prog if isinstance(prog, list) else None


def load_zhang_csv(
    path: str | os.PathLike,
    images_dir: str | os.PathLike,
    task: str | None = None,
    *,
    compare_options: Sequence[str] | None = None,
    strict: bool = False,
    check_images: bool = False,
) -> list[Sample]:
    """Read one of Zhang et al.'s released task CSVs (GQA val questions) as samples.

    Only :data:`CSV_COLUMNS` are required; choose tasks use ``true option`` / ``false option``
    when present (else :func:`choose_options` on ``operations``). ``question_id`` stays a
    string (leading zeros). ``task`` defaults to the one the file name names
    (:func:`task_of_filename`, e.g. ``GQA_val_ChooseRel.csv``) or else the type columns; a row
    whose types belong to another task is an error. UTF-8 with or without a byte-order mark.
    Skips and images as in :func:`load_gqa_questions`.
    """
    path = _file(path, "task CSV", "*.csv", "GQA_val_ChooseAttr.csv")
    try:  # utf-8-sig: a spreadsheet's re-save starts with a byte-order mark
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: not a readable CSV file ({err})") from err
    if not header:
        raise ValueError(f"{path}: the file is empty (no header, no rows)")
    lacking = [c for c in CSV_COLUMNS if c not in header]
    if lacking:
        raise ValueError(f"{path}: missing column(s) {', '.join(lacking)}; found {header}")
    if not rows:
        raise ValueError(f"{path}: no rows")
    task = _csv_task(path, rows, task)
    records = []
    for i, r in enumerate(rows, start=2):  # line numbers as an editor shows them
        qid = r["question_id"].strip()
        own = task_of_types(r["type_semantic"], r["type_structural"], r["type_detailed"])
        if own != task:
            raise ValueError(
                f"{path}:{i}: question {qid} has types "
                f"{r['type_semantic']}/{r['type_structural']}/{r['type_detailed']}, "
                f"not those of {task}"
            )
        answer = (r["answer"] or "").strip().lower()
        if not answer or not (r["question"] or "").strip():
            raise ValueError(f"{path}:{i}: question {qid} lacks a question or an answer")
        given = tuple((r.get(k) or "").strip().lower() for k in ("true option", "false option"))
        forms = in_answer_vocabulary(given, answer) if all(given) else None
        options = question_order(r["question"], forms)[0] if forms else None
        meta = {
            "source": "zhang2025",
            "types": {
                "semantic": r["type_semantic"],
                "structural": r["type_structural"],
                "detailed": r["type_detailed"],
            },
        }
        records.append(
            {
                "qid": qid,
                "task": task,
                "question": r["question"],
                "answer": answer,
                "image_id": r["img_id"].strip(),
                "options": options,
                "program": _parse_program(r.get("operations") or ""),
                "meta": meta,
            }
        )
    samples = _build_samples(
        records, Path(images_dir), _Skips(str(path), strict), compare_options, None
    )
    if check_images:
        _check_images(samples)
    return samples
