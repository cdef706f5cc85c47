"""Stage timing: what the reproducibility page's "where the time goes" table is made of."""

from __future__ import annotations

import json

import numpy as np

from pidlib.book.runner import stage_table
from pidlib.core.cache import ArrayCache
from pidlib.core.stages import ENV, read_stages, stage


def test_a_stage_is_logged_only_where_a_log_is_named(tmp_path, monkeypatch):
    log = tmp_path / "stages.jsonl"
    monkeypatch.delenv(ENV, raising=False)
    with stage("quiet"):
        pass
    assert not log.exists()
    monkeypatch.setenv(ENV, str(log))
    with stage("outer"), stage("inner"):
        sum(range(10_000))
    records = read_stages(log)
    assert [r["stage"] for r in records] == ["inner", "outer"]
    assert records[1]["seconds"] >= records[0]["seconds"] >= 0


def test_a_cache_miss_is_a_stage_and_a_hit_is_not(tmp_path, monkeypatch):
    log = tmp_path / "stages.jsonl"
    monkeypatch.setenv(ENV, str(log))
    cache = ArrayCache(tmp_path / "cache")
    for _ in range(2):
        cache.get_or_compute("demo-table", {"a": 1}, lambda: {"x": np.arange(3)})
    assert [r["stage"] for r in read_stages(log)] == ["demo-table"]


def test_the_stage_table_splits_each_chapter_and_keeps_the_rest_as_other(tmp_path):
    (tmp_path / "stages").mkdir()
    timings = {"01_a": {"seconds": 10.0, "finished": "x"}, "02_b": {"seconds": 4.0}}
    (tmp_path / "timings.json").write_text(json.dumps(timings))
    lines = [{"stage": "layer-wise PID jobs", "seconds": 6.0, "cpu_seconds": 1.0},
             {"stage": "feature extraction", "seconds": 1.5, "cpu_seconds": 1.0},
             {"stage": "feature extraction", "seconds": 0.5, "cpu_seconds": 0.5}]  # fmt: skip
    (tmp_path / "stages" / "01_a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    table = stage_table(tmp_path)
    assert table.loc["01_a", "feature extraction"] == 2.0
    assert table.loc["01_a", "layer-wise PID jobs"] == 6.0
    assert table.loc["01_a", "other"] == 2.0
    assert table.loc["02_b", "other"] == table.loc["02_b", "chapter"] == 4.0
    assert list(table.columns[-2:]) == ["other", "chapter"]
