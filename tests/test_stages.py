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
    assert records[0]["within"] == "outer" and "within" not in records[1]


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
             {"stage": "model loading", "seconds": 0.4, "cpu_seconds": 0.4,
              "within": "feature extraction"},
             {"stage": "feature extraction", "seconds": 0.5, "cpu_seconds": 0.5}]  # fmt: skip
    (tmp_path / "stages" / "01_a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    table = stage_table(tmp_path)
    assert table.loc["01_a", "feature extraction"] == 2.0
    assert table.loc["01_a", "layer-wise PID jobs"] == 6.0
    assert table.loc["01_a", "model loading"] == 0.4  # its own column, counted once
    assert table.loc["01_a", "other"] == 2.0
    assert table.loc["02_b", "other"] == table.loc["02_b", "chapter"] == 4.0
    assert list(table.columns[-2:]) == ["other", "chapter"]


def test_builds_are_recorded_cold_or_warm_and_bench_shows_the_newest_of_each(
    tmp_path, capsys, monkeypatch
):
    """``make book`` appends each build to ``build/<profile>/builds.jsonl`` with the cache's
    state at its start; ``bench_book.py`` prints the newest whole cold and warm build."""
    from conftest import load_script

    from pidlib.book.runner import build_history, cache_state, record_build

    cache = tmp_path / "_cache"
    assert cache_state(cache) == {"cache": "cold", "entries": 0}
    ArrayCache(cache).save("kind", "key", {"a": np.zeros(1)}, {})
    assert cache_state(cache) == {"cache": "warm", "entries": 1}
    build = tmp_path / "build" / "cpu"
    base = {"all_chapters": True, "html": 4.0, "commit": "abc"}
    record_build(build, {**base, "cache": "cold", "chapters": {"01": 300.0, "04": 500.0}})
    with (build / "builds.jsonl").open("a") as f:
        f.write('{"truncated\n')
    record_build(build, {**base, "cache": "warm", "chapters": {"01": 8.0, "04": 30.0}})
    record_build(build, {**base, "cache": "warm", "chapters": {"04": 1.0}, "all_chapters": False})
    assert [b["cache"] for b in build_history(build)] == ["cold", "warm", "warm"]

    bench = load_script("benchmarks/bench_book.py")
    found = {r["cache"]: r for r in bench.rows(tmp_path)}
    assert found["cold"]["seconds"] == 804.0 and found["warm"]["seconds"] == 42.0
    assert found["cold"]["target"] == 600.0  # a --only build never counts as the warm build
    monkeypatch.setattr("sys.argv", ["bench_book.py", "--root", str(tmp_path)])
    assert bench.main() == 0
    out = capsys.readouterr().out
    assert "1.34 x the 600 s target" in out and "0.70 x the 60 s target" in out
