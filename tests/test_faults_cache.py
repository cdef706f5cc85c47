"""Fault injection, the cache (issue 18, case 2): concurrent readers and writers of one key,
repeated corruption, manifests of every wrong shape, interrupted writes; plus a stress test of
8 processes (readers, writers, corrupters) on one key."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import pidlib.core.cache as cache_mod
from pidlib.core.cache import ArrayCache, cache_key
from pidlib.core.paths import REPO_ROOT

pytestmark = pytest.mark.faults

PARAMS = {"n": 7}


def _arrays():
    return {"v": np.arange(21.0).reshape(7, 3).astype(np.float16), "y": np.arange(7)}


def _entry(store):
    return store.path("feat", cache_key("feat", PARAMS))


def _fill(store):
    store.get_or_compute("feat", PARAMS, _arrays)
    return _entry(store)


def _asides(store):
    return sorted(p.name for p in _entry(store).parent.iterdir() if ".corrupt-" in p.name)


def _temporaries(store):
    return sorted(p.name for p in _entry(store).parent.iterdir() if ".tmp-" in p.name)


@pytest.fixture
def store(tmp_path):
    return ArrayCache(tmp_path / "cache")


def _corrupt(entry):
    npz = entry / "arrays.npz"
    raw = bytearray(npz.read_bytes())
    raw[-30] ^= 0xFF
    npz.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "manifest",
    ["null", "[]", "42", '"text"', "", "{", '{"kind": "feat"}', "ARRAYS_NULL", "ARRAYS_LIST",
     "NO_SHA", "BAD_SHAPE"],
)  # fmt: skip
def test_every_wrong_manifest_shape_is_corrupt(store, manifest):
    """null and a list gave AttributeError, ``arrays: null`` a TypeError."""
    entry = _fill(store)
    good = json.loads((entry / "manifest.json").read_text())
    edits = {
        "ARRAYS_NULL": {**good, "arrays": None},
        "ARRAYS_LIST": {**good, "arrays": ["v", "y"]},
        "NO_SHA": {k: v for k, v in good.items() if k != "sha256"},
        "BAD_SHAPE": {**good, "arrays": {**good["arrays"], "v": [[3, 7], "float16"]}},
    }
    text = json.dumps(edits[manifest]) if manifest in edits else manifest
    (entry / "manifest.json").write_text(text)
    with pytest.warns(UserWarning, match="unusable"):
        assert store.load("feat", entry.name) is None
    arrays, _ = store.get_or_compute("feat", PARAMS, _arrays)
    assert np.array_equal(arrays["v"], _arrays()["v"]) and len(_asides(store)) == 1


def test_a_file_in_place_of_the_entry_is_corrupt(store):
    entry = _entry(store)
    entry.parent.mkdir(parents=True)
    entry.write_text("not a folder")
    with pytest.warns(UserWarning, match="unusable"):
        arrays, _ = store.get_or_compute("feat", PARAMS, _arrays)
    assert np.array_equal(arrays["y"], np.arange(7)) and len(_asides(store)) == 1


def test_corrupting_one_entry_twice_in_one_second(store, monkeypatch):
    """Aside names were ``.corrupt-<int(time.time())>``: the second gave 'Directory not empty'."""
    monkeypatch.setattr(cache_mod.time, "time", lambda: 1_700_000_000.0)  # one frozen second
    for _ in range(3):
        _corrupt(_fill(store))
        with pytest.warns(UserWarning, match="unusable"):
            assert store.load("feat", _entry(store).name) is None
    assert len(_asides(store)) == 3


@pytest.mark.parametrize("writer", [False, True])
def test_a_concurrent_reader_moves_the_entry_mid_read(store, monkeypatch, writer):
    """Another reader moves the corrupt entry aside while this one reads it (3 of 18 readers
    crashed with FileNotFoundError); with ``writer``, a fresh entry then takes its place and must
    be left alone. This reader moves nothing and warns about nothing."""
    entry = _fill(store)
    _corrupt(entry)
    real_loads = json.loads
    done = []

    def loads_then_race(*args, **kwargs):
        out = real_loads(*args, **kwargs)
        if not done:
            done.append(entry.rename(entry.with_name(entry.name + ".corrupt-by-another-reader")))
            if writer:
                ArrayCache(store.root).save("feat", entry.name, _arrays(), PARAMS)
        return out

    monkeypatch.setattr(cache_mod.json, "loads", loads_then_race)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.load("feat", entry.name) is None
    monkeypatch.undo()
    assert not [w for w in caught if "unusable" in str(w.message)]
    if writer:  # the fresh entry survived
        arrays, _ = store.load("feat", entry.name)
        assert np.array_equal(arrays["v"], _arrays()["v"])
    else:
        assert not entry.exists()


def test_concurrent_writers_keep_one_entry(store):
    entry = _fill(store)
    before = (entry / "manifest.json").read_text()
    store.save("feat", entry.name, _arrays(), PARAMS)  # loses the race: keeps the first
    assert (entry / "manifest.json").read_text() == before
    assert _temporaries(store) == []


_INTERRUPTED = """
import os, signal, sys
import numpy as np
import pidlib.core.cache as c
def savez(path, **arrays):  # half a file, then the process is killed (kill -9)
    with open(path, "wb") as f:
        f.write(b"PK" + b"\\0" * 100)
        f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
c.np.savez = savez
c.ArrayCache(sys.argv[1]).save("feat", sys.argv[2], {"y": np.arange(7)}, {"n": 7})
"""


def test_an_interrupted_write_leaves_no_temporary(store):
    """A write killed with SIGKILL left its ``.tmp-*`` folder forever; the next write sweeps it."""
    key = _entry(store).name
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    r = subprocess.run([sys.executable, "-c", _INTERRUPTED, str(store.root), key], env=env)
    assert r.returncode == -signal.SIGKILL
    assert len(_temporaries(store)) == 1 and not _entry(store).exists()
    arrays, _ = store.get_or_compute("feat", PARAMS, _arrays)
    assert _temporaries(store) == [] and np.array_equal(arrays["y"], np.arange(7))


def test_live_and_recent_temporaries_are_kept_old_ones_swept(store):
    folder = _entry(store).parent
    folder.mkdir(parents=True)
    live = folder / f".k1.tmp-{os.getpid()}@{cache_mod._HOST}-0123abcd"
    foreign = folder / ".k2.tmp-1@some-other-host-89abcdef"
    old = folder / ".k3.tmp-1@some-other-host-deadbeef"
    for p in (live, foreign, old):
        p.mkdir()
    hours = time.time() - cache_mod.STALE_TMP_SECONDS - 60
    os.utime(old, (hours, hours))
    store.save("feat", "k0", _arrays(), PARAMS)
    assert live.exists() and foreign.exists() and not old.exists()


# ------------------------------------------------------------------------------- the stress test

_WORKER = r"""
import json, os, random, sys, time, warnings
import numpy as np
import pidlib.core.cache as c
c.provenance = lambda: {}  # git calls would dominate the loop
warnings.simplefilter("ignore")  # "moved aside" warnings are expected here
role, root, seconds, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
params = {"n": 7}
want = {"v": np.arange(21.0).reshape(7, 3).astype(np.float16), "y": np.arange(7)}
store = c.ArrayCache(root)
key = c.cache_key("feat", params)
entry = store.path("feat", key)
stats = {"role": role, "ops": 0, "hits": 0, "torn": 0, "corruptions": 0}

def check(hit):
    arrays, manifest = hit
    ok = (sorted(arrays) == ["v", "y"] and all(
        arrays[k].dtype == want[k].dtype and np.array_equal(arrays[k], want[k]) for k in want)
        and manifest["key"] == key and manifest["params"] == params)
    stats["hits"] += 1
    stats["torn"] += not ok

def corrupt():
    what = rng.randrange(7)
    npz, mf = entry / "arrays.npz", entry / "manifest.json"
    try:
        if what == 0:
            with open(npz, "r+b") as f:
                size = f.seek(0, 2)
                f.seek(rng.randrange(max(size, 1)))
                f.write(bytes([rng.randrange(256)]) * 8)
        elif what == 1:
            os.truncate(npz, rng.randrange(200))
        elif what == 2:
            mf.write_text(rng.choice(["null", "[]", "{", '{"arrays": null}', "42"]))
        elif what == 3:
            m = json.loads(mf.read_text())
            m["arrays"] = None
            mf.write_text(json.dumps(m))
        elif what == 4:
            rng.choice([npz, mf]).unlink()
        elif what == 5:
            m = json.loads(mf.read_text())
            m["sha256"] = "0" * 64
            mf.write_text(json.dumps(m))
        else:
            time.sleep(0.002)
        stats["corruptions"] += 1
    except (OSError, ValueError, TypeError):
        pass  # the entry moved or was half-written meanwhile: try again

end = time.monotonic() + seconds
while time.monotonic() < end:
    stats["ops"] += 1
    if role == "writer":
        check(store.get_or_compute("feat", params, lambda: want))
    elif role == "reader":
        hit = store.load("feat", key)
        if hit is not None:
            check(hit)
    else:
        corrupt()
print(json.dumps(stats))
"""


def test_stress_8_processes_on_one_key(tmp_path):
    """3 writers (get_or_compute), 3 readers (load) and 2 corrupters (flipped bytes, truncation,
    null / list / ``arrays: null`` manifests, deleted files) hammer one key for 3 s: no process
    may crash, and no read may return arrays or a manifest other than the written ones."""
    root, seconds = tmp_path / "cache", 3.0
    roles = ["writer"] * 3 + ["reader"] * 3 + ["corrupter"] * 2
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, role, str(root), str(seconds), str(i)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i, role in enumerate(roles)
    ]  # fmt: skip
    results = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-3000:]
    stats = [json.loads(out) for out, _ in results]
    assert sum(s["torn"] for s in stats) == 0
    hits = sum(s["hits"] for s in stats)
    corruptions = sum(s["corruptions"] for s in stats if s["role"] == "corrupter")
    assert hits > 0 and corruptions > 0, stats
    # afterwards the key still works, and nothing is left half-written
    store = ArrayCache(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arrays, _ = store.get_or_compute("feat", PARAMS, _arrays)
    assert np.array_equal(arrays["v"], _arrays()["v"])
    assert _temporaries(store) == []
    print(f"stress: {len(procs)} processes, {sum(s['ops'] for s in stats)} operations, "
          f"{hits} verified results, {corruptions} corruptions in {seconds} s")  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)
