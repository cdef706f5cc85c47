"""Fault injection, processes (issue 18, cases 5 and 6): a build killed with ``kill -9`` leaves
no kernel, worker or resource tracker behind; training resumes only from weights-only
checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from pidlib.core.paths import REPO_ROOT

pytestmark = pytest.mark.faults

# A chapter that starts local workers on jobs that would run for ten minutes, and reports the
# kernel's pid: through the PID stage's backend, or through the local workers of the Methods
# chapter's experiments (coverage, error against n).
_CHAPTER = """# %% tags=["parameters"]
profile = "smoke"
# %%
import os, pathlib, time
import joblib
from pidlib.analysis.parallel import backend
from pidlib.config.profiles import ParallelSpec
from pidlib.core.watchdog import local_workers

out = pathlib.Path(os.environ["FAULTS_DIR"])
(out / "kernel.pid").write_text(str(os.getpid()))
with {workers}:
    joblib.Parallel()(joblib.delayed(time.sleep)(600) for _ in range(2))
"""

_BUILD = """
import sys
from pathlib import Path
from pidlib.book.runner import execute_chapter
execute_chapter(Path(sys.argv[1]), Path(sys.argv[2]) / "out.ipynb", {"profile": "smoke"})
"""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid, ppid = int(stat.parent.name), int(text.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(pid)
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("workers", ['backend(ParallelSpec("loky", 2))', "local_workers(2)"])
def test_a_killed_build_leaves_no_process_behind(tmp_path, workers):
    """``kill -9`` of a build left two loky workers (~450 MB each) and resource trackers alive
    for minutes, still computing and writing cache entries."""
    chapter = tmp_path / "chapter.py"
    chapter.write_text(_CHAPTER.format(workers=workers))
    env = {**os.environ, "FAULTS_DIR": str(tmp_path), "PYTHONPATH": str(REPO_ROOT),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    build = subprocess.Popen([sys.executable, "-c", _BUILD, str(chapter), str(tmp_path)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    orphans: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # kernel + 2 workers + trackers
            kernel = tmp_path / "kernel.pid"
            workers = _children().get(int(kernel.read_text()), []) if kernel.exists() else []
            if len(workers) >= 3:
                break
            assert build.poll() is None, "the build ended before its workers started"
            time.sleep(0.2)
        else:
            pytest.fail("the chapter's workers did not start within 90 s")
        time.sleep(1.0)  # let the workers start their jobs
        orphans = _descendants(build.pid)
        assert int(kernel.read_text()) in orphans and len(orphans) >= 4
        build.send_signal(signal.SIGKILL)
        build.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(map(_running, orphans)):
            time.sleep(0.2)
        alive = sorted(p for p in orphans if _running(p))
        assert not alive, f"still running 15 s after kill -9 of the build: {alive}"
    finally:
        if build.poll() is None:  # the test failed early: end what it started
            orphans |= _descendants(build.pid)
            build.kill()
            build.wait()
        for pid in orphans:  # only this test's own processes
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ training checkpoints (case 6)


def _tiny_recipe():
    from pidlib.training.recipe import RECIPES
    from pidlib.training.stages import StageSpec

    tiny = StageSpec(steps=2, batch=3, turns=2, warmup=1)
    return replace(RECIPES["tiny-llava-1.5"], hidden=32, intermediate=64, heads=2,
                   vision_hidden=16, vision_heads=2, vision_layers=2, lm=tiny, lm_focus=(),
                   align=tiny, qa=tiny)  # fmt: skip


def _checkpoint(workdir: Path, recipe) -> Path:
    return workdir / f"tiny-vicuna-{recipe.lm_key()}.pt"


class _Payload:
    """Unpickling this runs code: what a tampered checkpoint can do under weights_only=False."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_training_resume_refuses_a_checkpoint_that_runs_code(tmp_path):
    """``train_decoder`` resumed with ``torch.load(..., weights_only=False)``."""
    from pidlib.training.run import train_decoder

    recipe, marker = _tiny_recipe(), tmp_path / "code-ran"
    path = _checkpoint(tmp_path, recipe)
    torch.save({"state": {}, "logs": [], "payload": _Payload(marker)}, path)
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        train_decoder(recipe, workdir=tmp_path, progress=False)
    assert not marker.exists()


def test_training_resumes_from_a_weights_only_checkpoint(tmp_path):
    from pidlib.training.run import initial_model, train_decoder
    from pidlib.training.stages import StageLog, decoder_parts

    recipe = _tiny_recipe()
    lm, head = decoder_parts(initial_model(replace(recipe, seed=99))[0])
    logs = [StageLog("lm (symbolic)", 2, 0.5, 3.0, 2.0)]
    state = {"lm": lm.state_dict(), "head": head.state_dict()}
    torch.save({"state": state, "logs": [asdict(g) for g in logs]}, _checkpoint(tmp_path, recipe))
    resumed, resumed_logs = train_decoder(recipe, workdir=tmp_path, progress=False)
    assert resumed_logs == logs
    for k, v in state["lm"].items():
        assert torch.equal(resumed["lm"][k], v)
