"""Choose-question options on every phrasing of the real GQA samples, and the loaders' edge cases.

The fixtures under ``fixtures/gqa-samples/`` are rows of Zhang et al.'s released task lists (GQA
val questions); their ``true option`` / ``false option`` columns are the released options.
"""

from __future__ import annotations

import ast
import csv
import json
import re
import shutil
import warnings
from pathlib import Path

import pytest

from pidlib.data.gqa import load_gqa_questions, load_zhang_csv, task_of_filename
from pidlib.data.options import (
    choose_options,
    in_answer_vocabulary,
    program_options,
    question_order,
    relation_spellings,
)
from pidlib.data.tasks import TASK_GQA_TYPES, TASKS

CSV_DIR = Path(__file__).parent / "fixtures" / "gqa-samples"
CHOOSE = ("ChooseAttr", "ChooseCat", "ChooseRel")


def _rows(task: str) -> list[dict[str, str]]:
    with (CSV_DIR / f"{task}_sample.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _naive_order(question: str, a: str, b: str) -> tuple[str, str]:
    """An independent oracle: the option whose text starts first in the lower-cased question."""
    q = " " + re.sub(r"[^a-z0-9' ]", " ", question.lower().replace("-", " ")) + " "
    pa, pb = (q.find(" " + o.replace("-", " ") + " ") for o in (a, b))
    assert pa >= 0 and pb >= 0 and pa != pb, (question, a, b)
    return (a, b) if pa < pb else (b, a)


def _swapped(program: list[dict]) -> list[dict]:
    """The same program with each choose step's two options listed the other way round."""
    out = []
    for step in program:
        arg = step["argument"]
        if step["operation"].startswith("choose") and "|" in arg:
            fields = arg.split(",")
            i = next(k for k, f in enumerate(fields) if "|" in f)
            a, b = fields[i].split("|")
            fields[i] = f"{b}|{a}"
            arg = ",".join(fields)
        out.append({**step, "argument": arg})
    return out


# --------------------------------------------------------------------------- the shared samples


@pytest.mark.parametrize("task", CHOOSE)
def test_program_options_match_the_released_options_in_question_order(task):
    """Every row: the program gives the released pair, in the order the question names it."""
    for r in _rows(task):
        prog = ast.literal_eval(r["operations"])
        got = choose_options(r["question"], r["answer"], prog)
        want = _naive_order(r["question"], r["true option"], r["false option"])
        assert got == want, r["question"]


@pytest.mark.parametrize("task", CHOOSE)
def test_options_do_not_depend_on_the_programs_order(task):
    """GQA's programs mostly list the answer first: swapping them must change nothing."""
    first = 0
    for r in _rows(task):
        prog = ast.literal_eval(r["operations"])
        (pair,) = program_options(prog)
        first += r["answer"] in relation_spellings(pair[0])
        assert choose_options(r["question"], r["answer"], prog) == choose_options(
            r["question"], r["answer"], _swapped(prog)
        ), r["question"]
    assert first > 0  # the samples do list the answer first somewhere: the check has teeth


def test_question_text_alone_recovers_the_released_options():
    """Without a program (GQA's released JSON always has one; a trimmed file may not), "X or Y"
    read from the question gives the released options for ChooseAttr and ChooseCat."""
    for task in ("ChooseAttr", "ChooseCat"):
        for r in _rows(task):
            if "French fries" in r["question"]:  # the option is "fries": the text says more
                continue
            if len(r["false option"].split()) > len(r["answer"].split()):
                continue  # "dark or light brown" (answer dark): one word is read, see below
            got = choose_options(r["question"], r["answer"])
            assert got == _naive_order(r["question"], r["true option"], r["false option"]), r


def test_every_relation_phrasing_in_the_samples():
    phrasings = {(p, r["answer"]) for r in _rows("ChooseRel")
                 for (p, _) in [program_options(ast.literal_eval(r["operations"]))[0]]}  # fmt: skip
    # The samples use these relations; "in front of" both first and second in the question.
    assert {p for p, _ in phrasings} == {"to the left of", "to the right of", "in front of"}
    for r in _rows("ChooseRel"):
        got = choose_options(r["question"], r["answer"], ast.literal_eval(r["operations"]))
        assert set(got) in ({"left", "right"}, {"front", "behind"})


# --------------------------------------------------------------------------- relation vocabulary


@pytest.mark.parametrize(
    ("phrase", "spellings"),
    [
        ("to the left of", ("left", "the left", "to the left", "to the left of")),
        ("to the right of", ("right", "the right", "to the right", "to the right of")),
        ("in front of", ("front", "in front", "in front of")),
        ("on top of", ("top", "on top", "on top of")),
        ("behind", ("behind",)),
        ("above", ("above",)),
        ("below", ("below",)),
        ("under", ("under",)),
        ("light brown", ("light brown",)),
        ("on", ("on",)),
    ],
)
def test_relation_spellings(phrase, spellings):
    assert relation_spellings(phrase) == spellings


# GQA's relation pairs for "choose rel" (left/right, front/behind, above/below, top/under) and
# the question shapes its templates produce: each relation first and second, with "of" kept
# or dropped in the question, and the answer as GQA writes it (the bare word).
_REL_CASES = [
    ("Is the towel to the right or to the left of the faucet?",
     "to the left of|to the right of", "left", ("right", "left")),
    ("Is the towel to the right or to the left of the faucet?",
     "to the right of|to the left of", "right", ("right", "left")),
    ("Is the cat in front of or behind the sofa?", "in front of|behind", "behind",
     ("front", "behind")),
    ("Is the cat in front of or behind the sofa?", "in front of|behind", "front",
     ("front", "behind")),
    ("Are the large trees behind or in front of the house?", "in front of|behind", "front",
     ("behind", "front")),
    ("Are the large trees behind or in front of the house?", "behind|in front of", "behind",
     ("behind", "front")),
    ("Is the lamp above or below the table?", "above|below", "below", ("above", "below")),
    ("Is the lamp below or above the table?", "above|below", "above", ("below", "above")),
    ("Is the cup on top of or under the table?", "on top of|under", "top", ("top", "under")),
    ("Is the cup under or on top of the table?", "on top of|under", "under", ("under", "top")),
    ("Is the clock on top of or below the shelf?", "below|on top of", "below", ("top", "below")),
]  # fmt: skip


@pytest.mark.parametrize(("question", "arg", "answer", "want"), _REL_CASES)
def test_relation_options_in_the_answers_vocabulary(question, arg, answer, want):
    prog = [
        {"operation": "select", "dependencies": [], "argument": "table (1)"},
        {"operation": "choose rel", "dependencies": [0], "argument": f"cat,{arg},s (2)"},
    ]
    got = choose_options(question, answer, prog)
    assert got == want
    assert answer in got and not any(" of" in o for o in got)
    # No leak: the other answer gives the same options (spelling and order).
    other = next(o for o in got if o != answer)
    assert choose_options(question, other, prog) == got


# GQA's "choose <type>" operations (attribute, category and position choices): each with a
# question shaped as GQA's templates write it, the program listing the answer first.
_OP_CASES = [
    ("choose", "Is the jar full or empty?", "empty", ("full", "empty")),
    ("choose color", "Which color is the kite, orange or black?", "black", ("orange", "black")),
    ("choose material", "Is the door made of metal or wood?", "wood", ("metal", "wood")),
    ("choose shape", "Is the dessert round or rectangular?", "rectangular",
     ("round", "rectangular")),
    ("choose size", "Are the scissors small or large?", "large", ("small", "large")),
    ("choose length", "Is the hair long or short?", "short", ("long", "short")),
    ("choose height", "Does that boy look tall or short?", "short", ("tall", "short")),
    ("choose weather", "Is the sky cloudy or cloudless?", "cloudless", ("cloudy", "cloudless")),
    ("choose sportActivity", "What is the person doing, skating or swimming?", "swimming",
     ("skating", "swimming")),
    ("choose name", "Is this a cell phone or a computer?", "cell phone",
     ("cell phone", "computer")),
    ("choose name", "What type of food is not red, the hot dog or the sandwich?", "hot dog",
     ("hot dog", "sandwich")),
    ("choose hposition", "Is the cup on the left or on the right?", "right", ("left", "right")),
    ("choose vposition", "Is the plate on the top or on the bottom of the image?", "bottom",
     ("top", "bottom")),
    ("choose place", "Which place is it, a beach or a park?", "park", ("beach", "park")),
    ("choose company", "Who made the laptop, apple or dell?", "dell", ("apple", "dell")),
]  # fmt: skip


@pytest.mark.parametrize(("op", "question", "answer", "want"), _OP_CASES)
def test_every_choose_operation(op, question, answer, want):
    other = next(o for o in want if o != answer)
    prog = [{"operation": op, "dependencies": [0], "argument": f"{answer}|{other}"}]
    assert choose_options(question, answer, prog) == want
    assert choose_options(question, other, _swapped(prog)) == want
    if len(answer.split()) == len(other.split()):  # the question alone, when the rule can read it
        assert choose_options(question, answer) == want


def test_in_answer_vocabulary():
    assert in_answer_vocabulary(("in front of", "behind"), "behind") == ("front", "behind")
    assert in_answer_vocabulary(("to the left of", "to the right of"), "left") == ("left", "right")
    assert in_answer_vocabulary(("front", "behind"), "front") == ("front", "behind")
    # A dataset that spelt its answers in full keeps the full phrases, both of them.
    assert in_answer_vocabulary(("in front of", "behind"), "in front of") == (
        "in front of",
        "behind",
    )
    assert in_answer_vocabulary(("red", "blue"), "green") is None


# --------------------------------------------------------------------------- option spellings


def test_hyphenated_options_are_found_in_the_question():
    q = "Is the man wearing a jacket or a T-shirt?"
    assert choose_options(q, "t-shirt") == ("jacket", "t-shirt")
    assert choose_options(q, "jacket") == ("jacket", "t-shirt")  # spelt as the question has it
    prog = [{"operation": "choose name", "dependencies": [0], "argument": "t-shirt|jacket"}]
    assert choose_options(q, "t-shirt", prog) == ("jacket", "t-shirt")
    assert choose_options(q, "jacket", _swapped(prog)) == ("jacket", "t-shirt")
    assert question_order("Is it a t-shirt or a tank top?", ["tank top", "t-shirt"]) == (
        ("t-shirt", "tank top"),
        True,
    )


def test_multi_word_options_both_sides():
    q = "Is the shirt short sleeved or long sleeved?"
    assert choose_options(q, "long sleeved") == ("short sleeved", "long sleeved")
    assert choose_options(q, "short sleeved") == ("short sleeved", "long sleeved")
    assert choose_options("Is the floor dark or light brown?", "light brown") == (
        "dark",
        "light brown",
    )
    # The text alone cannot tell where "light brown" starts when "dark" is the answer (one word
    # is read); the program, which GQA always has, can.
    prog = [{"operation": "choose color", "dependencies": [0], "argument": "dark|light brown"}]
    assert choose_options("Is the floor dark or light brown?", "dark", prog) == (
        "dark",
        "light brown",
    )
    prog = [{"operation": "choose name", "dependencies": [0], "argument": "cell phone|computer"}]
    assert choose_options("Is this a cell phone or a computer?", "computer", prog) == (
        "cell phone",
        "computer",
    )


def test_unnamed_options_fall_back_to_an_order_that_ignores_the_answer():
    prog = [{"operation": "choose color", "dependencies": [0], "argument": "white|red"}]
    q = "Which color is it?"
    assert choose_options(q, "white", prog) == ("red", "white")
    assert choose_options(q, "red", _swapped(prog)) == ("red", "white")
    assert question_order(q, ["white", "red"]) == (("red", "white"), False)


def test_repeated_word_uses_the_occurrence_next_to_or():
    q = "Is the left man to the right or to the left of the car?"
    prog = [{"operation": "choose rel", "dependencies": [0],
             "argument": "man,to the left of|to the right of,s (1)"}]  # fmt: skip
    assert choose_options(q, "left", prog) == ("right", "left")


def test_no_options_found():
    assert choose_options("Is the jar full or empty?", "red") is None
    assert choose_options("What color is the car?", "red") is None


# --------------------------------------------------------------------------- the JSON path


def _as_gqa_json(tasks=CHOOSE) -> dict:
    """The samples as GQA's balanced-questions JSON would hold them (program in "semantic")."""
    out = {}
    for task in tasks:
        for r in _rows(task):
            out[f"{task}-{r['question_id']}"] = {
                "question": r["question"], "answer": r["answer"], "imageId": r["img_id"],
                "types": {"semantic": r["type_semantic"], "structural": r["type_structural"],
                          "detailed": r["type_detailed"]},
                "semantic": ast.literal_eval(r["operations"]),
            }  # fmt: skip
    return out


def test_json_path_keeps_every_choose_question_with_the_released_options(tmp_path):
    path = tmp_path / "val_balanced_questions.json"
    raw = _as_gqa_json()
    path.write_text(json.dumps(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no question may be skipped
        samples = load_gqa_questions(path, tmp_path)
    assert len(samples) == len(raw)
    for s in samples:
        task, qid = s.qid.split("-")
        (row,) = [r for r in _rows(task) if r["question_id"] == qid]
        assert s.task == task
        assert s.options == _naive_order(s.question, row["true option"], row["false option"])


# --------------------------------------------------------------------------- loader edge cases


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("GQA_val_ChooseRel.csv", "ChooseRel"),
        ("llava-1.5_choose_attr_ChooseAttr.csv", "ChooseAttr"),
        ("val balanced QueryAttr.csv", "QueryAttr"),
        ("CompareAttr_sample.csv", "CompareAttr"),
        ("logicalobj.csv", "LogicalObj"),
        ("questions.csv", None),
        ("ChooseCatalogue.csv", None),  # a task name inside a word is not a task
    ],
)
def test_task_of_filename(name, task):
    assert task_of_filename(name) == task


def test_task_of_filename_ambiguous():
    with pytest.raises(ValueError, match="several tasks.*ChooseAttr, ChooseCat"):
        task_of_filename("ChooseAttr_vs_ChooseCat.csv")


@pytest.mark.parametrize("task", TASKS)
def test_every_released_list_loads_under_its_real_name(tmp_path, task):
    real = tmp_path / f"GQA_val_{task}.csv"
    shutil.copy(CSV_DIR / f"{task}_sample.csv", real)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        samples = load_zhang_csv(real, tmp_path)
    assert len(samples) == len(_rows(task)) and {s.task for s in samples} == {task}
    sem, struct, _ = TASK_GQA_TYPES[task]
    assert all(s.meta["types"]["semantic"] == sem for s in samples)
    assert all(s.meta["types"]["structural"] == struct for s in samples)


def test_csv_with_byte_order_mark_loads_the_same(tmp_path):
    src = CSV_DIR / "ChooseRel_sample.csv"
    bom = tmp_path / "GQA_val_ChooseRel.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + src.read_bytes())
    a, b = load_zhang_csv(src, tmp_path), load_zhang_csv(bom, tmp_path)
    assert [(s.qid, s.options, s.answer) for s in a] == [(s.qid, s.options, s.answer) for s in b]


def test_empty_csv_is_reported_as_empty(tmp_path):
    empty = tmp_path / "GQA_val_ChooseAttr.csv"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="the file is empty"):
        load_zhang_csv(empty, tmp_path)
    empty.write_bytes(b"\xef\xbb\xbf")  # a BOM and nothing else is empty too
    with pytest.raises(ValueError, match="the file is empty"):
        load_zhang_csv(empty, tmp_path)


def test_csv_path_that_is_a_folder(tmp_path):
    shutil.copy(CSV_DIR / "ChooseAttr_sample.csv", tmp_path / "GQA_val_ChooseAttr.csv")
    with pytest.raises(IsADirectoryError, match="is a folder.*GQA_val_ChooseAttr.csv"):
        load_zhang_csv(tmp_path, tmp_path)


def test_gqa_json_of_nothing_is_an_error(tmp_path):
    path = tmp_path / "val_balanced_questions.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="holds no questions"):
        load_gqa_questions(path, tmp_path)


def test_gqa_json_with_byte_order_mark(tmp_path):
    path = tmp_path / "val_balanced_questions.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_as_gqa_json(("ChooseRel",))).encode())
    assert len(load_gqa_questions(path, tmp_path)) == len(_rows("ChooseRel"))


def test_gqa_path_that_is_a_folder(tmp_path):
    (tmp_path / "val_balanced_questions.json").write_text("{}")
    with pytest.raises(IsADirectoryError, match="is a folder.*val_balanced_questions.json"):
        load_gqa_questions(tmp_path, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IsADirectoryError, match=r"holds no \*\.json file"):
        load_gqa_questions(empty, tmp_path)
