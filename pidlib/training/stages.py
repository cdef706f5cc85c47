"""The three training stages of the tiny LLaVA models: symbolic LM, vision alignment, QA tuning."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from pidlib.data.tasks import validate_tasks
from pidlib.training.data import Batch, ScenePool, TokenCache, build_sequence, collate
from pidlib.training.data import image_feature_cells as _feature_cells

__all__ = [
    "StageSpec",
    "StageLog",
    "symbolic_tokens",
    "symbolic_inputs",
    "run_stage",
    "lm_stage_loss",
    "align_stage_loss",
    "qa_stage_loss",
    "decoder_parts",
    "mimetic_init",
    "normal_init",
    "symbolic_accuracy",
]


@dataclass(frozen=True)
class StageSpec:
    """One stage's optimisation: ``steps`` AdamW steps of ``batch`` conversations of ``turns``
    QA turns, peak learning rate ``lr`` after ``warmup`` steps, cosine decay to
    ``lr * final_lr_frac``, gradient clipping at ``clip``; ``aux`` = share of single-lookup
    questions among the turns; ``caption`` adds a scene-caption turn to every conversation;
    for every scene over all tasks the pool adds ``focus_ratio`` scenes asking only ``focus``
    tasks (the rarer structural questions by default): drawn as one mix (``focus_mode="mixed"``,
    where tasks a scene supports often crowd out the rest) or split evenly with one task per
    scene (``"per_task"``). ``shuffle_cells`` shuffles the order of the symbolic image tokens
    per scene (each keeps its row and column words), so that the decoder must read an object's
    position from its token rather than from where the token sits; ``objects`` = (min, max)
    objects per training scene, replacing the data config's range."""

    steps: int
    batch: int = 32
    turns: int = 8
    lr: float = 3e-3
    warmup: int = 100
    final_lr_frac: float = 0.05
    weight_decay: float = 0.01
    clip: float = 1.0
    aux: float = 0.0
    caption: bool = False
    focus: tuple[str, ...] = ("ChooseRel", "CompareAttr", "QueryAttr")
    focus_ratio: float = 1 / 3
    focus_mode: str = "mixed"
    shuffle_cells: bool = False
    objects: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "turns"):
            if getattr(self, name) < 1:
                raise ValueError(f"StageSpec.{name}: expected >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or not 0 <= self.final_lr_frac <= 1 or self.warmup < 0:
            raise ValueError("StageSpec: need lr > 0, warmup >= 0 and 0 <= final_lr_frac <= 1")
        if not 0 <= self.aux < 1:
            raise ValueError(f"StageSpec.aux: expected a fraction in [0, 1), got {self.aux}")
        if not 0 <= self.focus_ratio <= 10:
            raise ValueError(f"StageSpec.focus_ratio: expected 0..10, got {self.focus_ratio}")
        object.__setattr__(self, "focus", validate_tasks(list(self.focus)))
        if self.objects is not None and not 1 <= self.objects[0] <= self.objects[1]:
            raise ValueError(
                f"StageSpec.objects: expected (min, max), 1 <= min <= max, got {self.objects}"
            )
        if self.focus_mode not in ("mixed", "per_task"):
            raise ValueError(
                f"StageSpec.focus_mode: 'mixed' or 'per_task', not {self.focus_mode!r}"
            )


@dataclass(frozen=True)
class StageLog:
    """What a stage did: ``steps``, wall ``seconds``, mean loss over the first and last 10%."""

    name: str
    steps: int
    seconds: float
    loss_start: float
    loss_end: float


def decoder_parts(model) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(language_model, lm_head)`` of a LLaVA / LLaVA-NeXT model, found on the live model."""
    inner = getattr(model, "model", None)
    lm = getattr(inner, "language_model", None)
    head = getattr(model, "lm_head", None)
    if lm is None or head is None:
        raise ValueError("decoder_parts: model has no model.language_model / lm_head")
    return lm, head


def normal_init(modules: Iterable[torch.nn.Module], std: float, seed: int) -> None:
    """Re-draw every Linear / Embedding weight of ``modules`` from N(0, std^2), biases zero
    (seeded; norms untouched). Llama's default std 0.02 suits widths near 1000; a 64-wide
    decoder trains faster from std ~ 1 / sqrt(width)."""
    if not std > 0:
        raise ValueError(f"normal_init: std must be > 0, got {std}")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in modules:
            for m in module.modules():
                if isinstance(m, torch.nn.Linear | torch.nn.Embedding):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
                    if getattr(m, "bias", None) is not None:
                        m.bias.zero_()


def mimetic_init(lm: torch.nn.Module, scale: float) -> None:
    """Mimetic initialisation of attention (Trockman & Kolter, 2023), query-key part: every
    layer's key projection becomes a copy of its query projection and both are scaled by
    ``scale``, so that W_Q^T W_K starts positive semi-definite (tokens attend to similar
    tokens from step 0). ``scale`` = 0 leaves the model unchanged."""
    if scale < 0:
        raise ValueError(f"mimetic_init: scale must be >= 0, got {scale}")
    if scale == 0:
        return
    with torch.no_grad():
        for layer in lm.layers:
            att = layer.self_attn
            if att.k_proj.weight.shape != att.q_proj.weight.shape:
                raise ValueError("mimetic_init: needs as many key as query heads")
            att.k_proj.weight.copy_(att.q_proj.weight)
            att.q_proj.weight.mul_(scale)
            att.k_proj.weight.mul_(scale)


def symbolic_tokens(embedding: torch.nn.Embedding, cells: torch.Tensor) -> torch.Tensor:
    """Cell tokens (B, 9, D): the sum of each cell's word embeddings over sqrt(#words).

    ``cells`` (B, 9, 6) holds word ids, 0 = padding. This is the target the vision tower and
    projector are aligned to, and what the symbolic stage feeds the decoder in the image block.
    """
    present = (cells > 0).unsqueeze(-1).to(embedding.weight.dtype)
    total = (embedding(cells) * present).sum(2)
    return total / present.sum(2).clamp(min=1).sqrt()


def symbolic_inputs(
    embedding: torch.nn.Embedding, batch: Batch, image_id: int, cell_index: torch.Tensor
) -> torch.Tensor:
    """``inputs_embeds`` (B, T, D) with the image block replaced by the cells' symbolic tokens
    in the feature order ``cell_index`` (cell per image token; -1 = a zero newline slot)."""
    x = embedding(batch.input_ids)
    sym = symbolic_tokens(embedding, batch.cells)  # B, 9, D
    idx = cell_index.clamp(min=0)
    block = sym[:, idx] * (cell_index >= 0).to(sym.dtype)[None, :, None]
    mask = batch.input_ids == image_id
    if int(mask.sum()) != block.shape[0] * block.shape[1]:
        raise ValueError("symbolic_inputs: image-token count does not match the feature layout")
    x = x.clone()
    x[mask] = block.reshape(-1, block.shape[-1]).to(x.dtype)
    return x


def _text_batch(pool: ScenePool, tc: TokenCache, spec: StageSpec, n_img: int, pixels: bool):
    items = pool.take(spec.batch)
    seqs = [build_sequence(tc, qas, n_img) for _, qas, _, _ in items]
    cells = [tc.cells(scene) for scene, _, _, _ in items]
    if spec.shuffle_cells:
        if pixels:
            raise ValueError("StageSpec.shuffle_cells: only for symbolic stages (no pixels)")
        cells = [[c[i] for i in pool.rng.permutation(len(c))] for c in cells]
    pix = sizes = None
    if pixels:
        pix = torch.stack([p for _, _, p, _ in items])
        if items[0][3] is not None:
            sizes = torch.stack([torch.as_tensor(s) for _, _, _, s in items])
    return collate(seqs, cells, tc.pad_id, pix, sizes)


def lm_stage_loss(
    model, tc: TokenCache, family: str, n_img: int
) -> Callable[[Batch], torch.Tensor]:
    """Stage 1 loss: the decoder reads symbolic cell tokens; cross-entropy on answer tokens."""
    lm, head = decoder_parts(model)
    emb = lm.get_input_embeddings()
    cell_index = _feature_cells(family, n_img)

    def loss(batch: Batch) -> torch.Tensor:
        x = symbolic_inputs(emb, batch, tc.image_id, cell_index)
        h = lm(inputs_embeds=x, attention_mask=batch.attention_mask).last_hidden_state
        logits = head(h[:, :-1]).float()
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch.labels[:, 1:].reshape(-1), ignore_index=-100
        )

    return loss


def _image_features(model, batch: Batch) -> torch.Tensor:
    kw = {"pixel_values": batch.pixel_values}
    if batch.image_sizes is not None:
        kw["image_sizes"] = batch.image_sizes
    out = model.model.get_image_features(**kw)
    feats = getattr(out, "pooler_output", out)
    return torch.stack(list(feats)) if isinstance(feats, list | tuple) else feats


def align_stage_loss(model, family: str, n_img: int) -> Callable[[Batch], torch.Tensor]:
    """Stage 2 loss: mean squared error between each image feature and its cell's symbolic
    token (frozen decoder embeddings), over all features that show a cell (not newlines),
    divided by the targets' mean square (so 1.0 = predicting zero)."""
    emb = decoder_parts(model)[0].get_input_embeddings()
    cell_index = _feature_cells(family, n_img)
    keep = cell_index >= 0

    def loss(batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            target = symbolic_tokens(emb, batch.cells)[:, cell_index[keep]]
        feats = _image_features(model, batch)[:, keep]
        return ((feats - target) ** 2).mean() / (target**2).mean()

    return loss


def qa_stage_loss(model) -> Callable[[Batch], torch.Tensor]:
    """Stage 3 loss: the full model (pixels in) with cross-entropy on the answer tokens."""

    def loss(batch: Batch) -> torch.Tensor:
        kw = {}
        if batch.image_sizes is not None:
            kw["image_sizes"] = batch.image_sizes
        out = model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            pixel_values=batch.pixel_values,
            labels=batch.labels,
            **kw,
        )
        return out.loss

    return loss


def run_stage(
    name: str,
    params: Iterable[torch.nn.Parameter] | list[dict],
    loss_fn: Callable[[Batch], torch.Tensor],
    next_batch: Callable[[], Batch],
    spec: StageSpec,
    *,
    modules: Iterable[torch.nn.Module] = (),
    progress: bool = True,
    log_every: int = 100,
    on_log: Callable[[int, float], None] | None = None,
) -> StageLog:
    """AdamW with linear warm-up and cosine decay for ``spec.steps`` steps, clipping gradients.

    ``modules`` are put in train mode for the stage and back in eval mode after it.
    ``on_log(step, mean_loss)`` is called every ``log_every`` steps.
    """
    params = list(params)
    groups = params if params and isinstance(params[0], dict) else [{"params": params}]
    flat = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=spec.lr, weight_decay=spec.weight_decay, betas=(0.9, 0.98))
    base = [g.get("lr", spec.lr) for g in groups]

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, spec.warmup))
        cos = 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, spec.steps))))
        return warm * (spec.final_lr_frac + (1 - spec.final_lr_frac) * cos)

    modules = list(modules)
    for m in modules:
        m.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(spec.steps), desc=name, disable=not progress, mininterval=5)
    for step in bar:
        for g, b in zip(opt.param_groups, base, strict=True):
            g["lr"] = b * factor(step)
        loss = loss_fn(next_batch())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{name}: loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flat, spec.clip)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % log_every == 0:
            mean = sum(losses[-log_every:]) / log_every
            bar.set_postfix(loss=f"{mean:.3f}")
            if on_log is not None:
                on_log(step + 1, mean)
    for m in modules:
        m.eval()
    k = max(1, len(losses) // 10)
    return StageLog(
        name, spec.steps, time.perf_counter() - t0, sum(losses[:k]) / k, sum(losses[-k:]) / k
    )


@torch.no_grad()
def symbolic_accuracy(model, tc: TokenCache, samples, family: str = "llava") -> dict[str, float]:
    """Per-task accuracy of the decoder alone on symbolic scenes: the evaluation prompt with the
    image block replaced by cell tokens, argmax of the first answer token. Leaves eval mode."""
    from pidlib.data.minigqa.scenes import Scene

    lm, head = decoder_parts(model)
    lm.eval()
    head.eval()
    n_img = 9 if family == "llava" else 21
    seqs = [build_sequence(tc, [(s.question, s.answer)], n_img) for s in samples]
    cells = [tc.cells(Scene.from_dict(s.scene)) for s in samples]
    batch = collate(seqs, cells, tc.pad_id)
    x = symbolic_inputs(
        lm.get_input_embeddings(), batch, tc.image_id, _feature_cells(family, n_img)
    )
    h = lm(inputs_embeds=x, attention_mask=batch.attention_mask).last_hidden_state
    hits: dict[str, list[bool]] = {}
    for i, (ids, labels) in enumerate(seqs):
        first = next(k for k, lab in enumerate(labels) if lab != -100)
        pred = int(head(h[i, first - 1]).argmax())
        hits.setdefault(samples[i].task, []).append(pred == ids[first])
    return {t: sum(v) / len(v) for t, v in hits.items()}
