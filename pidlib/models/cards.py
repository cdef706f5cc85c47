"""Reading the embedded models' model cards: accuracy and stage tables for the book."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pidlib.models.families import KNOWN_MODELS, models_dir
from pidlib.stats import wilson_interval

__all__ = [
    "CONDITIONS", "read_cards", "embedded_cards", "accuracy_table", "stages_table",
    "pilot_markdown", "training_tables", "card_summary", "training_facts", "grounding_facts",
    "retrain_table", "stage_minutes",
]  # fmt: skip

#: Image conditions of the held-out evaluation: the question's own image, a blank image, and
#: another scene's image (grounding controls).
CONDITIONS: tuple[str, ...] = ("image", "blank", "mismatched")


def stage_minutes(stages: Sequence[dict]) -> dict[str, float]:
    """Minutes of a card's ``stages`` (dicts with ``name`` and ``seconds``): ``decoder`` (the
    ``lm`` stages, shared by every model on one decoder) and ``per_model`` (the rest)."""
    decoder = sum(s["seconds"] for s in stages if s["name"].startswith("lm"))
    rest = sum(s["seconds"] for s in stages if not s["name"].startswith("lm"))
    return {"decoder": decoder / 60, "per_model": rest / 60}


def read_cards(names: Sequence[str], root: Path | None = None) -> dict[str, dict]:
    """``{name: card}`` from ``<root>/<name>/model_card.json``; a clear error if one is missing."""
    root = models_dir() if root is None else Path(root)
    cards = {}
    for name in names:
        path = root / name / "model_card.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"no model card at {path}: train it with python -m pidlib.training"
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
    pilots = pilot_markdown(cards)
    if pilots:
        parts += ["### Pilot log", pilots]
    return "\n\n".join(parts) + "\n"


def embedded_cards(names: Sequence[str]) -> dict[str, dict]:
    """The cards of those of ``names`` that are embedded (locally trained) models; the random
    dry-run models are local but were never trained, so they have none."""
    from pidlib.models.dryrun import is_dryrun

    local = [n for n in names if n in KNOWN_MODELS and KNOWN_MODELS[n].local and not is_dryrun(n)]
    return read_cards(local)


def pilot_markdown(cards: dict[str, dict]) -> str | None:
    """The pilot log the cards carry (without its title), or ``None``."""
    pilots = next(
        (c.get("pilots_markdown") for c in cards.values() if c.get("pilots_markdown")), None
    )
    if not pilots:
        return None
    return pilots.split("\n", 1)[1].strip() if pilots.startswith("#") else pilots


def card_summary(cards: dict[str, dict], target: float = 0.9) -> str:
    """One Markdown bullet per model: size, training time, accuracy range, blank-image accuracy,
    and the tasks below ``target``."""
    lines = []
    for name, card in cards.items():
        image = card["evaluation"]["accuracy"]["image"]
        blank = card["evaluation"]["accuracy"]["blank"]
        below = {t: a for t, a in image.items() if a < target}
        listed = ", ".join(f"{t} ({a:.0%})" for t, a in below.items())
        verdict = (f"Below the {target:.0%} target: {listed}." if below
                   else f"Every task reaches the {target:.0%} target.")  # fmt: skip
        lines.append(
            f"- **{name}** ({card['decoder_layers']} decoder layers, {card['n_parameters']:,} "
            f"parameters, {card['image_tokens']} image tokens, trained in "
            f"{card['train_minutes']:.0f} min): accuracy {min(image.values()):.0%}–"
            f"{max(image.values()):.0%} over tasks, and {sum(blank.values()) / len(blank):.0%} on "
            f"average with a blank image. {verdict}"
        )
    return "\n".join(lines)


def training_facts(cards: dict[str, dict]) -> dict:
    """The numbers the training page quotes, computed from the cards: per model ``minutes``
    (total), ``decoder_minutes`` (the shared stages), ``own_minutes`` (its align + qa stages),
    ``image_tokens``, ``compare_attr`` (CompareAttr accuracy); shared: ``decoder_steps``,
    ``both_minutes`` (the shared decoder once plus each model's own stages), and the recipe of the
    first model (``recipe``)."""
    per = {}
    for name, card in cards.items():
        minutes = stage_minutes(card["stages"])
        per[name] = {
            "minutes": card["train_minutes"],
            "decoder_minutes": minutes["decoder"],
            "own_minutes": minutes["per_model"],
            "decoder_steps": sum(s["steps"] for s in card["stages"] if s["name"].startswith("lm")),
            "image_tokens": card["image_tokens"],
            "compare_attr": card["evaluation"]["accuracy"]["image"].get("CompareAttr"),
            "threads": card.get("torch_threads"),
        }
    first = next(iter(per.values()))
    return {
        "models": per,
        "decoder_steps": first["decoder_steps"],
        "decoder_minutes": first["decoder_minutes"],
        "both_minutes": first["decoder_minutes"] + sum(m["own_minutes"] for m in per.values()),
        "recipe": next(iter(cards.values()))["recipe"],
    }


def grounding_facts(cards: dict[str, dict]) -> dict:
    """What the held-out evaluation says about grounding, per model (accuracies as fractions):
    ``image_min`` and its task ``weakest``, with its 95% Wilson interval ``image_min_ci``,
    ``image_mean``, ``blank_mean``, ``mismatched_mean``,
    ``chance_mean`` (means over tasks), ``n_per_task`` (questions per task) and ``tasks``."""
    out = {}
    for name, card in cards.items():
        ev = card["evaluation"]
        acc, chance = ev["accuracy"], ev["chance"]
        tasks = sorted(acc["image"])
        weakest = min(tasks, key=lambda t: acc["image"][t])
        out[name] = {
            "image_min": acc["image"][weakest],
            "image_min_ci": wilson_interval(
                round(acc["image"][weakest] * ev["n_per_task"]), ev["n_per_task"]
            ),
            "weakest": weakest,
            "image_mean": sum(acc["image"].values()) / len(tasks),
            "blank_mean": sum(acc["blank"].values()) / len(tasks),
            "mismatched_mean": sum(acc["mismatched"].values()) / len(tasks),
            "chance_mean": sum(chance[t] for t in tasks) / len(tasks),
            "n_per_task": ev["n_per_task"],
            "tasks": len(tasks),
        }
    return out


def retrain_table(cards: dict[str, dict]):
    """One row per model: its decoder, QA prior, the minutes of its own stages and of its
    decoder's (shared by every model on it) and how they were timed (``idle_timing``, a full
    re-timing on otherwise idle cores, where the card has one; else the training run, on the
    threads it had), and its held-out accuracy: the mean over tasks and the weakest task with
    its own image, and the mean with a blank and with a mismatched image. (Each model's README
    has the full table per task and condition.)"""
    import pandas as pd

    rows = []
    for name, card in cards.items():
        facts = training_facts({name: card})["models"][name]
        acc = card["evaluation"]["accuracy"]
        weakest = min(acc["image"], key=acc["image"].get)
        mean = {c: sum(v.values()) / len(v) for c, v in acc.items()}
        idle = card.get("idle_timing", {})
        own = idle.get("per_model", {}).get("minutes", facts["own_minutes"])
        dec = idle.get("decoder", {}).get("minutes", facts["decoder_minutes"])
        timed = {
            k: f"{idle[k]['threads']} idle cores"
            if k in idle
            else f"{facts['threads']} thread(s), as trained"
            for k in ("per_model", "decoder")
        }
        rows.append({
            "model": name, "decoder": card.get("decoder", "A"),
            "QA prior": card["recipe"].get("qa_prior", 0.0),
            "own min": round(own, 1), "own timed on": timed["per_model"],
            "decoder min": round(dec, 1), "decoder timed on": timed["decoder"],
            "image": round(mean["image"], 3),
            "weakest task": f"{weakest} {acc['image'][weakest]:.2f}",
            "blank": round(mean["blank"], 3), "mismatched": round(mean["mismatched"], 3),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("model")
