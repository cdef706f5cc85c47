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
# **The question.** What does this book measure, and do the models it measures answer from the
# image? The paper studies LLaVA-1.5-7B and LLaVA-1.6-7B on six GQA question types. Neither the
# weights nor GQA can be downloaded where this book is built by default, so a PID of the
# default build is only meaningful if its stand-ins ask the same kinds of questions and really
# use the image.
#
# **Method in brief.** The default profile runs on data and models that the project makes
# itself, through the same code path that loads the real ones:
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
#   [the training page](98_training.ipynb) gives the recipe. They are asked through the
#   paper's prompt: image, question, then "Answer the question using a single word or phrase."

# %% tags=["parameters"]
profile = "cpu"
models = None  # a list of model names, or None for the profile value

# %%
from IPython.display import Markdown, display

from pidlib.config.profiles import load_profile
from pidlib.data.minigqa.gallery import contact_sheet, gallery, gallery_table
from pidlib.models.cards import (
    accuracy_table,
    card_summary,
    embedded_cards,
    grounding_facts,
    pilot_markdown,
    stages_table,
)

cfg = load_profile(profile, models=models)
cards = embedded_cards(cfg.models)

# %% [markdown]
# ## Results
#
# ### Example questions, one row per task

# %%
examples = gallery(n_per_task=3, seed=cfg.seed)
display(contact_sheet(examples, scale=4, columns=6))
gallery_table(examples)

# %% [markdown]
# ### The embedded models
#
# Every number below is read from the model cards (`data/models/<name>/model_card.json`) that
# training wrote. Accuracy is measured on a fresh Mini-GQA split, with greedy decoding through
# the real prompt; its scenes never occur in training. The *blank image* and *mismatched image*
# columns test grounding. They give the accuracy with the image replaced by a blank one and by
# another scene's image. A model that answers from the image falls to the text-only level
# there.

# %%
Markdown(accuracy_table(cards) if cards else f"Profile {cfg.name} uses no embedded model.")

# %%
Markdown(card_summary(cards, target=0.9)) if cards else None

# %% [markdown]
# ### Training stages
#
# The table gives each stage's steps, wall time and loss for each model. The recipe is on
# [the training page](98_training.ipynb).

# %%
Markdown(stages_table(cards)) if cards else None

# %% [markdown]
# ### Pilots
#
# Every pilot run on the way to the recipe is recorded in the model card, copied here.

# %%
Markdown(pilot_markdown(cards) or "") if cards else None

# %% [markdown]
# ## Discussion

# %%
facts = grounding_facts(cards)
Markdown(
    "\n".join(
        f"- **{name}** answers {f['image_mean']:.0%} of the held-out questions correctly on "
        f"average over {f['tasks']} tasks (lowest: {f['weakest']}, {f['image_min']:.0%}). With a "
        f"blank image it falls to {f['blank_mean']:.0%}, and with another scene's image to "
        f"{f['mismatched_mean']:.0%}, against {f['chance_mean']:.0%} by chance: "
        + (
            "it answers from the image, so the information about the answer that the PID "
            "chapters trace has to pass from the image into the text stream."
            if max(f["blank_mean"], f["mismatched_mean"]) < f["chance_mean"] + 0.1
            else "part of its accuracy survives without the right image, so the question text "
            "alone carries some of the answer."
        )
        for name, f in facts.items()
    )
    if facts
    else f"Profile {cfg.name} uses no embedded model: no held-out evaluation is recorded here."
)

# %% [markdown]
# ## Limitations

# %%
Markdown(
    (
        "- Each accuracy comes from "
        + " and ".join(sorted({str(f["n_per_task"]) for f in facts.values()}))
        + " held-out questions per task, read from the model cards rather than recomputed in "
        "this build. The weakest task of each model, with its 95% interval: "
        + "; ".join(
            f"{name}, {f['weakest']}: {f['image_min']:.0%} "
            f"[{f['image_min_ci'][0]:.0%}, {f['image_min_ci'][1]:.0%}]"
            for name, f in facts.items()
        )
        + ".\n"
        if facts
        else ""
    )
    + f"- Mini-GQA asks {len({s.task for s in examples})} question types about synthetic scenes, "
    "in a closed vocabulary, and the embedded models are far smaller than the paper's 7B "
    "models. A finding here is about this setup; the `llava` profile runs the paper's models on "
    "real GQA."
)
