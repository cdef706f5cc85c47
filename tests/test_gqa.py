"""Tests of the real-GQA loaders on a hand-written balanced-JSON fixture and Zhang et al.'s CSVs."""

from __future__ import annotations

import ast
import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pidlib.data.gqa import (
    CSV_COLUMNS,
    choose_options,
    load_gqa_questions,
    load_zhang_csv,
    task_of_types,
)
from pidlib.data.tasks import TASKS

FIXTURES = Path(__file__).parent / "fixtures"
GQA_JSON = FIXTURES / "gqa_balanced_questions_sample.json"
CSV_DIR = FIXTURES / "gqa-samples"


def _load_json(**kwargs):
    with pytest.warns(UserWarning, match="skipped 1 questions .*QueryAttr: 1 answer not among"):
        return load_gqa_questions(GQA_JSON, "/images", **kwargs)


# --------------------------------------------------------------------------- task selection


@pytest.mark.parametrize(
    ("types", "task"),
    [
        (("attr", "choose", "materialChoose"), "ChooseAttr"),
        (("cat", "choose", "categoryThisChoose"), "ChooseCat"),
        (("rel", "choose", "chooseRel"), "ChooseRel"),
        (("obj", "logical", "logicOr"), "LogicalObj"),
        (("attr", "query", "positionQuery"), "QueryAttr"),
        (("attr", "query", "positionquery"), "QueryAttr"),  # detailed names: case-insensitive
        (("attr", "compare", "twoCommon"), "CompareAttr"),
        (("attr", "query", "directOf"), None),
        (("attr", "compare", "sameColor"), None),
        (("rel", "verify", "relVerify"), None),
        (("obj", "verify", "exist"), None),
    ],
)
def test_task_of_types(types, task):
    assert task_of_types(*types) == task


def test_json_selects_the_six_tasks():
    samples = _load_json()
    by_task = Counter(s.task for s in samples)
    assert by_task == {"ChooseAttr": 4, "ChooseCat": 2, "ChooseRel": 2, "LogicalObj": 2,
                       "QueryAttr": 2, "CompareAttr": 2}  # fmt: skip
    assert not any(s.qid.startswith("x_") or s.qid == "f_qa3_skip" for s in samples)
    raw = json.loads(GQA_JSON.read_text())
    for s in samples:
        q = raw[s.qid]
        assert s.question == q["question"] and s.answer == q["answer"] and s.answer in s.options
        assert s.image_id == q["imageId"] and s.image_path == f"/images/{q['imageId']}.jpg"
        assert s.image is None and s.meta["types"] == q["types"]


def test_json_options():
    opts = {s.qid: s.options for s in _load_json()}
    assert opts["f_ca1"] == ("full", "empty")  # question order, not the program's "empty|full"
    assert opts["f_ca2"] == ("wood", "iron")
    assert opts["f_ca3"] == ("dark", "light brown")  # multi-word option
    assert opts["f_ca4"] == ("cloudy", "clear")  # no program: read from the question
    assert opts["f_cc1"] == ("cabinet", "bed")
    assert opts["f_cc2"] == ("cup", "bowl")
    assert opts["f_cr1"] == ("left", "right")  # "to the left of|to the right of" stripped
    assert opts["f_cr2"] == ("front", "behind")  # "in front of|behind" in the answers' words
    assert opts["f_lo1"] == opts["f_lo2"] == ("yes", "no")
    assert opts["f_qa1"] == opts["f_qa2"] == ("left", "right")
    assert opts["f_cm1"] == opts["f_cm2"] == ("color", "material")  # the answers seen


def test_json_tasks_limit_and_fixed_compare_options():
    samples = load_gqa_questions(GQA_JSON, "/images", tasks=["ChooseAttr", "CompareAttr"], limit=1)
    assert [(s.task, s.qid) for s in samples] == [("ChooseAttr", "f_ca1"), ("CompareAttr", "f_cm1")]
    samples = load_gqa_questions(
        GQA_JSON, "/images", tasks="CompareAttr", compare_options=("color", "material", "shape")
    )
    assert {s.options for s in samples} == {("color", "material", "shape")}


def test_json_strict_raises_instead_of_skipping():
    with pytest.raises(ValueError, match="f_qa3_skip.*not among the options"):
        load_gqa_questions(GQA_JSON, "/images", tasks="QueryAttr", strict=True)


def test_unknown_task_and_bad_limit():
    with pytest.raises(ValueError, match="unknown task 'CountObj'"):
        load_gqa_questions(GQA_JSON, "/images", tasks=["ChooseAttr", "CountObj"])
    with pytest.raises(ValueError, match="unknown task"):
        load_zhang_csv(CSV_DIR / "ChooseAttr_sample.csv", "/images", task="Choose")
    with pytest.raises(ValueError, match="limit"):
        load_gqa_questions(GQA_JSON, "/images", limit=0)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not a GQA questions JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"q1": 5}', "q1 is not a JSON object"),
        ('{"q1": {"question": "Is it red?"}}', "q1 lacks imageId, types"),
    ],
)
def test_json_malformed(tmp_path, content, match):
    path = tmp_path / "q.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_gqa_questions(path, tmp_path)


def test_json_missing_file_and_missing_answer(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_gqa_questions(tmp_path / "nope.json", tmp_path)
    raw = json.loads(GQA_JSON.read_text())
    raw["f_lo1"].pop("answer")
    path = tmp_path / "test_balanced_questions.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="f_lo1 has no answer.*testdev"):
        load_gqa_questions(path, tmp_path, tasks="LogicalObj")


def test_images_are_loaded_lazily_with_clear_errors(tmp_path):
    samples = load_gqa_questions(GQA_JSON, tmp_path, tasks="LogicalObj")
    with pytest.raises(FileNotFoundError, match=f"'2400005' not found at {tmp_path}"):
        samples[0].load_image()
    with pytest.raises(FileNotFoundError, match="2 of 2 images are missing"):
        load_gqa_questions(GQA_JSON, tmp_path, tasks="LogicalObj", check_images=True)
    pixels = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    for s in samples:
        Image.fromarray(pixels).save(tmp_path / f"{s.image_id}.jpg")
    load_gqa_questions(GQA_JSON, tmp_path, tasks="LogicalObj", check_images=True)
    img = samples[0].load_image()
    assert img.mode == "RGB" and img.size == (20, 12)


# --------------------------------------------------------------------------- option parsing


def test_choose_options_sources():
    prog = [{"operation": "choose rel", "argument": "man,to the left of|to the right of,s (7)"}]
    q = "Is the man to the right or to the left of the car?"
    assert choose_options(q, "left", prog) == ("right", "left")  # question order
    assert choose_options("Is the shirt sleeveless or short sleeved?", "short sleeved") == (
        "sleeveless",
        "short sleeved",
    )
    q = "Is the shirt short sleeved or long sleeved?"
    assert choose_options(q, "long sleeved") == ("short sleeved", "long sleeved")
    assert choose_options("Is the floor dark or light brown?", "light brown") == (
        "dark",
        "light brown",
    )
    assert choose_options("What is this, a cabinet or a bed?", "bed") == ("cabinet", "bed")
    assert choose_options("Is the jar full or empty?", "red") is None
    assert choose_options("What color is the car?", "red") is None


# --------------------------------------------------------------------------- Zhang et al.'s CSVs


def _csv_rows(name: str) -> list[dict[str, str]]:
    with (CSV_DIR / name).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_zhang_choose_attr_csv():
    rows = _csv_rows("ChooseAttr_sample.csv")
    samples = load_zhang_csv(CSV_DIR / "ChooseAttr_sample.csv", "/gqa/images")
    assert len(samples) == len(rows) == 50
    assert {s.task for s in samples} == {"ChooseAttr"}
    for s, r in zip(samples, rows, strict=True):
        assert s.qid == r["question_id"] and s.image_id == r["img_id"]
        assert s.image_path == f"/gqa/images/{r['img_id']}.jpg"
        assert set(s.options) == {r["true option"], r["false option"]} and s.answer == r["answer"]
    qids = [s.qid for s in samples]
    assert "08213952" in qids and "011016888" in qids  # leading zeros kept
    assert samples[0].options == ("full", "empty")  # "Is the jar full or empty?"


def test_program_parser_agrees_with_released_options():
    """The JSON path's option parser recovers Zhang et al.'s true/false options from the program."""
    for r in _csv_rows("ChooseAttr_sample.csv"):
        prog = ast.literal_eval(r["operations"])
        got = choose_options(r["question"], r["answer"], prog)
        assert got is not None and set(got) == {r["true option"], r["false option"]}, r["question"]


def test_zhang_query_attr_csv():
    samples = load_zhang_csv(CSV_DIR / "QueryAttr_sample.csv", "/gqa/images")
    assert len(samples) == 50 and {s.task for s in samples} == {"QueryAttr"}
    assert {s.options for s in samples} == {("left", "right")}
    assert samples[0].qid == "02452198"


def test_zhang_csv_task_from_types_and_errors(tmp_path):
    renamed = tmp_path / "list.csv"
    shutil.copy(CSV_DIR / "QueryAttr_sample.csv", renamed)
    assert {s.task for s in load_zhang_csv(renamed, tmp_path)} == {"QueryAttr"}
    with pytest.raises(ValueError, match="not those of ChooseAttr"):
        load_zhang_csv(renamed, tmp_path, task="ChooseAttr")
    rows = _csv_rows("QueryAttr_sample.csv")
    bad = tmp_path / "QueryAttr_bad.csv"
    with bad.open("w", newline="") as fh:
        cols = [c for c in rows[0] if c != "type_semantic"]
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows[:3])
    with pytest.raises(ValueError, match="missing column.*type_semantic"):
        load_zhang_csv(bad, tmp_path)
    empty = tmp_path / "QueryAttr_empty.csv"
    empty.write_text(",".join(CSV_COLUMNS) + "\n")
    with pytest.raises(ValueError, match="no rows"):
        load_zhang_csv(empty, tmp_path)
    with pytest.raises(FileNotFoundError, match="task CSV not found"):
        load_zhang_csv(tmp_path / "missing.csv", tmp_path)


def test_every_task_is_reachable():
    assert {task_of_types(*TASK_TYPES) for TASK_TYPES in _TYPES} == set(TASKS)


_TYPES = [
    ("attr", "choose", "chooseAttr"),
    ("cat", "choose", None),
    ("rel", "choose", None),
    ("obj", "logical", None),
    ("attr", "query", "positionQuery"),
    ("attr", "compare", "twoCommon"),
]
