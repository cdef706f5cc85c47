"""The array cache: hits are identical, corrupt or stale entries are detected and recomputed."""

import json

import numpy as np
import pytest

from pidlib.core.cache import ArrayCache, cache_key
from pidlib.core.provenance import provenance


@pytest.fixture
def cache(tmp_path):
    return ArrayCache(tmp_path)


def _compute(calls):
    def f():
        calls.append(1)
        rng = np.random.default_rng(0)
        return {"v": rng.normal(size=(5, 3)).astype(np.float16), "y": np.arange(5.0)}

    return f


def test_hit_returns_identical_arrays(cache):
    calls = []
    a, m = cache.get_or_compute("feat", {"n": 5}, _compute(calls))
    b, m2 = cache.get_or_compute("feat", {"n": 5}, _compute(calls))
    assert len(calls) == 1
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k])
    assert m["params"] == {"n": 5} and m2["sha256"] == m["sha256"]
    assert "git_commit" in m["provenance"] and "numpy" in m["provenance"]["packages"]


def test_key_depends_on_params_and_code():
    assert cache_key("k", {"a": 1}) != cache_key("k", {"a": 2})
    assert cache_key("k", {"a": 1}) == cache_key("k", {"a": 1})
    assert cache_key("k", {"a": 1}) != cache_key("k", {"a": 1}, code=("pidlib.core.cache",))


def test_corrupt_entry_is_moved_aside_and_recomputed(cache):
    calls = []
    cache.get_or_compute("feat", {"n": 5}, _compute(calls))
    key = cache_key("feat", {"n": 5})
    npz = cache.path("feat", key) / "arrays.npz"
    data = bytearray(npz.read_bytes())
    data[-20] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="unusable"):
        a, _ = cache.get_or_compute("feat", {"n": 5}, _compute(calls))
    assert len(calls) == 2
    assert np.array_equal(a["y"], np.arange(5.0))
    aside = [p for p in cache.path("feat", key).parent.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1  # nothing is deleted


def test_stale_manifest_is_detected(cache):
    calls = []
    cache.get_or_compute("feat", {"n": 5}, _compute(calls))
    key = cache_key("feat", {"n": 5})
    mf = cache.path("feat", key) / "manifest.json"
    m = json.loads(mf.read_text())
    m["key"] = "something-else"
    mf.write_text(json.dumps(m))
    with pytest.warns(UserWarning, match="stale"):
        cache.get_or_compute("feat", {"n": 5}, _compute(calls))
    assert len(calls) == 2


def test_failed_compute_leaves_no_entry(cache):
    def boom():
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("feat", {"n": 1}, boom)
    assert not cache.path("feat", cache_key("feat", {"n": 1})).exists()


def test_provenance_fields():
    p = provenance()
    assert {"git_commit", "packages", "python", "platform", "hardware", "created"} <= set(p)


def test_cached_table_roundtrip(tmp_path):
    import pandas as pd

    from pidlib.core.cache import cached_table

    calls = []

    def make():
        calls.append(1)
        return pd.DataFrame(
            {"task": ["A", "B"], "layer": [0, 1], "bits": [0.5, 1.25], "ok": [True, False]}
        )

    c = ArrayCache(tmp_path)
    a = cached_table("tbl", {"x": 1}, make, cache=c)
    b = cached_table("tbl", {"x": 1}, make, cache=c)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["task", "layer", "bits", "ok"] and a["bits"].tolist() == [0.5, 1.25]
