"""Extraction throughput against a bare batched forward, and PID time per layer (tiny models).

Models: the embedded tiny LLaVA-1.5 / 1.6 when they are on disk, else randomly initialised
models of the same recipe (sizes, tokenizer, processor). All timings on pre-encoded batches are
medians over interleaved repeats of CPU time (one thread unless ``--threads``; wall time is
recorded too, but on a shared machine it measures the neighbours). Rows:

- ``bare``: ``model(**inputs)`` with Hugging Face defaults (logits at every position, KV cache);
  ``bare_lean``: ``use_cache=False, logits_to_keep=1``, the cheapest forward that gives the
  answer logits;
- ``hidden_states``: ``output_hidden_states=True`` and pooling afterwards (the alternative design);
- ``extract_first``: pidlib's hooked forward + pooling + option scores, first-token answers;
- ``extract_greedy``: the same with greedy continuation (``max_new_tokens=5``, early stop);
  with random weights the number of decoding steps is arbitrary, so ``extract_1step`` relabels
  the questions so that every first-token answer is correct: one decoding step per batch, what
  a trained model that answers correctly costs;
- ``e2e``: :func:`pidlib.extract.features.extract_features` end to end (encoding included) against
  encoding + the bare forward.

Target: extraction throughput >= 0.9 x the bare forward of the same model and batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pidlib.data.minigqa.questions import generate
from pidlib.extract import batches as B
from pidlib.extract import features as F
from pidlib.extract.pooling import pool_weights
from pidlib.models.load import load_model
from pidlib.models.loaded import LoadedModel
from pidlib.models.prompt import encode

MODELS = ("tiny-llava-1.5", "tiny-llava-1.6")


def _model(name: str) -> tuple[LoadedModel, str]:
    try:
        return load_model(name), "trained"
    except (OSError, ValueError):
        from pidlib.models.tiny import build_untrained

        untrained = build_untrained(name)
        return LoadedModel.from_parts(untrained.model, untrained.processor, name=name), "random"


def _as_if_correct(loaded: LoadedModel, batches: list, encs: list) -> list:
    """The batches relabelled so that each model's first-token answer is the gold one: every row
    then needs exactly one more decoding step to see whether the answer ends there, the cost a
    trained model that answers correctly pays."""
    from dataclasses import replace

    out = []
    for batch, enc in zip(batches, encs, strict=True):
        said = B.run_batch(loaded, batch, 1, None, {}, enc)["answer"]
        new = []
        for s, a in zip(batch, said, strict=True):
            if a and " " not in a and a not in s.options:
                s = replace(s, answer=a, options=(a, s.options[1]))
            elif a in s.options:
                s = replace(s, answer=a)
            new.append(s)
        out.append(new)
    return out


def _time(fn) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one call (CPU time is robust to a shared, loaded machine
    when the work is single-threaded)."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


@torch.no_grad()
def bench_model(name: str, n: int, batch: int, repeats: int) -> dict:
    loaded, weights = _model(name)
    samples = generate(["ChooseAttr"], n, split="test", seed=11)
    batches = [samples[i : i + batch] for i in range(0, n, batch)]
    encs = [encode(loaded, b) for b in batches]
    m = loaded.model
    variants: dict = {}  # answer-token ids per option set, kept across batches as in a real run
    correct = _as_if_correct(loaded, batches, encs)

    def hidden_states() -> None:
        for enc in encs:
            hs = m(**enc.inputs, output_hidden_states=True, use_cache=False).hidden_states
            w = pool_weights(enc, enc.inputs["input_ids"].shape[1])
            torch.stack([torch.bmm(w, h.float()) for h in hs], 1)

    def run(fn):
        return lambda: [fn(enc, b) for enc, b in zip(encs, batches, strict=True)]

    fns = {
        "bare": run(lambda enc, b: m(**enc.inputs)),
        "bare_lean": run(lambda enc, b: m(**enc.inputs, use_cache=False, logits_to_keep=1)),
        "hidden_states": hidden_states,
        "extract_first": run(lambda enc, b: B.run_batch(loaded, b, 1, None, variants, enc)),
        "extract_greedy": run(lambda enc, b: B.run_batch(loaded, b, 5, None, variants, enc)),
        "extract_1step": lambda: [
            B.run_batch(loaded, b, 5, None, variants, enc)
            for enc, b in zip(encs, correct, strict=True)
        ],
        "encode": lambda: [encode(loaded, b) for b in batches],
        "e2e": lambda: F.extract_features(
            loaded, samples, batch_size=batch, cache=False, correct_only=False, progress=False
        ),  # fmt: skip
    }
    for fn in fns.values():  # warm-up
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):  # interleaved, so that load changes hit every variant alike
        for k, fn in fns.items():
            w, c = _time(fn)
            wall[k].append(w)
            cpu[k].append(c)
    med = {k: statistics.median(v) for k, v in cpu.items()}
    rate = {k: n / v for k, v in med.items() if k != "encode"}
    rate["encode+bare"] = n / (med["encode"] + med["bare"])
    wall_rate = {k: n / statistics.median(v) for k, v in wall.items() if k != "encode"}
    feats = fns["e2e"]()
    return {
        "weights": weights,
        "family": loaded.family,
        "decoder_layers": loaded.num_layers,
        "tokens_per_prompt": int(encs[0].inputs["input_ids"].shape[1]),
        "image_tokens": sorted({len(p.image) for e in encs for p in e.positions}),
        "n": n,
        "batch": batch,
        "samples_per_cpu_s": rate,
        "samples_per_wall_s": wall_rate,
        "ratio_vs_bare": {
            "extract_first": rate["extract_first"] / rate["bare"],
            "extract_greedy": rate["extract_greedy"] / rate["bare"],
            "extract_1step": rate["extract_1step"] / rate["bare"],
            "hidden_states": rate["hidden_states"] / rate["bare"],
            "e2e_vs_encode+bare": rate["e2e"] / rate["encode+bare"],
        },
        "accuracy": float(feats.correct.mean()),
        "features": feats,
    }


def bench_pid(feats, layers: list[int], profile: str) -> dict:
    from pidlib.analysis.layerwise import layerwise_pid
    from pidlib.config.profiles import ParallelSpec, load_profile

    spec = load_profile(profile).pid
    wall, cpu = _time(
        lambda: layerwise_pid(feats, pid_spec=spec, layers=layers, cache=False, progress=False,
                              parallel=ParallelSpec(backend="sequential", n_jobs=1))
    )  # fmt: skip
    k = len(layers)
    return {"profile": profile, "pid": dataclasses.asdict(spec), "n": feats.n, "layers": layers,
            "cpu_s_per_layer": cpu / k, "wall_s_per_layer": wall / k}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("--n", type=int, default=512, help="samples per model")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pid-profiles", nargs="*", default=["smoke", "cpu"])
    ap.add_argument("--pid-layers", type=int, default=2, help="layers timed per PID profile")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    result: dict = {"threads": args.threads, "torch": torch.__version__, "models": {}, "pid": []}
    print(f"{'model':16} {'weights':8} {'variant':16} {'samples/cpu-s':>13} {'x bare':>7}")
    for name in MODELS:
        r = bench_model(name, args.n, args.batch, args.repeats)
        feats = r.pop("features")
        result["models"][name] = r
        for k, v in r["samples_per_cpu_s"].items():
            ratio = v / r["samples_per_cpu_s"]["bare"]
            print(f"{name:16} {r['weights']:8} {k:16} {v:13.0f} {ratio:7.2f}")
        e2e = r["ratio_vs_bare"]["e2e_vs_encode+bare"]
        print(f"{name:16} {r['weights']:8} {'e2e/(enc+bare)':16} {'':13} {e2e:7.2f}")
        layers = list(np.linspace(0, feats.n_layers, args.pid_layers).round().astype(int))
        for prof in args.pid_profiles:
            p = bench_pid(feats, [int(v) for v in layers], prof)
            p["model"] = name
            result["pid"].append(p)
            print(f"{name:16} PID ({prof}, n={p['n']}): {p['cpu_s_per_layer']:.1f} CPU s "
                  f"({p['wall_s_per_layer']:.1f} s wall) per layer")  # fmt: skip
    target = min(r["ratio_vs_bare"]["extract_first"] for r in result["models"].values())
    result["target"] = {"extract_first_vs_bare_min": target, "goal": 0.9, "met": target >= 0.9}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
