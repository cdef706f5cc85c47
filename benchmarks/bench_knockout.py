"""Knockout sweep: naive (a full forward per window) vs prefix reuse (restart from the clean pass).

Both sweeps block all four of Zhang et al.'s flows in a 9-layer window around every layer of
a random tiny LLaVA on Mini-GQA questions, and must give the same numbers; the ratio of their
times is the speed-up (target >= 1.5x). A second table times the knockout chapter's PID
features under the three all-layer flows into the last position: one full forward each
against one shared forward of the rest of each prompt (the chapter's path). ``--json PATH``
writes the tables as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch

from pidlib.data.minigqa.program import vocabulary
from pidlib.data.minigqa.questions import generate
from pidlib.interventions.spec import FLOWS
from pidlib.interventions.sweep import sweep
from pidlib.models.loaded import LoadedModel
from pidlib.models.tiny import build_model, build_processor, build_tokenizer, tiny_config

TARGET = 1.5
TASKS = ("ChooseAttr", "ChooseRel", "LogicalObj", "QueryAttr")

#: name -> (decoder layers, hidden, heads, image pixels, samples); patches are 8 px.
CONFIGS: dict[str, tuple[int, int, int, int, int]] = {
    "tiny-8": (8, 64, 4, 32, 16),  # 16 image tokens, ~45-token prompts
    "medium-16": (16, 128, 4, 64, 8),  # 64 image tokens: image block dominates, as in LLaVA
    "deep-32": (32, 64, 4, 48, 8),  # LLaVA-7B's depth (opt-in: --configs deep-32)
}
DEFAULT = ("tiny-8", "medium-16")


def _model(layers: int, hidden: int, heads: int, image: int, device: str) -> LoadedModel:
    tok = build_tokenizer(vocabulary())
    cfg = tiny_config(
        "llava", vocab_size=len(tok), image_token_id=tok.image_token_id, hidden=hidden,
        layers=layers, heads=heads, vision_hidden=32, vision_layers=2, vision_heads=2,
        image_size=image, patch_size=8,
    )  # fmt: skip
    model = build_model(cfg, seed=0).to(device)
    proc = build_processor("llava", tok, image_size=image, patch_size=8)
    return LoadedModel.from_parts(model, proc, name=f"bench-{layers}x{hidden}")


def _timed(loaded: LoadedModel, samples: list, method: str, batch_size: int, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        result = sweep(loaded, samples, tuple(FLOWS), batch_size=batch_size, method=method)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, result


def run(name: str, device: str, batch_size: int, repeats: int) -> dict:
    layers, hidden, heads, image, n = CONFIGS[name]
    loaded = _model(layers, hidden, heads, image, device)
    samples = generate(TASKS, max(1, n // len(TASKS)), split="test", seed=0)
    sweep(loaded, samples[:2], ("image->question",), centers=[0], method="reuse")  # warm-up
    t_naive, naive = _timed(loaded, samples, "naive", batch_size, repeats)
    t_layers, layers_only = _timed(loaded, samples, "reuse-layers", batch_size, repeats)
    t_reuse, reuse = _timed(loaded, samples, "reuse", batch_size, repeats)
    a, b, c = naive.per_sample, reuse.per_sample, layers_only.per_sample
    return {
        "config": name, "layers": layers, "hidden": hidden, "samples": len(samples),
        "conditions": len(FLOWS) * layers, "tokens": _prompt_len(loaded, samples),
        "naive_s": t_naive, "reuse_layers_s": t_layers, "reuse_s": t_reuse,
        "speedup_layers": t_naive / t_layers, "speedup": t_naive / t_reuse, "target": TARGET,
        "max_abs_dp": float(max(np.abs(a.p_ko - b.p_ko).max(), np.abs(a.p_ko - c.p_ko).max())),
        "max_abs_drel_pct": float(np.abs(a.rel_change - b.rel_change).max()),
    }  # fmt: skip


LAST_FLOWS = ("image->last", "question->last", "last->last")


def run_last(name: str, device: str, batch_size: int, repeats: int) -> dict:
    """PID features under :data:`LAST_FLOWS`: one full knocked-out forward per flow against
    :func:`~pidlib.interventions.knockout.knockout_features_group`; best of ``repeats``."""
    from pidlib.interventions.knockout import knockout_features, knockout_features_group

    layers, hidden, heads, image, n = CONFIGS[name]
    loaded = _model(layers, hidden, heads, image, device)
    samples = generate(TASKS[:1], 4 * n, split="test", seed=0)  # one task per extraction
    kw = {"batch_size": batch_size, "cache": False, "progress": False, "max_new_tokens": 2}

    def timed(fn):
        best, out = float("inf"), None
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
        return best, out

    t_full, full = timed(lambda: [knockout_features(loaded, samples, f, **kw) for f in LAST_FLOWS])
    t_group, group = timed(lambda: knockout_features_group(loaded, samples, LAST_FLOWS, **kw))
    return {
        "config": name, "samples": len(samples), "flows": len(LAST_FLOWS), "full_s": t_full,
        "shared_s": t_group, "speedup": t_full / t_group,
        "same_V_L": all(np.array_equal(a.V, b.V) and np.array_equal(a.L, b.L)
                        for a, b in zip(full, group, strict=True)),
        "max_abs_dlogit": float(max(np.abs(a.option_logits - b.option_logits).max()
                                    for a, b in zip(full, group, strict=True))),
    }  # fmt: skip


def _prompt_len(loaded: LoadedModel, samples: list) -> int:
    from pidlib.models.prompt import encode

    return int(encode(loaded, samples[:1]).inputs["input_ids"].shape[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results to this JSON file")
    ap.add_argument("--configs", default=",".join(DEFAULT), help=f"subset of {list(CONFIGS)}")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1, help="best of this many timings")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    names = [c for c in args.configs.split(",") if c]
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        ap.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    rows = [run(name, args.device, args.batch_size, args.repeats) for name in names]
    print(
        f"{'config':<10} {'layers':>6} {'tokens':>6} {'conds':>5} {'naive s':>8} "
        f"{'layers s':>9} {'reuse s':>8} {'speed-up':>8} {'target':>6} {'max|dp|':>9}"
    )
    for r in rows:
        print(
            f"{r['config']:<10} {r['layers']:>6} {r['tokens']:>6} {r['conditions']:>5} "
            f"{r['naive_s']:>8.2f} {r['reuse_layers_s']:>9.2f} {r['reuse_s']:>8.2f} "
            f"{r['speedup']:>7.1f}x {r['target']:>5.1f}x {r['max_abs_dp']:>9.1e}"
        )
    print("layers s: restart at the first blocked layer; reuse s: also at the first target row")
    last = [run_last(name, args.device, args.batch_size, args.repeats) for name in names]
    print(f"\nPID features under {', '.join(LAST_FLOWS)} (all layers)")
    print(f"{'config':<10} {'samples':>7} {'full s':>7} {'shared s':>8} {'speed-up':>8} "
          f"{'same V,L':>8} {'max|dlogit|':>11}")  # fmt: skip
    for r in last:
        same = str(r["same_V_L"])
        print(f"{r['config']:<10} {r['samples']:>7} {r['full_s']:>7.2f} {r['shared_s']:>8.2f} "
              f"{r['speedup']:>7.1f}x {same:>8} {r['max_abs_dlogit']:>11.1e}")  # fmt: skip
    print(
        "full s: one knocked-out forward per flow; shared s: one forward of all positions but "
        "the last, then the last position alone per flow"
    )
    ok = all(r["speedup"] >= TARGET and r["max_abs_dp"] <= 1e-5 for r in rows)
    ok = ok and all(r["same_V_L"] and r["max_abs_dlogit"] <= 1e-4 for r in last)
    print("PASS" if ok else "BELOW TARGET")
    if args.json:
        env = {"python": platform.python_version(), "torch": torch.__version__,
               "device": args.device, "threads": args.threads}  # fmt: skip
        with open(args.json, "w") as f:
            json.dump(
                {
                    "benchmark": "knockout",
                    "results": rows,
                    "last_position": last,
                    "env": env,
                    "pass": ok,
                },
                f,
                indent=2,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
