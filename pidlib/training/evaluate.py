"""Held-out evaluation of the tiny LLaVA models: per-task accuracy with own, blank, other images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from pidlib.data.minigqa.questions import generate
from pidlib.data.minigqa.scenes import BACKGROUND, MiniGQAConfig
from pidlib.data.tasks import TASKS, Sample
from pidlib.models.answers import correct_mask, greedy_answers
from pidlib.models.cards import CONDITIONS

__all__ = ["Evaluation", "chance_level", "swap_images", "evaluate", "format_table"]


@dataclass(frozen=True)
class Evaluation:
    """Per-task accuracy (fraction correct, greedy decoding) under each image condition.

    ``accuracy[condition][task]``; ``n_per_task`` questions per task from the ``split`` split
    generated with ``seed``; ``chance[task]`` = 1 / number of answer options (the text-only
    level on these answer-balanced questions).
    """

    accuracy: dict[str, dict[str, float]]
    chance: dict[str, float]
    n_per_task: int
    split: str
    seed: int

    def to_dict(self) -> dict:
        """A JSON-serialisable dict."""
        return {
            "accuracy": self.accuracy,
            "chance": self.chance,
            "n_per_task": self.n_per_task,
            "split": self.split,
            "seed": self.seed,
        }


def chance_level(samples: Sequence[Sample]) -> dict[str, float]:
    """Per task, the mean of 1 / len(options): the accuracy of guessing without the image."""
    out: dict[str, list[float]] = {}
    for s in samples:
        out.setdefault(s.task, []).append(1.0 / len(s.options))
    return {t: float(np.mean(v)) for t, v in out.items()}


def swap_images(samples: Sequence[Sample], condition: str) -> list[Sample]:
    """The samples with their image replaced: ``"blank"`` (background colour only) or
    ``"mismatched"`` (the image of the sample half the list away, always another scene).
    ``"image"`` returns them unchanged."""
    samples = list(samples)
    if condition == "image":
        return samples
    if condition == "blank":
        out = []
        for s in samples:
            size = s.load_image().size
            out.append(replace(s, image=Image.new("RGB", size, BACKGROUND), image_id="blank"))
        return out
    if condition == "mismatched":
        n = len(samples)
        if n < 2:
            raise ValueError("swap_images: mismatched images need at least two samples")
        out = []
        for i, s in enumerate(samples):
            j = (i + n // 2) % n
            while samples[j].image_id == s.image_id:
                j = (j + 1) % n
                if j == i:
                    raise ValueError("swap_images: all samples share one image")
            out.append(replace(s, image=samples[j].load_image(), image_id=samples[j].image_id))
        return out
    raise ValueError(f"condition: expected one of {CONDITIONS}, got {condition!r}")


def evaluate(
    loaded,
    *,
    n_per_task: int = 200,
    seed: int = 2026,
    split: str = "test",
    config: MiniGQAConfig | None = None,
    conditions: Sequence[str] = CONDITIONS,
    tasks: Sequence[str] = TASKS,
    batch_size: int = 64,
) -> Evaluation:
    """Accuracy of ``loaded`` (a :class:`~pidlib.models.loaded.LoadedModel`) on fresh Mini-GQA
    questions, through the real prompt and greedy decoding, under each image condition."""
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad:
        raise ValueError(f"conditions: unknown {bad}; expected some of {CONDITIONS}")
    samples = generate(list(tasks), n_per_task, split=split, seed=seed, config=config)
    acc: dict[str, dict[str, float]] = {}
    for cond in conditions:
        shown = swap_images(samples, cond)
        answers = greedy_answers(loaded, shown, batch_size=batch_size, max_new_tokens=3)
        ok = correct_mask(answers, samples)
        acc[cond] = {
            t: float(np.mean([k for k, s in zip(ok, samples, strict=True) if s.task == t]))
            for t in tasks
        }
    return Evaluation(acc, chance_level(samples), n_per_task, split, seed)


def format_table(ev: Evaluation) -> str:
    """A Markdown table: one row per task, one column per condition, plus chance."""
    conds = list(ev.accuracy)
    lines = ["| task | " + " | ".join(conds) + " | chance |", "|---" * (len(conds) + 2) + "|"]
    for t in ev.chance:
        cells = [f"{ev.accuracy[c][t]:.3f}" for c in conds]
        lines.append(f"| {t} | " + " | ".join(cells) + f" | {ev.chance[t]:.3f} |")
    means = [f"{np.mean(list(ev.accuracy[c].values())):.3f}" for c in conds]
    lines.append("| mean | " + " | ".join(means) + f" | {np.mean(list(ev.chance.values())):.3f} |")
    return "\n".join(lines)
