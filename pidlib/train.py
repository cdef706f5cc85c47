"""Train, save and evaluate the embedded tiny LLaVA-1.5 / 1.6 models (`python -m pidlib.train`)."""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from pidlib.minigqa import MiniGQAConfig, generate
from pidlib.models import (
    LoadedModel,
    build_model,
    build_processor,
    build_tokenizer,
    load_model,
    models_dir,
    save_embedded,
    tiny_config,
)
from pidlib.tasks import TASKS
from pidlib.train_data import ScenePool, TokenCache, model_words
from pidlib.train_eval import evaluate, format_table
from pidlib.train_report import model_card, model_readme, pilot_log
from pidlib.train_stages import (
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

__all__ = ["Recipe", "RECIPES", "build_untrained", "train_decoder", "train_model", "main"]

_FAMILY = {"tiny-llava-1.5": "llava", "tiny-llava-1.6": "llava_next"}


#: What the decoder's focus phases share (each replaces steps, focus and mixing).
_FOCUS = StageSpec(steps=1, batch=16, turns=8, lr=2e-3, warmup=50, aux=0.1, caption=True,
                   focus_ratio=1.0)  # fmt: skip
#: The tasks of the binding phases (CompareAttr stays in so that it is not forgotten: pilot SP1).
_SPATIAL = ("ChooseRel", "QueryAttr", "CompareAttr")


@dataclass(frozen=True)
class Recipe:
    """Everything that determines one embedded model (sizes, data, seeds, stages).

    Stage ``lm`` and then each ``lm_focus`` stage (shared by both models: the "tiny Vicuna")
    train the decoder on symbolic scenes; ``align`` trains vision tower + projector to produce
    those symbolic tokens from pixels (decoder frozen); ``qa`` fine-tunes projector + decoder
    (and the vision tower at ``vision_lr_mult`` x the learning rate; 0 = frozen) on QA turns
    about rendered images.
    """

    name: str
    family: str
    seed: int = 0
    lm_seed: int = 0
    hidden: int = 64
    layers: int = 8
    heads: int = 4
    intermediate: int = 256
    vision_hidden: int = 64
    vision_layers: int = 3
    vision_heads: int = 4
    image_size: int = 48
    patch_size: int = 16
    grid_pinpoints: tuple[tuple[int, int], ...] = ((48, 48), (48, 96), (96, 48), (96, 96))
    data: MiniGQAConfig = field(default_factory=MiniGQAConfig)
    lm_init_std: float = 0.08
    lm_mimetic: float = 1.0
    lm: StageSpec = StageSpec(steps=2400, batch=16, turns=8, lr=3e-3, aux=0.3, caption=True)
    lm_focus: tuple[StageSpec, ...] = (
        # CompareAttr takes off only after ~1500 steps with two CompareAttr scenes per
        # all-task scene (pilots C1-C3 in data/models/PILOTS.md); the binding phases alone,
        # at a third of that share, leave it at chance (T1, T2).
        replace(_FOCUS, steps=4000, focus=("CompareAttr",), focus_ratio=2.0, focus_mode="per_task"),
        # The decoder read an object's side partly from where its token sits (mirroring the
        # token order cost QueryAttr .91 -> .68): shuffle the order so that only the cell's own
        # row and column words tell (B1), then denser scenes, where answering from the whole
        # scene instead of the named object fails more often (B3).
        replace(
            _FOCUS,
            steps=3000,
            focus=_SPATIAL,
            focus_ratio=2.0,
            focus_mode="per_task",
            shuffle_cells=True,
        ),
        replace(
            _FOCUS,
            steps=3000,
            focus=(*_SPATIAL, "LogicalObj"),
            focus_ratio=2.0,
            focus_mode="per_task",
            shuffle_cells=True,
            objects=(3, 6),
        ),
    )
    align: StageSpec = StageSpec(steps=400, batch=64, turns=1, lr=3e-3, warmup=50)
    # One CompareAttr-only scene per all-task scene: the decoder leaves its phases with
    # CompareAttr near .8, and QA on pixels takes it past .9 (pilots R4, V1-V2).
    qa: StageSpec = StageSpec(
        steps=1000,
        batch=32,
        turns=8,
        lr=1e-3,
        warmup=50,
        aux=0.1,
        caption=True,
        focus=("CompareAttr",),
        focus_ratio=1.0,
        focus_mode="per_task",
    )
    vision_lr_mult: float = 0.0

    def __post_init__(self) -> None:
        if self.family not in ("llava", "llava_next"):
            raise ValueError(f"Recipe.family: expected 'llava' or 'llava_next', got {self.family}")
        if self.layers < 8:
            raise ValueError(
                f"Recipe.layers: the book needs >= 8 decoder layers, got {self.layers}"
            )
        if self.data.layout != "grid" or self.data.grid_size * self.data.cell_px != self.image_size:
            raise ValueError("Recipe.data: needs the grid layout with image side == image_size")
        if self.vision_lr_mult < 0:
            raise ValueError(f"Recipe.vision_lr_mult: expected >= 0, got {self.vision_lr_mult}")

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        d = asdict(self)
        d["data"] = self.data.to_dict()
        d["grid_pinpoints"] = [list(p) for p in self.grid_pinpoints]
        return d

    def lm_key(self) -> str:
        """Digest of what the shared decoder stage depends on (its checkpoint name)."""
        keys = (
            "lm_seed",
            "hidden",
            "layers",
            "heads",
            "intermediate",
            "lm_init_std",
            "lm_mimetic",
            "lm",
            "lm_focus",
        )
        d = {k: self.to_dict()[k] for k in keys} | {"data": self.data.to_dict()}
        return hashlib.blake2b(json.dumps(d, sort_keys=True).encode(), digest_size=6).hexdigest()


#: The two embedded models. They share the decoder stage; 1.6 also tunes its vision tower.
RECIPES: dict[str, Recipe] = {
    "tiny-llava-1.5": Recipe("tiny-llava-1.5", "llava", seed=15),
    "tiny-llava-1.6": Recipe("tiny-llava-1.6", "llava_next", seed=16, vision_lr_mult=0.1),
}


def build_untrained(recipe: Recipe):
    """``(model, processor, tokenizer)``: a freshly initialised model for ``recipe``."""
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


def _pool(recipe: Recipe, seed: int, spec: StageSpec, image_processor=None, chunk: int = 1024):
    data = recipe.data
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
    model, _, tok = build_untrained(base)
    tc = TokenCache(tok)
    lm, head = decoder_parts(model)
    logs: list[StageLog] = []
    if done:
        saved = torch.load(paths[done - 1], weights_only=False)
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
    model, proc, tok = build_untrained(recipe)
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
    # Stage 3: QA fine-tuning on images (decoder, projector, newline; vision at a lower rate).
    spec = recipe.qa
    pool = _pool(recipe, recipe.seed + 1, spec, proc.image_processor, chunk=512)
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
        n_img = _n_image_tokens(model, proc, recipe)
        path = save_embedded(
            loaded, out_dir / name, model_card(recipe, [*lm_logs, *logs], ev, n_img, pilot_log())
        )
        card = json.loads((path / "model_card.json").read_text())
        (path / "README.md").write_text(model_readme(card))


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--model NAME|all`` trains; ``--evaluate NAME`` prints the accuracy table."""
    p = argparse.ArgumentParser(prog="python -m pidlib.train", description=__doc__)
    p.add_argument("--model", choices=[*RECIPES, "all"], help="train this model (or both)")
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
        names = list(RECIPES) if a.model == "all" else [a.model]
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
        from pidlib.train_report import write_tables

        print(f"wrote {write_tables(a.write_tables, list(RECIPES), out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
