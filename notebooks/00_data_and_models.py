# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Data and the embedded models
#
# The paper studies LLaVA-1.5-7B and LLaVA-1.6-7B on six GQA question types. Neither the weights
# nor GQA can be downloaded where this book is built by default. The default profile therefore
# runs on data and models that the project makes itself, through the same code path that loads
# the real ones:
#
# - **Mini-GQA** is a procedural, seeded generator of scenes with scene graphs. Each scene has
#   shapes with colour, size and material (solid or striped) on a 3×3 grid whose cells align
#   with the vision patches. It asks questions of the six GQA types, with GQA's structure and
#   answer sets, and derives each answer from the scene graph with a small functional program. An
#   independent verifier re-derives every answer. Answers are balanced, so no task has a
#   majority answer. A *language-prior knob* plants redundancy between the question and the
#   image on purpose; the Task Fingerprints chapter uses it.
# - **tiny-llava-1.5** and **tiny-llava-1.6** are `LlavaForConditionalGeneration` and
#   `LlavaNextForConditionalGeneration` models with a CLIP vision tower, an MLP projector and an
#   8-layer Llama decoder. They were trained from scratch on Mini-GQA's training split, and
#   [the training page](../../book/training.md) gives the recipe. They are asked through the
#   paper's prompt: image, question, then "Answer the question using a single word or phrase."

# %% tags=["parameters"]
profile = "cpu"
models = None  # a list of model names, or None for the profile value

# %%
import json

import pandas as pd
from IPython.display import Markdown, display

from pidlib import minigqa
from pidlib.models import KNOWN_MODELS, models_dir
from pidlib.profiles import load_profile

cfg = load_profile(profile, models=models)

# %% [markdown]
# ## Example questions, one row per task

# %%
examples = minigqa.gallery(n_per_task=3, seed=cfg.seed)
display(minigqa.contact_sheet(examples, scale=4, columns=6))
pd.DataFrame(
    [
        {
            "task": s.task,
            "question": s.question,
            "options": " / ".join(s.options),
            "answer": s.answer,
        }
        for s in examples
    ]  # fmt: skip
)

# %% [markdown]
# ## The embedded models
#
# Every number below is read from the model cards (`data/models/<name>/model_card.json`) that
# training wrote. Accuracy is measured on a fresh Mini-GQA split, with greedy decoding through
# the real prompt; its scenes never occur in training. The *blank image* and *mismatched image*
# columns test grounding. They give the accuracy with the image replaced by a blank one and by
# another scene's image. A model that answers from the image falls to the text-only level
# there.

# %%
cards = {}
for name in [m for m in cfg.models if m in KNOWN_MODELS and KNOWN_MODELS[m].local]:
    path = models_dir() / name / "model_card.json"
    cards[name] = json.loads(path.read_text())
if not cards:
    print(f"profile {cfg.name} uses no embedded model")

# %%
acc = pd.concat(
    {
        (name, cond): pd.Series(card["evaluation"]["accuracy"][cond])
        for name, card in cards.items()
        for cond in ("image", "blank", "mismatched")
    },
    axis=1,
)
acc[("chance", "")] = pd.Series(next(iter(cards.values()))["evaluation"]["chance"])
acc.style.format("{:.0%}")

# %%
target = 0.9
lines = []
for name, card in cards.items():
    image = pd.Series(card["evaluation"]["accuracy"]["image"])
    blank = pd.Series(card["evaluation"]["accuracy"]["blank"])
    below = image[image < target]
    lines.append(
        f"- **{name}** ({card['decoder_layers']} decoder layers, {card['n_parameters']:,} "
        f"parameters, {card['image_tokens']} image tokens, trained in "
        f"{card['train_minutes']:.0f} min): accuracy {image.min():.0%}–{image.max():.0%} "
        f"over tasks, and {blank.mean():.0%} on average with a blank image. "
        + (
            f"Below the {target:.0%} target: "
            + ", ".join(f"{t} ({a:.0%})" for t, a in below.items())
            + "."
            if len(below)
            else f"Every task reaches the {target:.0%} target."
        )
    )
Markdown("\n".join(lines)) if lines else None

# %% [markdown]
# ### Training stages
#
# The table gives each stage's steps, wall time and loss for each model. The recipe is on
# [the training page](../../book/training.md).

# %%
pd.DataFrame(
    [
        {
            "model": name,
            "stage": s["name"],
            "steps": s["steps"],
            "minutes": s["seconds"] / 60,
            "loss start": s["loss_start"],
            "loss end": s["loss_end"],
        }
        for name, card in cards.items()
        for s in card["stages"]
    ]  # fmt: skip
).round(3)

# %% [markdown]
# ### Pilots
#
# Every pilot run on the way to the recipe is recorded in the model card, copied here.

# %%
Markdown(next(iter(cards.values()))["pilots_markdown"]) if cards else None
