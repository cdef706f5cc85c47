"""Markdown tables for the book's training page, read from the embedded models' model_card.json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from pidlib.models import models_dir
from pidlib.train_eval import CONDITIONS

__all__ = [
    "read_cards",
    "accuracy_table",
    "stages_table",
    "training_tables",
    "write_tables",
    "model_readme",
    "model_card",
    "pilot_log",
]


def read_cards(names: Sequence[str], root: Path | None = None) -> dict[str, dict]:
    """``{name: card}`` from ``<root>/<name>/model_card.json``; a clear error if one is missing."""
    root = models_dir() if root is None else Path(root)
    cards = {}
    for name in names:
        path = root / name / "model_card.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"no model card at {path}: train it with python -m pidlib.train"
            )
        cards[name] = json.loads(path.read_text())
    return cards


def accuracy_table(cards: dict[str, dict]) -> str:
    """One row per (task), columns: each model's accuracy with the image / blank / mismatched."""
    names = list(cards)
    stored = next(iter(cards.values()))["evaluation"]["accuracy"]
    conds = [c for c in CONDITIONS if c in stored] + [c for c in stored if c not in CONDITIONS]
    head = [f"{n} {c}" for n in names for c in conds]
    lines = ["| task | " + " | ".join(head) + " | chance |", "|---" * (len(head) + 2) + "|"]
    first = cards[names[0]]["evaluation"]
    for task, chance in first["chance"].items():
        cells = [f"{cards[n]['evaluation']['accuracy'][c][task]:.3f}" for n in names for c in conds]
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {chance:.3f} |")
    ev = {n: cards[n]["evaluation"] for n in names}
    lines.append("")
    lines.append(
        "Questions per task: "
        + ", ".join(
            f"{n}: {e['n_per_task']} ({e['split']} split, seed {e['seed']})" for n, e in ev.items()
        )
    )
    return "\n".join(lines)


def stages_table(cards: dict[str, dict]) -> str:
    """One row per (model, stage): steps, wall minutes, mean loss at the start and the end."""
    lines = [
        "| model | stage | steps | minutes | loss start | loss end |",
        "|---|---|---|---|---|---|",
    ]
    for name, card in cards.items():
        for st in card["stages"]:
            lines.append(
                f"| {name} | {st['name']} | {st['steps']} | {st['seconds'] / 60:.1f} | "
                f"{st['loss_start']:.3f} | {st['loss_end']:.3f} |"
            )
    return "\n".join(lines)


def training_tables(names: Sequence[str], root: Path | None = None) -> str:
    """The accuracy table, the stage table and the pilot log, as one Markdown document."""
    cards = read_cards(names, root)
    parts = [
        "### Held-out accuracy (greedy decoding, real prompt)",
        accuracy_table(cards),
        "### Training stages",
        stages_table(cards),
    ]
    pilots = next(
        (c.get("pilots_markdown") for c in cards.values() if c.get("pilots_markdown")), None
    )
    if pilots:
        parts += [
            "### Pilot log",
            pilots.split("\n", 1)[1].strip() if pilots.startswith("#") else pilots,
        ]
    return "\n\n".join(parts) + "\n"


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
        "thread(s), stages below; the decoder stages are shared with the other embedded model.",
        "- Retrain: `python -m pidlib.train --model " + card["name"] + "`; evaluate: "
        "`python -m pidlib.train --evaluate " + card["name"] + "`.",
        "",
        "## Held-out accuracy",
        "",
        accuracy_table(one),
        "",
        "## Stages",
        "",
        stages_table(one),
        "",
        "Full recipe, versions and the pilot log: `model_card.json`.",
    ]
    return "\n".join(lines) + "\n"


def pilot_log() -> str | None:
    """The pilot log kept while the recipe was developed (``data/models/PILOTS.md``), if present."""
    path = Path(__file__).resolve().parents[1] / "data" / "models" / "PILOTS.md"
    return path.read_text() if path.is_file() else None


def model_card(recipe, logs, ev, n_img: int, pilots: str | None) -> dict:
    """The ``model_card.json`` content of a trained model (a :class:`pidlib.train.Recipe`, its
    :class:`pidlib.train_stages.StageLog` list, its :class:`pidlib.train_eval.Evaluation`)."""
    card = {
        "description": (
            f"Tiny {recipe.family} model trained from scratch on Mini-GQA (3x3 grid, 48 px) "
            "with pidlib.train: shared symbolic decoder stages, vision alignment, QA fine-tuning."
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
        "evaluation": ev.to_dict(),
        "torch_threads": torch.get_num_threads(),
    }
    if pilots:
        card["pilots_markdown"] = pilots
    return card
