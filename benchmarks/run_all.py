"""Run every benchmark (``benchmarks/bench_*.py``) and print their tables (``--gpu``: CUDA).

Each benchmark prints its own table with measured times and the ratio to its target, and writes
the same numbers as JSON; this runner collects them into ``build/bench/<name>.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "build" / "bench"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true", help="run only the CUDA benchmark (bench_gpu.py)")
    ap.add_argument("names", nargs="*", help="benchmark names, e.g. gaussian flow (default: all)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.gpu:
        scripts = [HERE / "bench_gpu.py"]
    else:
        scripts = sorted(p for p in HERE.glob("bench_*.py") if p.stem != "bench_gpu")
        if args.names:
            scripts = [p for p in scripts if p.stem.removeprefix("bench_") in args.names]
    failed = []
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        print(f"\n=== {name} ({script.name}) ===", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script), "--json", str(OUT / f"{name}.json")])
        print(f"--- {name}: {time.perf_counter() - t0:.0f} s, exit {rc}", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
