"""Benchmark PID Flow: run time at n = 1000, d = 32, and accuracy on latent-Gaussian systems.

Usage: ``python benchmarks/bench_flow.py [--threads 2] [--repeat 1] [--json PATH]``.

Timing: wall-clock and process CPU seconds of ``pid_flow`` (default settings, MMI) on n = 1000
samples of a random 32 / 32 / dy Gaussian channel system (dy = 1, 2) observed through ``sinh``
(heavy tails), flow on and off, and the wall time's ratio to the 10 s target; then one layer-wise
PID job with the cpu profile's settings in one thread, as a worker runs it (after torch's
first-call warm-up), on data where the flows stop early and on data where they train (target
3 s; jobs per second per core); then the knockout chapter's PID jobs of one layer under its
four flows, one job per flow against one for all (the chapter's path; same numbers required,
the speed-up printed). On a shared machine
the CPU time is the fairer number: it sums over threads but leaves out waiting for a core.
Accuracy: MMI and BROJA atoms of two canonical latent-Gaussian systems at n = 5000
(``pca_variance=1``, so that PCA loses nothing and the exact latent PID is the truth), flow on and
off; the error is the largest absolute atom error (bits).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pidlib.pid import canonical
from pidlib.pid.flow import pid_flow
from pidlib.pid.flow_nets import FlowConfig

ATOMS = ("redundancy", "unique_1", "unique_2", "synergy")
ACCURACY_SYSTEMS = tuple(n for n in canonical.names() if n.startswith("nl_"))
TARGET_SECONDS = 10.0  # pid_flow at n = 1000, d = 32, 2 threads
JOB_TARGET = 3.0  # one book PID job at n = 1000, 32 + 32 + 1 dims, one thread (issue 19)


def _timing_data(dy: int, n: int = 1000) -> tuple[np.ndarray, ...]:
    system = canonical.random_system(32, 32, dy, seed=dy)
    x1, x2, y = system.sampler(n, 0)
    return np.sinh(x1), np.sinh(x2), y


def time_runs(repeat: int) -> list[dict]:
    rows = []
    for dy in (1, 2):
        data = _timing_data(dy)
        for flow in (True, False):
            times, cpu, pid = [], [], None
            for _ in range(repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                pid = pid_flow(*data, flow=flow)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            rows.append(
                {
                    "n": 1000,
                    "d1": 32,
                    "d2": 32,
                    "dy": dy,
                    "flow": flow,
                    "seconds": min(times),
                    "cpu_seconds": min(cpu),
                    "dims": list(pid.info["dims"]),
                    "epochs": pid.info.get("epochs"),
                }
            )
    return rows


def book_job_runs(repeat: int, profile: str = "cpu") -> list[dict]:
    """One layer-wise PID job as ``profile`` runs it (its PID settings: measures, PCA, flows,
    cross-fitting, subsamples, seeds), at n = 1000 on 32 + 32 + 1 sinh-distorted dimensions, in
    one thread as a parallel worker runs it; the best of ``repeat``."""
    from dataclasses import asdict

    from pidlib.config.profiles import load_profile
    from pidlib.core.threads import one_thread

    spec = asdict(load_profile(profile).pid)
    spec["measure"] = tuple(spec.pop("measures"))
    # the cost depends on how long the flows train: on the sinh data they stop after the
    # patience (no validation gain), on nl_synergy2 they train for a dozen epochs or more
    cases = {
        "sinh 32+32+1": _timing_data(1),
        "nl_synergy2": canonical.get("nl_synergy2").sampler(1000, 0),
    }
    rows = []
    with one_thread():
        pid_flow(*cases["sinh 32+32+1"], **spec)  # torch's first-call warm-up, paid once a worker
        for case, data in cases.items():
            times, cpu = [], []
            for _ in range(repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                est = pid_flow(*data, **spec)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            info = est[spec["measure"][0]].info
            rows.append({"profile": profile, "case": case, "n": 1000, "dims": list(info["dims"]),
                         "epochs": info.get("epochs"), "settings": spec,
                         "seconds": min(times), "cpu_seconds": min(cpu)})  # fmt: skip
    return rows


class _MemoryFits:
    """A :class:`~pidlib.pid.maps.FitStore` in memory: the clean layer-wise job's fits, as the
    book's knockout jobs find them in the cache."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.blobs.get(key)

    def put(self, key: str, blob: bytes) -> None:
        self.blobs[key] = blob


def knockout_job_runs(profile: str = "cpu") -> list[dict]:
    """The knockout chapter's PID jobs of one (model, task, layer) under its four flows: one
    :func:`~pidlib.pid.paired.pid_flow_difference` per flow against one for all four (the
    chapter's path, the clean run's part made once), same numbers required. n = 1000 on
    32 + 32 + 1 sinh-distorted dimensions with the profile's PID settings (MMI), one thread,
    the clean fits stored by the clean layer-wise job; Image->Question moves V (refit where
    the pair passes the information floor), the three flows into the last position only Y."""
    from dataclasses import asdict

    from pidlib.config.profiles import load_profile
    from pidlib.core.threads import one_thread
    from pidlib.pid.paired import pid_flow_difference

    spec = asdict(load_profile(profile).pid)
    spec.pop("measures")
    spec["measure"] = ("mmi",)
    x1, x2, y = _timing_data(1)
    rng = np.random.default_rng(1)
    runs = {"image->question": (x1 + 0.5 * rng.standard_normal(x1.shape), x2, y),
            **{f: (x1, x2, y + 0.3 * rng.standard_normal(y.shape))
               for f in ("image->last", "question->last", "last->last")}}  # fmt: skip
    store = _MemoryFits()
    rows = []
    with one_thread():
        pid_flow(x1, x2, y, fit_store=store, **spec)  # the clean layer-wise job (and warm-up)
        for case, refit in (("above the floor", True), ("below the floor", False)):
            maps = {f: ("refit", "clean") if refit and f == "image->question" else ("clean",)
                    for f in runs}  # fmt: skip
            t0 = time.process_time()
            alone = {f: pid_flow_difference((x1, x2, y), r, maps=maps[f], fit_store=store, **spec)
                     for f, r in runs.items()}  # fmt: skip
            t1 = time.process_time()
            together = pid_flow_difference((x1, x2, y), runs, maps=maps, fit_store=store, **spec)
            t2 = time.process_time()
            if together != alone:
                raise AssertionError(f"{case}: the four flows in one job differ from one each")
            rows.append(
                {
                    "case": case,
                    "flows": len(runs),
                    "one_per_flow_cpu_s": t1 - t0,
                    "one_for_all_cpu_s": t2 - t1,
                    "speedup": (t1 - t0) / (t2 - t1),
                }
            )
    return rows


def accuracy_runs() -> list[dict]:
    rows = []
    for name in ACCURACY_SYSTEMS:
        system = canonical.get(name)
        data = system.sampler(5000, 0)
        measures = tuple(system.truth)
        for flow in (True, False):
            t0 = time.perf_counter()
            est = pid_flow(*data, measure=measures, flow=flow, pca_variance=1.0)
            seconds = time.perf_counter() - t0
            for m in measures:
                truth = system.truth[m]
                err = {a: getattr(est[m], a) - getattr(truth, a) for a in ATOMS}
                rows.append(
                    {
                        "system": name,
                        "dims": list(system.dims),
                        "measure": m,
                        "flow": flow,
                        "max_abs_error": max(abs(v) for v in err.values()),
                        "error": err,
                        "estimate": {a: getattr(est[m], a) for a in ATOMS},
                        "truth": {a: getattr(truth, a) for a in ATOMS},
                        "seconds": seconds,
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="timing repeats; the best is kept")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    timing = time_runs(args.repeat)
    print(
        f"PID Flow timing (torch threads = {args.threads}, default FlowConfig; "
        f"target <= {TARGET_SECONDS:g} s wall)"
    )
    print(
        f"{'n':>5} {'d1':>3} {'d2':>3} {'dy':>3} {'flow':>5} {'kept dims':>12} {'epochs':>6} "
        f"{'seconds':>8} {'cpu s':>7} {'/target':>7}"
    )
    for r in timing:
        print(
            f"{r['n']:>5} {r['d1']:>3} {r['d2']:>3} {r['dy']:>3} {r['flow']!s:>5} "
            f"{str(tuple(r['dims'])):>12} {r['epochs'] or '-':>6} {r['seconds']:>8.2f} "
            f"{r['cpu_seconds']:>7.2f} {r['seconds'] / TARGET_SECONDS:>7.2f}"
        )

    jobs = book_job_runs(args.repeat)
    print(f"\nOne layer-wise PID job as the book runs it (1 thread; target <= {JOB_TARGET:g} s)")
    print(f"{'profile':>8} {'case':>13} {'kept dims':>12} {'epochs':>6} {'subsamples':>10} "
          f"{'seconds':>8} {'cpu s':>7} {'jobs/s/core':>11} {'/target':>7}")  # fmt: skip
    for r in jobs:
        s = r["settings"]
        print(f"{r['profile']:>8} {r['case']:>13} {str(tuple(r['dims'])):>12} {r['epochs']:>6} "
              f"{s['n_bootstrap']:>10} {r['seconds']:>8.2f} {r['cpu_seconds']:>7.2f} "
              f"{1 / r['seconds']:>11.3f} {r['seconds'] / JOB_TARGET:>7.2f}")  # fmt: skip

    knock = knockout_job_runs()
    print("\nKnockout PID jobs of one layer under four flows (1 thread, CPU s; same numbers)")
    print(f"{'case':>16} {'one per flow':>12} {'one for all':>11} {'speed-up':>8}")
    for r in knock:
        print(f"{r['case']:>16} {r['one_per_flow_cpu_s']:>12.2f} {r['one_for_all_cpu_s']:>11.2f} "
              f"{r['speedup']:>7.2f}x")  # fmt: skip

    accuracy = accuracy_runs()
    print("\nAccuracy at n = 5000 (bits; max |error| over the four atoms)")
    print(
        f"{'system':<12} {'dims':>10} {'measure':>7} {'flow':>5} {'R':>7} {'U1':>7} {'U2':>7} "
        f"{'S':>7} {'max|err|':>9} {'seconds':>8}"
    )
    for r in accuracy:
        e = r["estimate"]
        print(
            f"{r['system']:<12} {str(tuple(r['dims'])):>10} {r['measure']:>7} {r['flow']!s:>5} "
            + " ".join(f"{e[a]:7.3f}" for a in ATOMS)
            + f" {r['max_abs_error']:9.3f} {r['seconds']:8.1f}"
        )
        if r["flow"]:
            t = r["truth"]
            print(
                f"{'  truth':<12} {'':>10} {'':>7} {'':>5} "
                + " ".join(f"{t[a]:7.3f}" for a in ATOMS)
            )

    if args.json:
        meta = {
            "threads": args.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "flow_config": FlowConfig().as_dict(),
        }
        args.json.write_text(
            json.dumps(
                {
                    "meta": meta,
                    "timing": timing,
                    "book_job": jobs,
                    "knockout_jobs": knock,
                    "accuracy": accuracy,
                },
                indent=2,
            )
        )
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
