"""GPU throughput of the extraction and knockout paths on a random-initialised LLaVA-1.5-7B.

    python benchmarks/bench_gpu.py --json book/gpu-benchmark.json     # on a CUDA machine
    python benchmarks/bench_gpu.py --tiny --device cpu                # the same code, tiny, CPU

The model has LLaVA-1.5-7B's real configuration: CLIP ViT-L/14 at 336 px (576 image tokens),
a 32-layer 4096-wide Vicuna decoder, bf16. Its weights are random, and speed does not depend on
them. It reports samples/s for a bare batched forward and for pidlib's layer-wise extraction,
both including the encoding of prompts and images. The ratio is the cost of the pooling hooks
and the answer decoding. It also reports samples/s for a windowed Image→Question knockout
sweep and the peak GPU memory. The book's reproducibility page reads the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from pidlib.core.provenance import provenance
from pidlib.data.minigqa.program import vocabulary
from pidlib.data.minigqa.questions import generate
from pidlib.extract.features import extract_features
from pidlib.interventions.sweep import sweep
from pidlib.models.loaded import LoadedModel
from pidlib.models.prompt import encode
from pidlib.models.tiny import build_processor, build_tokenizer


def llava_15_7b_config(vocab_size: int, image_token_id: int, tiny: bool):
    """LLaVA-1.5-7B's configuration (or a tiny one of the same shape for a CPU smoke run)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    if tiny:
        vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=2, image_size=56, patch_size=14)  # fmt: skip
        text = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                           num_attention_heads=4, vocab_size=vocab_size)  # fmt: skip
    else:
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, image_size=336, patch_size=14,
                                  projection_dim=768)  # fmt: skip
        text = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, vocab_size=vocab_size,
                           max_position_embeddings=4096, rms_norm_eps=1e-5)  # fmt: skip
    return LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                       vision_feature_layer=-2, vision_feature_select_strategy="default",
                       projector_hidden_act="gelu")  # fmt: skip


def timed(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t0) / repeats


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny config of the same shape")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA device here (use --device cpu --tiny for a smoke run)")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    tok = build_tokenizer(vocabulary())
    cfg = llava_15_7b_config(32064, tok.convert_tokens_to_ids("<image>"), args.tiny)
    size, patch = cfg.vision_config.image_size, cfg.vision_config.patch_size
    processor = build_processor("llava", tok, image_size=size, patch_size=patch)
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(cfg, dtype=dtype,
                                                           attn_implementation="sdpa")  # fmt: skip
    model.eval().requires_grad_(False)
    build_s = time.perf_counter() - t0
    loaded = LoadedModel.from_parts(model, processor, name="random-llava-1.5-7b-config")
    samples = generate(["ChooseAttr"], args.samples, split="test", seed=0)
    batches = [samples[i : i + args.batch_size] for i in range(0, len(samples), args.batch_size)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def bare():  # encoding + the cheapest forward that gives the answer logits
        with torch.inference_mode():
            for b in batches:
                x = {k: v.to(device) for k, v in encode(loaded, b).inputs.items()}
                model(**x, use_cache=False, logits_to_keep=1)

    def extract():
        extract_features(loaded, samples, batch_size=args.batch_size, correct_only=False,
                         cache=False, progress=False, max_new_tokens=1)  # fmt: skip

    n_layers = cfg.text_config.num_hidden_layers
    centers = list(range(0, n_layers, max(1, n_layers // 8)))
    ko_samples = samples[: args.batch_size]

    def knock():
        sweep(loaded, ko_samples, ["image->question"], centers, window=9,
              batch_size=args.batch_size)  # fmt: skip

    t_bare = timed(bare, args.repeats, sync)
    t_extract = timed(extract, args.repeats, sync)
    t_knock = timed(knock, 1, sync)
    result = {
        "model": "random-init LLaVA-1.5-7B config" if not args.tiny else "tiny LLaVA (smoke)",
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "batch_size": args.batch_size,
        "image_tokens": (size // patch) ** 2,
        "seq_len": int(encode(loaded, batches[0]).inputs["input_ids"].shape[1]),
        "build_seconds": round(build_s, 1),
        "bare_forward_samples_per_s": round(len(samples) / t_bare, 2),
        "extraction_samples_per_s": round(len(samples) / t_extract, 2),
        "extraction_vs_bare": round(t_bare / t_extract, 3),
        "knockout_sweep_windows": len(centers),
        "knockout_sweep_sample_windows_per_s": round(len(ko_samples) * len(centers) / t_knock, 2),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if device.type == "cuda" else None,
        "provenance": provenance(),
    }  # fmt: skip
    for k, v in result.items():
        if k != "provenance":
            print(f"{k:40s} {v}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
