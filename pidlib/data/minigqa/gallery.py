"""Example questions per task, and a contact sheet of their images."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from pidlib.data.minigqa.questions import generate
from pidlib.data.minigqa.scenes import MiniGQAConfig
from pidlib.data.minigqa.verify import verify_all
from pidlib.data.tasks import TASKS, Sample

__all__ = ["gallery", "gallery_table", "contact_sheet"]


def gallery(
    n_per_task: int = 2, seed: int = 0, config: MiniGQAConfig | None = None
) -> list[Sample]:
    """A few verified examples of every task (``test`` split) for the book's example page."""
    samples = generate(TASKS, n_per_task, split="test", seed=seed, config=config)
    verify_all(samples)
    return samples


def contact_sheet(samples: Sequence[Sample], scale: int = 4, columns: int = 6) -> Image.Image:
    """Tile the samples' images (enlarged ``scale`` x, nearest neighbour) with Q / A captions."""
    from PIL import ImageDraw

    if not samples:
        raise ValueError("samples: nothing to show")
    side = samples[0].load_image().size[0] * scale
    width, cap = max(side, 300), 36
    rows = -(-len(samples) // columns)
    sheet = Image.new("RGB", (columns * width, rows * (side + cap)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, s in enumerate(samples):
        x, y = (k % columns) * width, (k // columns) * (side + cap)
        img = s.load_image()
        sheet.paste(img.resize((img.size[0] * scale, img.size[1] * scale), Image.NEAREST), (x, y))
        draw.text((x + 2, y + side + 2), s.question, fill="black")
        draw.text((x + 2, y + side + 18), f"-> {s.answer}  {s.options}", fill="blue")
    return sheet


def gallery_table(samples: Sequence[Sample]):
    """The samples as a table: task, question, options, answer (a pandas DataFrame)."""
    import pandas as pd

    return pd.DataFrame([{"task": s.task, "question": s.question, "options": " / ".join(s.options),
                          "answer": s.answer} for s in samples])  # fmt: skip
