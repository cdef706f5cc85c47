"""Mini-GQA images: a scene graph drawn deterministically (supersampled, then downscaled)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from pidlib.data.minigqa.scenes import BACKGROUND, RGB, MiniGQAConfig, Scene

__all__ = ["render"]

_SUPERSAMPLE = 4


def _outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Polygon vertices of ``shape`` centred at ``(cx, cy)`` with radius ``r`` (None: ellipse)."""
    if shape == "circle":
        return None
    if shape == "square":
        pts = [(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)]
    elif shape == "triangle":
        pts = [(0.0, -1.0), (1.0, 0.8), (-1.0, 0.8)]
    elif shape == "diamond":
        pts = [(0.0, -1.0), (0.72, 0.0), (0.0, 1.0), (-0.72, 0.0)]
    elif shape == "cross":
        a = 0.34
        pts = [
            (-a, -1),
            (a, -1),
            (a, -a),
            (1, -a),
            (1, a),
            (a, a),
            (a, 1),
            (-a, 1),
            (-a, a),
            (-1, a),
            (-1, -a),
            (-a, -a),
        ]
    elif shape == "star":
        ang = -np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = list(
            zip((rad * np.cos(ang)).tolist(), (rad * np.sin(ang) + 0.1).tolist(), strict=True)
        )
    else:
        raise ValueError(f"shape: unknown shape {shape!r}")
    return [(cx + r * px, cy + r * py) for px, py in pts]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill):
    pts = _outline(shape, cx, cy, r)
    if pts is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(pts, fill=fill)


@lru_cache(maxsize=64)
def _stripes(side: int, color: str, half_period: int) -> Image.Image:
    """A ``side`` x ``side`` RGB image of horizontal stripes: the colour and a pale tint of it."""
    base = np.array(RGB[color], dtype=np.float64)
    tint = base + 0.6 * (255 - base)
    rows = (np.arange(side) // half_period) % 2 == 0
    arr = np.where(rows[:, None, None], base, tint) * np.ones((side, side, 1))
    return Image.fromarray(np.round(arr).astype(np.uint8), "RGB")


def render(scene: Scene, config: MiniGQAConfig) -> Image.Image:
    """Draw ``scene`` as an RGB image of ``config.size`` pixels (deterministic, anti-aliased)."""
    k = _SUPERSAMPLE
    side = config.size * k
    canvas = Image.new("RGB", (side, side), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    half_period = k * max(1, round(config.cell_px / 8))
    for o in scene.objects:
        cx, cy, r = o.x * side, o.y * side, o.radius * side
        if o.material == "metal":
            _draw_shape(draw, o.shape, cx, cy, r, RGB[o.color])
            continue
        box = (int(cx - r) - 1, int(cy - r) - 1, int(cx + r) + 2, int(cy + r) + 2)
        mask = Image.new("L", (box[2] - box[0], box[3] - box[1]), 0)
        _draw_shape(ImageDraw.Draw(mask), o.shape, cx - box[0], cy - box[1], r, 255)
        canvas.paste(_stripes(side, o.color, half_period).crop(box), box, mask)
    return canvas.resize((config.size, config.size), Image.Resampling.BOX)
