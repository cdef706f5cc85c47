"""Train, save and evaluate the embedded tiny LLaVA-1.5 / 1.6 models."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from pidlib.data.minigqa.questions import generate
from pidlib.data.tasks import TASKS
from pidlib.models.families import models_dir
from pidlib.models.load import load_model
from pidlib.models.loaded import LoadedModel
from pidlib.models.tiny import build_model, build_processor, build_tokenizer, tiny_config
from pidlib.training.data import ScenePool, TokenCache, model_words
from pidlib.training.evaluate import evaluate, format_table
from pidlib.training.recipe import RECIPES, Recipe
from pidlib.training.report import model_card, model_readme, pilot_log, save_embedded
from pidlib.training.stages import (
    StageLog,
    StageSpec,
    _text_batch,
    align_stage_loss,
    decoder_parts,
    lm_stage_loss,
    mimetic_init,
    normal_init,
    qa_stage_loss,
    run_stage,
    symbolic_accuracy,
)

__all__ = ["initial_model", "train_decoder", "train_model", "run", "main"]


def initial_model(recipe: Recipe):
    """``(model, processor, tokenizer)``: a freshly initialised model for ``recipe``, before any
    stage (its own tokenizer and processor; :func:`pidlib.models.tiny.build_untrained` rebuilds
    a committed model's architecture instead)."""
    tok = build_tokenizer(model_words(recipe.data))
    cfg = tiny_config(
        recipe.family,
        vocab_size=len(tok),
        image_token_id=int(tok.convert_tokens_to_ids("<image>")),
        hidden=recipe.hidden,
        layers=recipe.layers,
        heads=recipe.heads,
        intermediate=recipe.intermediate,
        vision_hidden=recipe.vision_hidden,
        vision_layers=recipe.vision_layers,
        vision_heads=recipe.vision_heads,
        image_size=recipe.image_size,
        patch_size=recipe.patch_size,
        grid_pinpoints=[list(p) for p in recipe.grid_pinpoints],
    )
    proc = build_processor(
        recipe.family,
        tok,
        image_size=recipe.image_size,
        patch_size=recipe.patch_size,
        grid_pinpoints=[list(p) for p in recipe.grid_pinpoints],
    )
    return build_model(cfg, recipe.seed), proc, tok


def _n_image_tokens(model, processor, recipe: Recipe) -> int:
    from PIL import Image

    img = Image.new("RGB", (recipe.image_size, recipe.image_size))
    out = processor.image_processor([img], return_tensors="pt")
    kw = {"pixel_values": out["pixel_values"]}
    if "image_sizes" in out:
        kw["image_sizes"] = out["image_sizes"]
    with torch.no_grad():
        feats = model.model.get_image_features(**kw)
    feats = getattr(feats, "pooler_output", feats)
    return int(feats[0].shape[0])


def _pool(
    recipe: Recipe,
    seed: int,
    spec: StageSpec,
    image_processor=None,
    chunk: int = 1024,
    prior: float | None = None,
):
    data = recipe.data if prior is None else replace(recipe.data, prior=prior)
    if spec.objects is not None:
        data = replace(data, min_objects=spec.objects[0], max_objects=spec.objects[1])
    return ScenePool(
        data,
        seed,
        spec.turns,
        image_processor,
        chunk=chunk,
        aux_fraction=spec.aux,
        with_caption=spec.caption,
        focus=spec.focus,
        focus_ratio=spec.focus_ratio,
        focus_mode=spec.focus_mode,
    )


def train_decoder(
    recipe: Recipe, *, workdir: Path | None = None, progress: bool = True, log_every: int = 0
) -> tuple[dict, list[StageLog]]:
    """Stage ``lm``, then each ``lm_focus`` stage: the shared decoder (state dicts of
    ``language_model`` and ``lm_head``) and the stage logs. After every stage the decoder is
    saved in ``workdir`` under the key of the recipe cut after that stage
    (:meth:`Recipe.lm_key`), and a run resumes from the longest saved prefix: adding a stage
    trains only the new one. Every ``log_every`` steps (0: never) the symbolic accuracy on 50 val
    questions per task is printed."""
    base = replace(recipe, family="llava", seed=recipe.lm_seed)
    stages = [("lm (symbolic)", recipe.lm, recipe.lm_seed)]
    for i, spec in enumerate(recipe.lm_focus):
        stages.append((f"lm (symbolic, focus {i + 1})", spec, recipe.lm_seed + 1 + i))
    paths = [
        workdir / f"tiny-vicuna-{replace(recipe, lm_focus=recipe.lm_focus[:k]).lm_key()}.pt"
        if workdir
        else None
        for k in range(len(stages))
    ]
    done = max((k + 1 for k, p in enumerate(paths) if p is not None and p.is_file()), default=0)
    torch.manual_seed(recipe.lm_seed)
    model, _, tok = initial_model(base)
    tc = TokenCache(tok)
    lm, head = decoder_parts(model)
    logs: list[StageLog] = []
    if done:
        saved = torch.load(paths[done - 1], weights_only=True)  # state dicts + plain logs only
        lm.load_state_dict(saved["state"]["lm"])
        head.load_state_dict(saved["state"]["head"])
        logs = [StageLog(**g) for g in saved["logs"]]
        print(f"[lm] resumed after stage {done} of {len(stages)} from {paths[done - 1]}")
    else:
        if recipe.lm_init_std != 0.02:
            normal_init([lm, head], recipe.lm_init_std, recipe.lm_seed)
        mimetic_init(lm, recipe.lm_mimetic)
    params = list(lm.parameters()) + list(head.parameters())
    probe = generate(TASKS, 50, split="val", seed=recipe.lm_seed, config=recipe.data)

    def report(step: int, loss: float) -> None:
        acc = symbolic_accuracy(model, tc, probe)
        lm.train()
        head.train()
        shown = " ".join(f"{t}={a:.2f}" for t, a in acc.items())
        print(f"[lm] step {step} loss {loss:.3f} val {shown}", flush=True)

    for k in range(done, len(stages)):
        name, spec, seed = stages[k]
        pool = _pool(recipe, seed, spec)
        logs.append(
            run_stage(
                name,
                params,
                lm_stage_loss(model, tc, "llava", 9),
                lambda pool=pool, spec=spec: _text_batch(pool, tc, spec, 9, False),
                spec,
                modules=[lm, head],
                progress=progress,
                log_every=log_every or 100,
                on_log=report if log_every else None,
            )
        )
        if paths[k] is not None:
            paths[k].parent.mkdir(parents=True, exist_ok=True)
            state = {"lm": lm.state_dict(), "head": head.state_dict()}
            torch.save({"state": state, "logs": [asdict(g) for g in logs]}, paths[k])
    return {"lm": lm.state_dict(), "head": head.state_dict()}, logs


def train_model(recipe: Recipe, decoder_state: dict, *, progress: bool = True):
    """Stages ``align`` and ``qa`` for one model: returns ``(model, processor, [StageLog])``."""
    torch.manual_seed(recipe.seed)
    model, proc, tok = initial_model(recipe)
    lm, head = decoder_parts(model)
    lm.load_state_dict(decoder_state["lm"])
    head.load_state_dict(decoder_state["head"])
    tc = TokenCache(tok)
    n_img = _n_image_tokens(model, proc, recipe)
    vision, projector = model.model.vision_tower, model.model.multi_modal_projector
    logs = []
    # Stage 2: vision tower + projector regress the symbolic cell tokens; decoder frozen.
    spec = recipe.align
    pool = _pool(recipe, recipe.seed, spec, proc.image_processor, chunk=512)
    logs.append(
        run_stage(
            "align (vision)",
            list(vision.parameters()) + list(projector.parameters()),
            align_stage_loss(model, recipe.family, n_img),
            lambda: _text_batch(pool, tc, spec, n_img, True),
            spec,
            modules=[vision, projector],
            progress=progress,
        )
    )
    # Stage 3: QA fine-tuning on images (decoder, projector, newline; vision at a lower rate),
    # on scenes at the recipe's QA prior.
    spec = recipe.qa
    pool = _pool(recipe, recipe.seed + 1, spec, proc.image_processor, chunk=512,
                 prior=recipe.qa_prior)  # fmt: skip
    vision_ids = {id(p) for p in vision.parameters()}
    rest = [p for p in model.parameters() if id(p) not in vision_ids]
    groups = [{"params": rest, "lr": spec.lr}]
    if recipe.vision_lr_mult > 0:
        groups.append({"params": list(vision.parameters()), "lr": spec.lr * recipe.vision_lr_mult})
    logs.append(
        run_stage(
            "qa (images)",
            groups,
            qa_stage_loss(model),
            lambda: _text_batch(pool, tc, spec, n_img, True),
            spec,
            modules=[model],
            progress=progress,
        )
    )
    model.eval()
    return model, proc, logs


def run(
    names: list[str],
    *,
    out_dir: Path,
    workdir: Path,
    eval_n: int,
    progress: bool = True,
    log_every: int = 0,
) -> None:
    """Train every model in ``names`` (sharing the decoder stage), evaluate, save."""
    for name in names:
        recipe = RECIPES[name]
        state, lm_logs = train_decoder(
            recipe, workdir=workdir, progress=progress, log_every=log_every
        )
        model, proc, logs = train_model(recipe, state, progress=progress)
        loaded = LoadedModel.from_parts(model, proc, name=name)
        ev = evaluate(loaded, n_per_task=eval_n)
        print(f"{name}\n{format_table(ev)}", flush=True)
        at_prior = None
        if recipe.qa_prior:
            at_prior = evaluate(loaded, n_per_task=eval_n,
                                config=replace(recipe.data, prior=recipe.qa_prior))  # fmt: skip
            print(f"at prior {recipe.qa_prior}\n{format_table(at_prior)}", flush=True)
        n_img = _n_image_tokens(model, proc, recipe)
        card = model_card(recipe, [*lm_logs, *logs], ev, n_img, pilot_log(), at_prior=at_prior)
        path = save_embedded(loaded, out_dir / name, card)
        card = json.loads((path / "model_card.json").read_text())
        (path / "README.md").write_text(model_readme(card))


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--model NAME|all`` trains; ``--evaluate NAME`` prints the accuracy table."""
    p = argparse.ArgumentParser(prog="python -m pidlib.training", description=__doc__)
    p.add_argument(
        "--model",
        choices=[*RECIPES, "committed", "all"],
        help="train this model, the two committed models, or every recipe (both decoders)",
    )
    p.add_argument("--evaluate", metavar="NAME", help="evaluate a saved model")
    p.add_argument("--out", type=Path, default=None, help="models directory (default: data/models)")
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("scratch/train-work"),
        help="where the shared decoder checkpoint is cached (resumes from it)",
    )
    p.add_argument("--write-tables", type=Path, metavar="PATH", help="write the book's tables")
    p.add_argument("--eval-n", type=int, default=200, help="test questions per task")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=200, help="decoder-stage probe interval")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if not (a.model or a.evaluate or a.write_tables):
        p.error("give --model, --evaluate or --write-tables")
    torch.set_num_threads(a.threads)
    out = a.out or models_dir()
    if a.model:
        groups = {"all": list(RECIPES), "committed": ["tiny-llava-1.5", "tiny-llava-1.6"]}
        names = groups.get(a.model, [a.model])
        t0 = time.time()
        run(
            names,
            out_dir=out,
            workdir=a.workdir,
            eval_n=a.eval_n,
            progress=not a.no_progress,
            log_every=a.log_every,
        )
        print(f"done in {(time.time() - t0) / 60:.1f} min")
    if a.evaluate:
        src = out / a.evaluate if (out / a.evaluate).is_dir() else a.evaluate
        ev = evaluate(load_model(src), n_per_task=a.eval_n)
        print(format_table(ev))
    if a.write_tables:
        from pidlib.training.report import write_tables

        print(f"wrote {write_tables(a.write_tables, list(RECIPES), out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
