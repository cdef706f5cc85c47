"""Training data for the tiny LLaVA models: symbolic cell tokens, QA-turn sequences, batches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pidlib.data.minigqa.program import vocabulary
from pidlib.data.minigqa.questions import generate_scene_batch
from pidlib.data.minigqa.scenes import MiniGQAConfig, Scene
from pidlib.data.tasks import TASKS
from pidlib.models.families import ANSWER_INSTRUCTION

__all__ = [
    "ROW_WORDS",
    "COL_WORDS",
    "EXTRA_WORDS",
    "model_words",
    "cell_words",
    "aux_questions",
    "caption",
    "TokenCache",
    "Batch",
    "build_sequence",
    "collate",
    "ScenePool",
    "image_feature_cells",
]

#: Words naming a grid cell's row and column: the position part of a cell's symbolic token.
ROW_WORDS: tuple[str, ...] = ("top", "middle", "bottom")
COL_WORDS: tuple[str, ...] = ("left", "center", "right")
#: Words the models know beyond Mini-GQA's questions: an empty cell, positions, "shape".
EXTRA_WORDS: tuple[str, ...] = ("empty", "shape", *ROW_WORDS, *COL_WORDS)
#: Length of a cell's word list: shape, colour, size, material, row, column.
CELL_LEN = 6


def model_words(config: MiniGQAConfig) -> list[str]:
    """The tokenizer vocabulary of the embedded models: Mini-GQA's words + :data:`EXTRA_WORDS`."""
    return list(dict.fromkeys([*vocabulary(config), *EXTRA_WORDS]))


def _check_grid(scene: Scene) -> None:
    if scene.layout != "grid" or scene.grid_size != len(ROW_WORDS):
        raise ValueError(
            f"scene: symbolic cell tokens need the 3x3 grid layout, got {scene.layout!r} "
            f"with grid_size {scene.grid_size}"
        )


def cell_words(scene: Scene) -> list[list[str]]:
    """Per grid cell, in raster order: its object's (shape, colour, size, material) or
    ``["empty"]``, then its row and column words. 9 lists of 3 or 6 words."""
    _check_grid(scene)
    objs = {tuple(o.cell): o for o in scene.objects}
    out = []
    for r, row in enumerate(ROW_WORDS):
        for c, col in enumerate(COL_WORDS):
            o = objs.get((r, c))
            attrs = [o.shape, o.color, o.size, o.material] if o is not None else ["empty"]
            out.append([*attrs, row, col])
    return out


def aux_questions(scene: Scene) -> list[tuple[str, str]]:
    """Single-lookup questions ("what color is the star ?") with answers, for every object a
    question can name uniquely (by shape, or by colour for "what shape")."""
    objs = scene.objects
    shapes = Counter(o.shape for o in objs)
    colors = Counter(o.color for o in objs)
    out = []
    for o in objs:
        if shapes[o.shape] == 1:
            out += [(f"what {a} is the {o.shape} ?", getattr(o, a)) for a in _ATTR_NAMES]
        if colors[o.color] == 1:
            out.append((f"what shape is the {o.color} object ?", o.shape))
    return out


_ATTR_NAMES = ("color", "size", "material")


def caption(scene: Scene) -> str:
    """The scene as text, objects in raster order: "circle red small metal top left , ..."."""
    _check_grid(scene)
    objs = sorted(scene.objects, key=lambda o: tuple(o.cell))
    return " , ".join(
        f"{o.shape} {o.color} {o.size} {o.material} {ROW_WORDS[o.cell[0]]} {COL_WORDS[o.cell[1]]}"
        for o in objs
    )


#: The question whose answer is :func:`caption` (a dense grounding target, any stage).
CAPTION_QUESTION = "what is in the image ?"


class TokenCache:
    """Memoised word-level tokenisation (no ``<s>``) of prompt pieces, questions and answers."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[str, list[int]] = {}
        self.image_id = int(tokenizer.convert_tokens_to_ids("<image>"))
        self.bos_id = int(tokenizer.bos_token_id)
        self.eos_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id)

    def __call__(self, text: str) -> list[int]:
        """Token ids of ``text``; ``ValueError`` if a word is outside the vocabulary."""
        ids = self._cache.get(text)
        if ids is None:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if self.tokenizer.unk_token_id in ids:
                raise ValueError(f"text has words outside the vocabulary: {text!r}")
            self._cache[text] = ids
        return ids

    def cells(self, scene: Scene) -> list[list[int]]:
        """Token ids of :func:`cell_words` (9 lists)."""
        return [[self(w)[0] for w in ws] for ws in cell_words(scene)]


def build_sequence(
    tc: TokenCache,
    qas: Sequence[tuple[str, str]],
    n_image_tokens: int,
    *,
    instruction_every_turn: bool = False,
) -> tuple[list[int], list[int]]:
    """A multi-turn LLaVA conversation about one image: ``(input_ids, labels)``.

    Turn 1 is exactly the evaluation prompt (``USER: <image>×n {q} {instruction} ASSISTANT:``);
    later turns are ``USER: {q} ASSISTANT:`` (with the instruction if
    ``instruction_every_turn``). Every answer is followed by ``</s>``; labels are -100 except on
    answer tokens and their ``</s>``.
    """
    if not qas:
        raise ValueError("build_sequence: no question-answer turns")
    ids, labels = [tc.bos_id], [-100]
    for t, (q, a) in enumerate(qas):
        pre = tc("USER:") + ([tc.image_id] * n_image_tokens if t == 0 else []) + tc(q)
        if t == 0 or instruction_every_turn:
            pre = pre + tc(ANSWER_INSTRUCTION)
        pre = pre + tc("ASSISTANT:")
        ans = tc(a) + [tc.eos_id]
        ids += pre + ans
        labels += [-100] * len(pre) + ans
    return ids, labels


@dataclass(frozen=True, eq=False)
class Batch:
    """A right-padded training batch. ``input_ids``, ``labels``, ``attention_mask``: (B, T);
    ``cells``: (B, 9, 6) cell word ids (0 = padding); ``pixel_values``: (B, 3, H, W) or
    (B, crops, 3, H, W) or None; ``image_sizes``: (B, 2) or None."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor
    cells: torch.Tensor
    pixel_values: torch.Tensor | None = None
    image_sizes: torch.Tensor | None = None


def collate(
    seqs: Sequence[tuple[list[int], list[int]]],
    cells: Sequence[list[list[int]]],
    pad_id: int,
    pixel_values: torch.Tensor | None = None,
    image_sizes: torch.Tensor | None = None,
) -> Batch:
    """Right-pad sequences and cell word lists into a :class:`Batch`."""
    n, t = len(seqs), max(len(s) for s, _ in seqs)
    ids = torch.full((n, t), pad_id, dtype=torch.long)
    lab = torch.full((n, t), -100, dtype=torch.long)
    mask = torch.zeros((n, t), dtype=torch.long)
    cw = torch.zeros((n, 9, CELL_LEN), dtype=torch.long)
    for i, ((s, lb), c) in enumerate(zip(seqs, cells, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        lab[i, : len(lb)] = torch.tensor(lb)
        mask[i, : len(s)] = 1
        for j, ws in enumerate(c):
            cw[i, j, : len(ws)] = torch.tensor(ws)
    return Batch(ids, lab, mask, cw, pixel_values, image_sizes)


def image_feature_cells(family: str, n_features: int) -> torch.Tensor:
    """For each image feature of a 3x3-grid image, the cell (0..8) it shows, or -1 (newline).

    LLaVA: 9 features in raster order. LLaVA-NeXT with a 1x1 crop grid: the 9 base features,
    then 3 rows of (3 crop features + 1 newline): 21. Other layouts raise ``ValueError``.
    """
    base = list(range(9))
    if family == "llava" and n_features == 9:
        return torch.tensor(base)
    if family == "llava_next" and n_features == 21:
        grid = [c for r in range(3) for c in (3 * r, 3 * r + 1, 3 * r + 2, -1)]
        return torch.tensor(base + grid)
    raise ValueError(f"image_feature_cells: unsupported layout {family} with {n_features} features")


class ScenePool:
    """An endless, seeded supply of training scenes with QA turns and pre-processed pixels.

    ``aux_fraction`` of the turns are replaced by :func:`aux_questions`; ``with_caption`` adds
    a last turn asking for the :func:`caption`.

    Each refill draws ``chunk`` scenes over all tasks and ``int(focus_ratio * chunk)`` scenes
    with questions of the ``focus`` tasks only (one mix, or ``"per_task"``: an equal share of
    scenes per focus task, one task each), from the ``train`` split with seeds
    ``seed * 1000 + k``; images go through the processor's image processor once.
    """

    def __init__(
        self,
        config: MiniGQAConfig,
        seed: int,
        turns: int,
        image_processor=None,
        *,
        chunk: int = 1024,
        aux_fraction: float = 0.0,
        with_caption: bool = False,
        focus: Sequence[str] = ("ChooseRel", "CompareAttr", "QueryAttr"),
        focus_ratio: float = 1 / 3,
        focus_mode: str = "mixed",
    ) -> None:
        if turns < 1 or chunk < 1 or not 0.0 <= aux_fraction < 1.0:
            raise ValueError("ScenePool: need turns >= 1, chunk >= 1, 0 <= aux_fraction < 1")
        self.config, self.seed, self.turns = config, int(seed), int(turns)
        self.image_processor, self.chunk, self.aux = image_processor, int(chunk), aux_fraction
        self.with_caption = bool(with_caption)
        self.focus, self.focus_ratio = tuple(focus), float(focus_ratio)
        if focus_mode not in ("mixed", "per_task"):
            raise ValueError(f"ScenePool: focus_mode 'mixed' or 'per_task', not {focus_mode!r}")
        self.focus_mode = focus_mode
        self.rng = np.random.default_rng([self.seed, 7])
        self._k = 0
        self._items: list[tuple] = []

    def _refill(self) -> None:
        s0 = self.seed * 1000 + self._k
        self._k += 2
        n_focus = int(self.focus_ratio * self.chunk) if self.focus else 0
        made = generate_scene_batch(
            self.chunk, TASKS, self.turns, split="train", seed=s0, config=self.config
        )
        if n_focus and self.focus_mode == "mixed":
            made += generate_scene_batch(
                n_focus, self.focus, self.turns, split="train", seed=s0 + 1, config=self.config
            )
        elif n_focus:
            per = max(1, n_focus // len(self.focus))
            for k, task in enumerate(self.focus):
                made += generate_scene_batch(
                    per,
                    (task,),
                    self.turns,
                    split="train",
                    seed=s0 + 1 + 7919 * (k + 1),
                    config=self.config,
                )
        pix: list = [None] * len(made)
        sizes: list = [None] * len(made)
        if self.image_processor is not None:
            out = self.image_processor([im for _, im, _ in made], return_tensors="pt")
            pix = list(out["pixel_values"])
            if "image_sizes" in out:
                sizes = list(out["image_sizes"])
        order = self.rng.permutation(len(made))
        self._items = [(*made[i], pix[i], sizes[i]) for i in order]

    def take(self, n: int) -> list[tuple[Scene, list[tuple[str, str]], object, object]]:
        """``n`` items ``(scene, [(question, answer) ...], pixel_values, image_size)``."""
        out = []
        for _ in range(n):
            if not self._items:
                self._refill()
            scene, _, samples, pix, size = self._items.pop()
            qas = [(s.question, s.answer) for s in samples]
            if self.aux > 0:
                extra = aux_questions(scene)
                k = min(len(extra), int(round(self.aux * len(qas))))
                if k:
                    pick = self.rng.choice(len(extra), size=k, replace=False)
                    qas = qas[: len(qas) - k] + [extra[i] for i in pick]
                    qas = [qas[i] for i in self.rng.permutation(len(qas))]
            qas = qas[: self.turns]
            if self.with_caption:
                qas.append((CAPTION_QUESTION, caption(scene)))
            out.append((scene, qas, pix, size))
        return out
