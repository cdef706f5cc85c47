"""``make book`` runs the chapters that need no model beside the model chapters, and the pages
that read every chapter's output after both."""

from __future__ import annotations

import ast
import calendar
import json
import os
import time
from pathlib import Path

import pytest
from conftest import load_script

from pidlib.book.runner import CHAPTER_DIR, LAST, SIDE_LANE, chapters, lanes

#: What a side-lane chapter must not import: the model chapters' inputs, features, PID jobs and
#: knockouts, whose cache entries a chapter running beside them would compute a second time.
MODEL_PATH = ("pidlib.book.inputs", "pidlib.book.knockouts", "pidlib.book.priors",
              "pidlib.analysis", "pidlib.extract", "pidlib.interventions")  # fmt: skip
#: What only a LAST chapter may call: readers of every chapter's claims, stage logs or timings.
READS_ALL = ("load_claims", "stage_table", "timings.json", "build_history")


def _pidlib_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = (n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module)
    return {m for m in found if m.startswith("pidlib")}


def test_the_side_lane_shares_nothing_with_the_model_chapters():
    names = {s.stem for s in chapters()}
    assert set(SIDE_LANE) <= names and set(LAST) <= names
    for stem in SIDE_LANE:
        bad = sorted(m for m in _pidlib_imports(CHAPTER_DIR / f"{stem}.py")
                     if m.startswith(MODEL_PATH))  # fmt: skip
        assert not bad, f"{stem} runs beside the model chapters but imports {bad}"
    for src in chapters():
        text = src.read_text()
        if src.stem not in LAST:
            assert not [w for w in READS_ALL if w in text], f"{src.stem} reads all chapters"
    main, side, last = lanes(chapters())
    assert [s.stem for s in side] == list(SIDE_LANE) and [s.stem for s in last] == list(LAST)
    assert main and not {s.stem for s in main} & {*SIDE_LANE, *LAST}


LOG = "PIDBOOK_TEST_LANES_LOG"


def fake_execute(src, out, parameters, figures=None):
    """Stands in for papermill (module level: the side lane's process unpickles it): writes an
    empty executed notebook and the chapter's start and end times; fails on ``FAIL``."""
    import nbformat

    t0 = time.time()
    if Path(src).stem == os.environ.get("PIDBOOK_TEST_LANES_FAIL"):
        raise RuntimeError(f"{Path(src).stem} failed")
    # the first model chapter outlasts the side lane's start-up and all of its chapters
    time.sleep({"02_modal_transduction": 4.0}.get(Path(src).stem, 0.2))
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(), out)
    with open(os.environ[LOG], "a") as f:
        f.write(json.dumps([Path(src).stem, t0, time.time(), os.getpid()]) + "\n")
    return time.time() - t0


def _build_book(monkeypatch, tmp_path):
    mod = load_script("scripts/build_book.py")
    monkeypatch.setattr(mod, "execute_chapter", fake_execute)
    monkeypatch.setattr(mod, "build_dir", lambda name: tmp_path / "build" / name)
    monkeypatch.setenv(LOG, str(tmp_path / "log.jsonl"))
    return mod


def test_the_side_lane_runs_beside_the_model_chapters_and_the_last_pages_after(
    monkeypatch, tmp_path
):
    mod = _build_book(monkeypatch, tmp_path)
    assert mod.main(["--profile", "smoke", "--no-html"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    runs = {stem: (t0, t1, pid) for stem, t0, t1, pid in rows}
    assert set(runs) == {s.stem for s in chapters()}
    main, side, last = ([runs[s.stem] for s in lane] for lane in lanes(chapters()))
    assert {pid for *_, pid in side} != {os.getpid()}  # a second process
    assert min(t0 for t0, *_ in side) < max(t1 for _, t1, _ in main)  # beside the main lane
    assert min(t0 for t0, *_ in last) >= max(t1 for _, t1, _ in main + side)
    timings = json.loads((tmp_path / "build" / "smoke" / "timings.json").read_text())
    assert {k for k, v in timings.items() if v["lane"] == "side"} == set(SIDE_LANE)
    for stem, (_, t1, _) in runs.items():  # when the chapter ended, not when it was collected
        at = calendar.timegm(time.strptime(timings[stem]["finished"], "%Y-%m-%dT%H:%M:%SZ"))
        assert t1 - 1 <= at <= t1 + 1, stem


@pytest.mark.parametrize("failing", ["01_methods", "03_task_fingerprints"])
def test_a_failing_chapter_in_either_lane_fails_the_build(monkeypatch, tmp_path, failing):
    mod = _build_book(monkeypatch, tmp_path)
    monkeypatch.setenv("PIDBOOK_TEST_LANES_FAIL", failing)
    with pytest.raises(RuntimeError, match=f"{failing} failed"):
        mod.main(["--profile", "smoke", "--no-html"])
    log = tmp_path / "log.jsonl"
    done = {json.loads(line)[0] for line in log.read_text().splitlines()} if log.exists() else set()
    assert not done & set(LAST)  # nothing reads the chapters' output after a failure
