"""The book's build times: the newest cold and warm build of each profile, side by side.

Usage: ``python benchmarks/bench_book.py [--json PATH]``.

A build is far too long to repeat inside a benchmark, so this reads what ``make book`` recorded
(``build/<profile>/builds.jsonl``, one line per build, :func:`pidlib.book.runner.record_build`):
"cold" means the result cache was empty when the build started (every feature, PID job and
table computed), "warm" that it was filled. Only builds of every chapter count. Targets (issue
19, 2 idle cores): the cpu book <= 600 s cold and <= 60 s warm, chapter 04 <= 120 s cold, the
smoke book <= 180 s cold. To measure: ``make clean-cache && make book`` (cold), then ``make
book`` again (warm); say what else ran on the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pidlib.book.runner import build_history  # noqa: E402
from pidlib.core.paths import REPO_ROOT  # noqa: E402

#: Target seconds per (profile, cache state) for a whole build, and per chapter.
TARGETS = {("cpu", "cold"): 600.0, ("cpu", "warm"): 60.0, ("smoke", "cold"): 180.0}
CHAPTER_TARGETS = {("cpu", "cold", "04_knockouts"): 120.0}


def newest(builds: list[dict], state: str) -> dict | None:
    """The newest whole-book build (every chapter, HTML done) with cache ``state``."""
    whole = [b for b in builds if b.get("all_chapters") and b.get("cache") == state
             and b.get("html") is not None]  # fmt: skip
    return whole[-1] if whole else None


def total(build: dict) -> float:
    return float(sum(build["chapters"].values())) + float(build.get("html") or 0.0)


def rows(root: Path) -> list[dict]:
    """One row per (profile, cache state) with a recorded whole build."""
    out = []
    for folder in sorted(p for p in (root / "build").glob("*") if p.is_dir()):
        history = build_history(folder)
        for state in ("cold", "warm"):
            b = newest(history, state)
            if b is not None:
                target = TARGETS.get((folder.name, state))
                out.append({"profile": folder.name, "cache": state, "build": b,
                            "seconds": total(b), "target": target})  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    found = rows(args.root)
    if not found:
        print("no whole-book build recorded yet (build/<profile>/builds.jsonl): run "
              "`make clean-cache && make book`, then `make book` again")  # fmt: skip
    by_profile: dict[str, dict[str, dict]] = {}
    for r in found:
        by_profile.setdefault(r["profile"], {})[r["cache"]] = r
    for profile, states in by_profile.items():
        print(f"\nBook build times, profile {profile} (seconds; cold: empty cache; warm: filled)")
        names = list(dict.fromkeys(ch for r in states.values() for ch in r["build"]["chapters"]))
        cols = [s for s in ("cold", "warm") if s in states]
        print(f"{'chapter':<24}" + "".join(f"{c:>10}" for c in cols))
        for ch in [*names, "HTML"]:
            vals = [(states[c]["build"]["chapters"].get(ch) if ch != "HTML"
                     else states[c]["build"].get("html")) for c in cols]  # fmt: skip
            cells = "".join(f"{v:>10.1f}" if v is not None else f"{'-':>10}" for v in vals)
            print(f"{ch:<24}{cells}")
        print(f"{'total':<24}" + "".join(f"{states[c]['seconds']:>10.1f}" for c in cols))
        for c in cols:
            r, b = states[c], states[c]["build"]
            ratio = ""
            if r["target"]:
                ratio = f", {r['seconds'] / r['target']:.2f} x the {r['target']:g} s target"
            print(f"  {c}: commit {str(b.get('commit', '?'))[:12]}, started {b.get('started')}, "
                  f"{b.get('entries', 0)} cache entries at the start{ratio}")  # fmt: skip
            for (p, s, ch), t in CHAPTER_TARGETS.items():
                if p == profile and s == c and ch in b["chapters"]:
                    print(f"  {c} {ch}: {b['chapters'][ch]:.1f} s, "
                          f"{b['chapters'][ch] / t:.2f} x the {t:g} s target")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(found, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
