"""Mini-GQA scene graphs: the validated config and seeded sampling (images: :mod:`.render`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "SHAPES",
    "PLURALS",
    "COLORS",
    "RGB",
    "SIZES",
    "MATERIALS",
    "TYPICAL_COLOR",
    "SPLITS",
    "MiniGQAConfig",
    "SceneObject",
    "Scene",
    "make_scene",
    "scene_split",
    "scene_in_split",
]

#: Object categories (GQA "name"), and their plurals as used in LogicalObj questions.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")
PLURALS: dict[str, str] = {s: ("crosses" if s == "cross" else s + "s") for s in SHAPES}
#: Colours (GQA "color") and the RGB they are painted with.
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
RGB: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (30, 175, 60),
    "blue": (45, 95, 235),
    "yellow": (245, 220, 30),
    "purple": (155, 55, 210),
    "orange": (250, 135, 20),
}
SIZES: tuple[str, ...] = ("small", "large")
#: Materials are drawn as textures: "metal" a solid fill, "rubber" horizontal stripes.
MATERIALS: tuple[str, ...] = ("metal", "rubber")
#: The language prior: each shape's typical colour (one-to-one, so colour also predicts shape).
TYPICAL_COLOR: dict[str, str] = {
    "circle": "red",
    "square": "blue",
    "triangle": "green",
    "star": "yellow",
    "diamond": "purple",
    "cross": "orange",
}
#: Splits partition the space of scenes by a hash of their content (percent buckets), so that
#: no scene (image) is ever shared between two splits, whatever the seeds.
SPLITS: dict[str, tuple[int, int]] = {
    "train": (0, 70),
    "val": (70, 80),
    "test": (80, 90),
    "fresh": (90, 100),
}
BACKGROUND = (60, 60, 60)
_RADIUS = {"small": 0.27, "large": 0.45}  # object radius as a fraction of cell_px


@dataclass(frozen=True)
class MiniGQAConfig:
    """Every knob of Mini-GQA; validated on construction (a ``ValueError`` names the field).

    ``layout="grid"``: a ``grid_size`` x ``grid_size`` grid of ``cell_px`` cells, one object per
    cell drawn inside it (cells align with ``cell_px`` vision patches). ``layout="free"``: objects
    placed at random without overlap on an ``image_px`` square image (default
    ``grid_size * cell_px``); ``cell_px`` then sets the object scale. ``prior`` in [0, 1] is the
    probability that an object takes its shape's :data:`TYPICAL_COLOR` rather than a uniform one.
    ``choose_attr_mix`` weighs the (color, size, material) questions of ChooseAttr.
    ``side_margin`` / ``rel_margin`` (fractions of the image width) are the horizontal distances
    from the centre (QueryAttr) and between two objects (ChooseRel) below which left/right is
    not asked (free layout). On the grid, left/right is decided by columns: the middle column
    of an odd grid is on neither side, and objects in one column are not compared.
    """

    layout: str = "grid"
    grid_size: int = 3
    cell_px: int = 16
    image_px: int | None = None
    min_objects: int = 2
    max_objects: int = 4
    shapes: tuple[str, ...] = SHAPES
    colors: tuple[str, ...] = COLORS
    prior: float = 0.0
    choose_attr_mix: tuple[float, float, float] = (0.7, 0.15, 0.15)
    side_margin: float = 0.1
    rel_margin: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "shapes", tuple(self.shapes))
        object.__setattr__(self, "colors", tuple(self.colors))
        object.__setattr__(self, "choose_attr_mix", tuple(float(w) for w in self.choose_attr_mix))
        if self.layout not in ("grid", "free"):
            raise ValueError(f"layout: expected 'grid' or 'free', got {self.layout!r}")
        for name, lo in (("grid_size", 2), ("cell_px", 8), ("min_objects", 1), ("max_objects", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"{name}: expected an integer >= {lo}, got {value!r}")
        if self.grid_size > 16:
            raise ValueError(f"grid_size: at most 16, got {self.grid_size}")
        if self.image_px is not None:
            if isinstance(self.image_px, bool) or not isinstance(self.image_px, int):
                raise ValueError(f"image_px: expected an integer or None, got {self.image_px!r}")
            if self.layout == "grid" and self.image_px != self.grid_size * self.cell_px:
                raise ValueError(
                    f"image_px: on the grid it must equal grid_size * cell_px = "
                    f"{self.grid_size * self.cell_px}, got {self.image_px}"
                )
            if self.image_px < self.cell_px:
                raise ValueError(f"image_px: must be >= cell_px ({self.cell_px})")
        if self.min_objects > self.max_objects:
            raise ValueError(
                f"min_objects: {self.min_objects} exceeds max_objects {self.max_objects}"
            )
        capacity = self.grid_size**2 if self.layout == "grid" else (self.size // self.cell_px) ** 2
        if self.max_objects > capacity:
            raise ValueError(f"max_objects: at most {capacity} objects fit, got {self.max_objects}")
        for name, vocab in (("shapes", SHAPES), ("colors", COLORS)):
            values = getattr(self, name)
            unknown = [v for v in values if v not in vocab]
            if unknown or len(set(values)) != len(values) or len(values) < 2:
                raise ValueError(f"{name}: need >= 2 distinct values from {vocab}, got {values!r}")
        if not 0.0 <= float(self.prior) <= 1.0:
            raise ValueError(f"prior: expected a probability in [0, 1], got {self.prior!r}")
        if self.prior > 0:
            missing = [s for s in self.shapes if TYPICAL_COLOR[s] not in self.colors]
            if missing:
                raise ValueError(
                    f"colors: with prior > 0 the typical colours of {missing} must be in colors"
                )
        mix = self.choose_attr_mix
        if len(mix) != 3 or min(mix) < 0 or sum(mix) <= 0 or not np.isfinite(mix).all():
            raise ValueError(
                f"choose_attr_mix: expected 3 non-negative weights (color, size, material) "
                f"with a positive sum, got {mix!r}"
            )
        for name in ("side_margin", "rel_margin"):
            value = getattr(self, name)
            if not 0.0 <= value < 0.5:
                raise ValueError(f"{name}: expected a fraction in [0, 0.5), got {value!r}")

    @property
    def size(self) -> int:
        """The image side in pixels."""
        return self.image_px if self.image_px is not None else self.grid_size * self.cell_px

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the knobs (``MiniGQAConfig(**d)`` rebuilds it)."""
        return dict(_config_dict(self))

    def fingerprint(self) -> str:
        """An 8-hex-digit digest of the knobs (stable across runs and machines)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


@lru_cache(maxsize=32)
def _config_dict(config: MiniGQAConfig) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


@dataclass(frozen=True)
class SceneObject:
    """One object: attributes, centre ``(x, y)`` and ``radius`` as fractions of the image side.

    ``cell`` is ``(row, col)`` on the grid layout, ``None`` on the free layout.
    """

    shape: str
    color: str
    size: str
    material: str
    x: float
    y: float
    radius: float
    cell: tuple[int, int] | None = None

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Bounding box ``(x0, y0, x1, y1)`` as fractions of the image side."""
        return (
            self.x - self.radius,
            self.y - self.radius,
            self.x + self.radius,
            self.y + self.radius,
        )


@dataclass(frozen=True)
class Scene:
    """A scene graph: the objects of one image (positions are the only relations needed)."""

    objects: tuple[SceneObject, ...]
    layout: str
    grid_size: int

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict (the ``Sample.scene`` of every question)."""
        objs = [
            {
                "id": i,
                "shape": o.shape,
                "color": o.color,
                "size": o.size,
                "material": o.material,
                "x": o.x,
                "y": o.y,
                "radius": o.radius,
                "cell": list(o.cell) if o.cell is not None else None,
            }
            for i, o in enumerate(self.objects)
        ]
        return {"layout": self.layout, "grid_size": self.grid_size, "objects": objs}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scene:
        """Rebuild a scene from :meth:`to_dict` output."""
        objs = tuple(
            SceneObject(
                **{k: v for k, v in o.items() if k not in ("id", "cell")},
                cell=tuple(o["cell"]) if o.get("cell") is not None else None,
            )
            for o in d["objects"]
        )
        return cls(objects=objs, layout=d["layout"], grid_size=d["grid_size"])

    def content_hash(self) -> str:
        """A hex digest of the objects and their positions (the scene's identity)."""
        return _digest(
            f"{o.shape},{o.color},{o.size},{o.material},{_place(o.x, o.y, o.radius)}"
            for o in sorted(self.objects, key=lambda o: (o.y, o.x))
        )


def _place(x: float, y: float, radius: float) -> str:
    """An object's position and radius as :meth:`Scene.content_hash` writes them."""
    return f"{x:.4f},{y:.4f},{radius:.4f}"


def _digest(objects: Iterable[str]) -> str:
    """The content hash of a scene's objects, each written as :meth:`Scene.content_hash` writes
    it, in its order (by ``(y, x)``)."""
    return hashlib.blake2b(";".join(objects).encode(), digest_size=8).hexdigest()


def _split_of(digest: str) -> str:
    bucket = int(digest, 16) % 100
    for name, (lo, hi) in SPLITS.items():
        if lo <= bucket < hi:
            return name
    raise AssertionError("unreachable: SPLITS cover 0..99")  # pragma: no cover


def scene_split(scene: Scene) -> str:
    """The split a scene belongs to, from its content hash (see :data:`SPLITS`)."""
    return _split_of(scene.content_hash())


def scene_in_split(rng: np.random.Generator, config: MiniGQAConfig, split: str) -> Scene | None:
    """:func:`make_scene` ``(rng, config)`` if the scene is in ``split``, else None: the same
    draws from ``rng`` either way. Most scenes of a split are rejected (it holds 10-70% of
    them), so on the grid a scene is hashed from its attributes and cells before any object is
    built (half the time of a generator's loop)."""
    if config.layout != "grid":
        scene = make_scene(rng, config)
        return scene if scene_split(scene) == split else None
    cells, attrs = _grid_draw(rng, config)
    places = _grid_places(config.grid_size)
    key = (
        f"{shape},{color},{size},{material},{places[k][size]}"  # cells in (y, x) order
        for k, (shape, color, size, material) in zip(cells, attrs, strict=True)
    )
    if _split_of(_digest(key)) != split:
        return None
    return _grid_scene(cells, attrs, config.grid_size)


def _attributes(rng: np.random.Generator, config: MiniGQAConfig, n: int) -> list[tuple]:
    """(shape, color, size, material) of ``n`` objects from one draw of ``rng``."""
    u = rng.random((n, 5))
    out = []
    for u_shape, u_prior, u_color, u_size, u_material in u.tolist():
        shape = config.shapes[int(u_shape * len(config.shapes))]
        if u_prior < config.prior:
            color = TYPICAL_COLOR[shape]
        else:
            color = config.colors[int(u_color * len(config.colors))]
        out.append((shape, color, SIZES[u_size < 0.5], MATERIALS[u_material < 0.5]))
    return out


def _grid_draw(rng: np.random.Generator, config: MiniGQAConfig) -> tuple[list[int], list[tuple]]:
    """A grid scene's cells (row-major indices, ascending) and its objects' attributes."""
    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    u = rng.random(config.grid_size**2).tolist()
    cells = sorted(sorted(range(len(u)), key=u.__getitem__)[:n])  # a uniform n-subset
    return cells, _attributes(rng, config, n)


@lru_cache(maxsize=16)
def _grid_geometry(g: int) -> tuple[tuple[tuple[int, int], float, float], ...]:
    """Per cell of a ``g`` x ``g`` grid: ``(row, col)`` and its centre ``(x, y)``."""
    return tuple(((k // g, k % g), (k % g + 0.5) / g, (k // g + 0.5) / g) for k in range(g * g))


@lru_cache(maxsize=16)
def _grid_places(g: int) -> tuple[dict[str, str], ...]:
    """Per cell of a ``g`` x ``g`` grid, per size: :func:`_place` of an object there."""
    return tuple({size: _place(x, y, _RADIUS[size] / g) for size in SIZES}
                 for _, x, y in _grid_geometry(g))  # fmt: skip


def _grid_scene(cells: list[int], attrs: list[tuple], g: int) -> Scene:
    geometry = _grid_geometry(g)
    objects = []
    for k, (shape, color, size, material) in zip(cells, attrs, strict=True):
        cell, x, y = geometry[k]
        objects.append(SceneObject(shape, color, size, material, x, y, _RADIUS[size] / g, cell))
    return Scene(tuple(objects), "grid", g)


def make_scene(rng: np.random.Generator, config: MiniGQAConfig) -> Scene:
    """Sample a scene of ``min_objects..max_objects`` objects with ``rng`` (seeded numpy)."""
    if config.layout == "grid":
        return _grid_scene(*_grid_draw(rng, config), config.grid_size)
    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    side = config.size
    objects = []
    for _attempt in range(100):
        objects = []
        for shape, color, size, material in _attributes(rng, config, n):
            r = _RADIUS[size] * config.cell_px / side
            pad = r + 1.0 / side
            for _try in range(50):
                x, y = rng.uniform(pad, 1 - pad, size=2)
                if all(
                    (x - o.x) ** 2 + (y - o.y) ** 2 >= (r + o.radius + 1.0 / side) ** 2
                    for o in objects
                ):
                    objects.append(SceneObject(shape, color, size, material, float(x), float(y), r))
                    break
            else:
                break
        if len(objects) == n:
            return Scene(tuple(objects), "free", config.grid_size)
    raise ValueError(
        f"image_px: could not place {n} objects without overlap on a {side}px image "
        f"(cell_px {config.cell_px}); enlarge the image or lower max_objects"
    )
