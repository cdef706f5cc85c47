"""Training minutes against the targets: one model's own stages <= 10, a decoder <= 60.

Run ``python benchmarks/bench_training.py [--models tiny-llava-1.5-b1 tiny-llava-1.6-b1]
[--fraction 0.1] [--decoder-fraction 0.05] [--threads 2] [--json out.json]``. Each model's
recipe (``pidlib.training``) runs its two per-model stages (vision alignment, QA) with
``fraction`` of their steps (the same batches, shapes and pool refills per step), starting from
the committed model's decoder weights (the decoder checkpoint the stages start from is not
kept; the cost of a step does not depend on the values); the first model's recipe also runs its
four decoder stages with ``decoder-fraction`` of their steps (0 skips them). Each row prints the
measured seconds, the minutes extrapolated to the recipe's full step counts (fraction 1
measures them outright) and the ratio to its target. No weights are saved. Time it on an idle
machine: both threads are the training's.

``--record`` (with ``--fraction 1`` and a ``--decoder-fraction`` of 0 or 1) writes each full
re-timing into the model cards (``idle_timing``: a model's own stages into its card, a
decoder's into the card of every committed model on that decoder) and rewrites their READMEs;
``--record-from out.json`` records an earlier run's ``--json`` output the same way.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace

import torch

from pidlib.core.provenance import provenance
from pidlib.models.families import models_dir
from pidlib.models.load import load_model
from pidlib.training.recipe import RECIPES, decoder_of
from pidlib.training.report import record_timing
from pidlib.training.run import train_decoder, train_model
from pidlib.training.stages import decoder_parts

#: The targets on 2 idle cores (minutes): one model's own stages, and one decoder.
TARGET_MIN = 10.0
DECODER_TARGET_MIN = 60.0
#: How a decoder row's ``what`` starts (the rest is the model whose recipe was run).
DECODER_OF = "decoder of "


def _shorter(spec, fraction: float):
    return replace(spec, steps=max(1, round(spec.steps * fraction)))


def _row(what: str, logs, full_steps: list[int], wall: float, target: float) -> dict:
    minutes = sum(g.seconds / g.steps * n for g, n in zip(logs, full_steps, strict=True)) / 60
    return {"what": what, "steps": [g.steps for g in logs], "full_steps": full_steps,
            "seconds": round(wall, 1), "minutes": round(minutes, 2), "target": target,
            "ratio": round(minutes / target, 3),
            "stages": [{"name": g.name, "steps": g.steps, "seconds": round(g.seconds, 2)}
                       for g in logs]}  # fmt: skip


def run_decoder(name: str, fraction: float) -> dict:
    """The decoder stages of ``name``'s recipe (no checkpoint kept), ``fraction`` of the steps."""
    full = RECIPES[name]
    recipe = replace(full, lm=_shorter(full.lm, fraction),
                     lm_focus=tuple(_shorter(s, fraction) for s in full.lm_focus))  # fmt: skip
    t0 = time.perf_counter()
    _, logs = train_decoder(recipe, workdir=None, progress=False)
    full_steps = [full.lm.steps, *(s.steps for s in full.lm_focus)]
    return _row(f"{DECODER_OF}{name}", logs, full_steps, time.perf_counter() - t0,
                DECODER_TARGET_MIN)  # fmt: skip


def run(name: str, fraction: float) -> dict:
    """``name``'s own stages (align, QA), ``fraction`` of the steps."""
    full = RECIPES[name]
    recipe = replace(full, align=_shorter(full.align, fraction), qa=_shorter(full.qa, fraction))
    lm, head = decoder_parts(load_model(models_dir() / name).model)
    t0 = time.perf_counter()
    _, _, logs = train_model(recipe, {"lm": lm.state_dict(), "head": head.state_dict()},
                             progress=False)  # fmt: skip
    return _row(name, logs, [full.align.steps, full.qa.steps], time.perf_counter() - t0,
                TARGET_MIN)  # fmt: skip


def record(rows: list[dict], env: dict) -> list[str]:
    """Write the rows' full re-timings into the committed cards (see the module docstring);
    returns the lines it printed."""
    lines = []
    for r in rows:
        kind = "decoder" if r["what"].startswith(DECODER_OF) else "per_model"
        name = r["what"].removeprefix(DECODER_OF)
        if name not in RECIPES:
            raise ValueError(f"record: row {r['what']!r} names no recipe in {list(RECIPES)}")
        targets = [name]
        if kind == "decoder":
            label = decoder_of(RECIPES[name])
            targets = [m for m, rec in RECIPES.items()
                       if decoder_of(rec) == label and (models_dir() / m).is_dir()]  # fmt: skip
        for m in targets:
            record_timing(models_dir() / m, kind, r, env)
            lines.append(f"recorded {kind} {r['minutes']} min in {m}'s card")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny-llava-1.5-b1", "tiny-llava-1.6-b1"])
    ap.add_argument("--fraction", type=float, default=0.1, help="of each stage's steps (0, 1]")
    ap.add_argument(
        "--decoder-fraction",
        type=float,
        default=0.05,
        help="of the decoder stages' steps, for the first model's recipe (0: skip)",
    )
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--json", help="write the results to this JSON file")
    ap.add_argument(
        "--record",
        action="store_true",
        help="write the full re-timings into the model cards (needs --fraction 1)",
    )
    ap.add_argument(
        "--record-from",
        metavar="JSON",
        help="record an earlier run's --json output in the cards, and stop",
    )
    args = ap.parse_args()
    if args.record_from:
        with open(args.record_from) as f:
            saved = json.load(f)
        print("\n".join(record(saved["rows"], saved["env"])))
        return 0
    if args.record and (args.fraction != 1 or args.decoder_fraction not in (0, 1)):
        ap.error("--record needs --fraction 1 and --decoder-fraction 0 or 1 (a full re-timing)")
    if not 0 < args.fraction <= 1 or not 0 <= args.decoder_fraction <= 1:
        ap.error(f"--fraction must be in (0, 1] and --decoder-fraction in [0, 1], got "
                 f"{args.fraction}, {args.decoder_fraction}")  # fmt: skip
    unknown = [m for m in args.models if m not in RECIPES]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {list(RECIPES)}")
    torch.set_num_threads(args.threads)
    rows = [run(m, args.fraction) for m in args.models]
    if args.decoder_fraction:
        rows.append(run_decoder(args.models[0], args.decoder_fraction))
    print(f"{'stages':<32} {'steps':>22} {'measured s':>10} {'minutes':>8} {'target':>6} "
          f"{'ratio':>6}")  # fmt: skip
    for r in rows:
        steps = ", ".join(map(str, r["steps"]))
        print(f"{r['what']:<32} {steps:>22} {r['seconds']:>10.1f} {r['minutes']:>8.2f} "
              f"{r['target']:>6.0f} {r['ratio']:>6.2f}")  # fmt: skip
    print("minutes: seconds per step of the steps run, times the recipe's step counts")
    ok = all(r["minutes"] <= r["target"] for r in rows)
    print("PASS" if ok else "ABOVE TARGET")
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "threads": args.threads, "fraction": args.fraction,
           "decoder_fraction": args.decoder_fraction,
           "commit": provenance()["git_commit"], "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "env": env}, f, indent=1)
    if args.record:
        print("\n".join(record(rows, env)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
