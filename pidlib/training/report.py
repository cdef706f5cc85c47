"""Writing the embedded models: weights, model cards, READMEs and the pilot log."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from pidlib.core.paths import REPO_ROOT
from pidlib.models.cards import accuracy_table, stage_minutes, stages_table, training_tables
from pidlib.models.checksums import file_checksums
from pidlib.models.families import check_family
from pidlib.models.loaded import LoadedModel
from pidlib.training.recipe import decoder_of

__all__ = [
    "save_embedded",
    "write_tables",
    "model_readme",
    "model_card",
    "pilot_log",
    "record_timing",
]


def write_tables(path: Path, names: Sequence[str], root: Path | None = None) -> Path:
    """Write :func:`training_tables` to ``path`` (for ``{include}`` in the book)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(training_tables(names, root))
    return path


def model_readme(card: dict) -> str:
    """A model directory's README.md: what the model is, how it was trained, how well it does."""
    r = card["recipe"]
    one = {card["name"]: card}
    lines = [
        f"# {card['name']}",
        "",
        card.get("description", ""),
        "",
        f"- Class: `{card['family']}` ({card['n_parameters']:,} parameters); decoder: Llama, "
        f"{r['layers']} layers, width {r['hidden']}, {r['heads']} heads; vision: CLIP, "
        f"{r['vision_layers']} layers, width {r['vision_hidden']}, {r['image_size']} px images "
        f"in {r['patch_size']} px patches; {card['image_tokens']} image tokens per image.",
        "- Tokenizer: word level (Mini-GQA vocabulary + cell words); processor: the real "
        "`LlavaProcessor` / `LlavaNextProcessor` around a Pil image processor.",
        "- Data: Mini-GQA " + json.dumps(r["data"], sort_keys=True),
        f"- Seeds: {json.dumps(card.get('seeds', {}), sort_keys=True)}",
        f"- Training: {card['train_minutes']} wall minutes on {card['torch_threads']} CPU "
        f"thread(s), stages below{_minutes(card)}",
        "- Retrain: `python -m pidlib.training --model " + card["name"] + "`; evaluate: "
        "`python -m pidlib.training --evaluate " + card["name"] + "`.",
        "",
        "## Held-out accuracy",
        "",
        accuracy_table(one),
        "",
        *_at_prior(card),
        "## Stages",
        "",
        stages_table(one),
        "",
        "Full recipe, versions and the pilot log: `model_card.json`.",
    ]
    return "\n".join(lines) + "\n"


def _at_prior(card: dict) -> list[str]:
    """The accuracy section on test questions at the QA stage's planted prior, if any."""
    ev = card.get("evaluation_at_prior")
    if not ev:
        return []
    one = {card["name"]: {**card, "evaluation": ev}}
    return [f"## Held-out accuracy at the training prior p = {ev['prior']}", "",
            accuracy_table(one), ""]  # fmt: skip


def _minutes(card: dict) -> str:
    """The decoder / per-model split of a card's training minutes (older cards lack it), and
    the re-timing on idle cores where one was recorded (:func:`record_timing`)."""
    m = card.get("minutes")
    if not m:
        return "; the decoder stages are shared with the other embedded model."
    text = (f": decoder {card.get('decoder', '?')} {m['decoder']} min (shared by every model "
            f"on that decoder), per-model stages {m['per_model']} min.")  # fmt: skip
    t = card.get("idle_timing")
    if t:
        label = {"per_model": "per-model stages", "decoder": f"decoder {card.get('decoder', '?')}"}
        parts = [f"{label[k]} {t[k]['minutes']} min on {t[k]['threads']} cores ({t[k]['date']}, "
                 f"commit {t[k]['commit'][:12]})" for k in label if k in t]  # fmt: skip
        text += f" Re-timed on otherwise idle cores: {'; '.join(parts)}: {t['how']}"
    return text


#: The provenance a re-timing records with each kind (from the benchmark run's ``env``).
TIMING_ENV: tuple[str, ...] = ("threads", "torch", "commit", "date")
#: What a re-timing measures (the card's weights come from the run its ``stages`` record).
RETIMING = (
    "every step of the recipe's stages run again (the model's own from its committed decoder "
    "weights, the decoder's from their seeded initialisation; nothing saved) by "
    "benchmarks/bench_training.py --fraction 1 --record."
)


def record_timing(path: str | os.PathLike, kind: str, row: Mapping[str, Any],
                  env: Mapping[str, Any]) -> dict:  # fmt: skip
    """Record a full re-timing of a committed model's training in its card (``idle_timing``) and
    rewrite its README; returns the card. ``kind`` is ``"per_model"`` (its align + QA stages) or
    ``"decoder"`` (its decoder's stages); ``row`` is a ``benchmarks/bench_training.py`` row
    (``steps``, ``full_steps``, ``minutes``, ``stages``) and ``env`` that run's ``threads``,
    ``torch``, ``commit`` and ``date``. Only a run of every step is recorded; the weights, their
    checksums and the ``stages`` of the training run are left as they are."""
    if kind not in ("per_model", "decoder"):
        raise ValueError(f"record_timing: kind must be 'per_model' or 'decoder', got {kind!r}")
    if list(row["steps"]) != list(row["full_steps"]):
        raise ValueError(
            f"record_timing: {row.get('what', kind)} ran {row['steps']} of {row['full_steps']} "
            "steps; only a full re-timing (--fraction 1, --decoder-fraction 1) is recorded"
        )
    missing = [k for k in TIMING_ENV if k not in env]
    if missing:
        raise ValueError(f"record_timing: the run's env lacks {missing}")
    card_path = Path(path) / "model_card.json"
    if not card_path.is_file():
        raise FileNotFoundError(f"no model card at {card_path}: train the model first")
    card = json.loads(card_path.read_text())
    timing = card.setdefault("idle_timing", {})
    timing["how"] = RETIMING
    timing[kind] = {"minutes": row["minutes"], "stages": list(row["stages"]),
                    **{k: env[k] for k in TIMING_ENV}}  # fmt: skip
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    (Path(path) / "README.md").write_text(model_readme(card))
    return card


def pilot_log() -> str | None:
    """The pilot log kept while the recipe was developed (``data/models/PILOTS.md``), if present."""
    path = REPO_ROOT / "data" / "models" / "PILOTS.md"
    return path.read_text() if path.is_file() else None


def model_card(recipe, logs, ev, n_img: int, pilots: str | None, at_prior=None) -> dict:
    """The ``model_card.json`` content of a trained model (a
    :class:`~pidlib.training.recipe.Recipe`, its :class:`~pidlib.training.stages.StageLog` list,
    its :class:`~pidlib.training.evaluate.Evaluation` and, for a QA stage at a planted prior,
    ``at_prior``: the evaluation on test questions at that prior)."""
    minutes = stage_minutes([asdict(g) for g in logs])
    card = {
        "description": (
            f"Tiny {recipe.family} model trained from scratch on Mini-GQA (3x3 grid, 48 px) "
            "with pidlib.training: shared symbolic decoder stages, vision alignment, QA "
            "fine-tuning."
        ),
        "recipe": recipe.to_dict(),
        "seeds": {
            "decoder_init_and_lm_data": recipe.lm_seed,
            "lm_focus_data": [recipe.lm_seed + 1 + i for i in range(len(recipe.lm_focus))],
            "model_init_and_align_data": recipe.seed,
            "qa_data": recipe.seed + 1,
            "lm_probe_val_questions": recipe.lm_seed,
            "test_questions": ev.seed,
        },
        "data_splits": "training scenes from the 'train' hash bucket only; evaluation on 'test'",
        "image_tokens": n_img,
        "stages": [asdict(g) for g in logs],
        "train_minutes": round(sum(g.seconds for g in logs) / 60, 2),
        "decoder": decoder_of(recipe),
        # the decoder stages are shared by every model on one decoder and trained once
        "minutes": {k: round(v, 2) for k, v in minutes.items()},
        "evaluation": ev.to_dict(),
        "torch_threads": torch.get_num_threads(),
    }
    if at_prior is not None:
        card["evaluation_at_prior"] = {"prior": recipe.qa_prior, **at_prior.to_dict()}
    if pilots:
        card["pilots_markdown"] = pilots
    return card


def save_embedded(
    model_or_loaded, path: str | os.PathLike, card: Mapping[str, Any], processor=None
) -> Path:
    """Save a model + processor (safetensors) with ``model_card.json`` and a README to ``path``.

    ``card`` holds what a reader needs (training data, seed, accuracy, licence ...); the family,
    parameter count, library versions and the sha256 of every saved file are added.
    :func:`load_model` reads it back and verifies the files against it.
    """
    import transformers

    if isinstance(model_or_loaded, LoadedModel):
        model, processor = model_or_loaded.model, processor or model_or_loaded.processor
    else:
        model = model_or_loaded
    if processor is None:
        raise ValueError("save_embedded: a processor is needed (pass a LoadedModel or processor=)")
    family = check_family(model.config.model_type)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    full = {
        "name": out.name,
        **dict(card),
        "family": family,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "decoder_layers": int(model.config.text_config.num_hidden_layers),
        "versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "sha256": file_checksums(out),
    }
    (out / "model_card.json").write_text(
        json.dumps(full, indent=2, sort_keys=True, default=str) + "\n"
    )
    lines = [
        f"# {full['name']}",
        "",
        str(full.get("description", "")),
        "",
        "| field | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {json.dumps(v, default=str)} |" for k, v in sorted(full.items())]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    return out
