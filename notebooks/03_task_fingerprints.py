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
# # Task fingerprints
#
# **The question.** Does each question type leave its own *information fingerprint*, its own
# mix of redundancy, unique information and synergy across depth, as the paper reports? And
# does *semantic redundancy* (how much of the answer the question text already implies) govern
# those fingerprints, as the paper argues?
#
# **Method in brief.** The layer-wise PID of the transduction chapter, task by task: each
# atom's share of $I(V,L;Y)$, kept only where that total lies above the information floor.
# The tasks are ordered by redundancy, and the spread of the shares across tasks is compared
# with their spread across the two models. Then an experiment the paper could not run:
# Mini-GQA has a language-prior knob. With probability $p$, an object takes its shape's typical
# colour. The same model was retrained with its QA scenes at several strengths of $p$, so that
# the prior is in its weights, and each is measured on test questions at its own $p$: the
# question text then implies more of the answer. Does the measured redundancy track the prior?

# %% tags=["parameters"]
profile = "cpu"
models = None  # a list of model names, or None for the profile value
tasks = None  # a list of task names, or None for the profile value
samples_per_task = None  # an integer, or None for the profile value

# %%
from IPython.display import Markdown

from pidlib.analysis.claims import fingerprint_claims, record
from pidlib.analysis.crosscheck import crosscheck_table
from pidlib.analysis.layerwise import layerwise_pid
from pidlib.analysis.summaries import (
    above_floor,
    fingerprint_spread,
    fingerprint_table,
    shares,
)
from pidlib.book import charts
from pidlib.book.inputs import load_features
from pidlib.book.priors import learned_prior_contrast
from pidlib.config.profiles import load_profile

cfg = load_profile(profile, models=models, tasks=tasks, samples_per_task=samples_per_task)
features = load_features(cfg)
pid = layerwise_pid(
    features, pid_spec=cfg.pid, layers=cfg.layers, parallel=cfg.parallel, seed=cfg.seed
)
sh = shares(pid[pid["measure"] == "mmi"], floor=cfg.floor_bits)
Markdown(f"Profile **{cfg.name}**: models {', '.join(cfg.models)}; {len(cfg.tasks)} tasks.")

# %% [markdown]
# ## Results
#
# ### One fingerprint per task
#
# The panels show each task's MMI atoms per layer as shares of $I(V,L;Y)$, for the first
# model.

# %%
first = sh[sh["model"] == cfg.models[0]]
charts.figure(
    charts.atom_trajectories(
        first,
        y="share",
        column="task",
        columns=3,
        y_title="share of I(V,L;Y)",
    ),
    "fig-fingerprints",
)

# %% [markdown]
# ```{glue:figure} fig-fingerprints
# :name: fig-fingerprints
#
# Information fingerprints: each atom's share of $I(V,L;Y)$ per layer, per task (MMI, first
# model of the profile).
# ```

# %% [markdown]
# ### Ordering the tasks by redundancy
#
# Each task is summarised by its mean share of every atom over all layers and models. The table
# is sorted by redundancy.

# %%
finger = fingerprint_table(sh, charts.ATOM_LABELS)
finger.style.format("{:.1%}").format("{:.3f}", subset=["I(V,L;Y) bits"])

# %%
# How different are the fingerprints? The spread of each atom's share across tasks, in
# percentage points, against the spread across the two models for the same task.
task_spread, model_spread = fingerprint_spread(sh)
spread = task_spread.to_frame("across tasks")
if model_spread is not None:
    spread["across models"] = model_spread
spread.rename(index=charts.ATOM_LABELS).mul(100).round(1)

# %% [markdown]
# ### The fingerprints through a non-Gaussian cross-check
#
# The same decomposition by the discrete-target cross-check (see the transduction chapter):
# BROJA atoms in bits at the first, middle and last layer of the first model, beside PID Flow's.

# %%
cross = crosscheck_table({k: f for k, f in features.items() if k[0] == cfg.models[0]}, pid,
                         seed=cfg.seed)  # fmt: skip
cross.pivot_table(index=["task", "layer"], columns="atom",
                  values=["PID Flow", "cross-check"]).round(3)  # fmt: skip

# %% [markdown]
# ### A prior the models learned
#
# One model (the profile's `seeds.prior_models`) was trained once per prior strength $p$
# (`seeds.priors`) from the same seeds, its QA scenes drawn at that $p$; each is measured on
# fresh test questions at its own $p$, on the tasks whose answers the prior shifts
# (`seeds.prior_tasks`).
# If PID measures what it claims to, redundancy should rise with $p$. The test compares the
# strongest prior with the weakest, in bits, at the last layer, on the tasks whose information
# passes the floor at either of the two; it reports the smallest difference it could have
# detected (80% power).

# %%
n_layers = int(pid["n_layers"].max())
learned, contrast = learned_prior_contrast(cfg, n_layers)  # empty without prior-trained models
red = learned[learned["atom"] == "redundancy"]
charts.figure(
    charts.line_band(
        red.assign(layer=red["layer"].map(lambda x: f"layer {x}")),
        x="prior",
        y="value",
        lo="lo",
        hi="hi",
        color="task",
        column="layer",
        x_title="language prior p the model was trained and tested at",
        y_title="redundancy (bits)",
    ),
    "fig-learned-prior-redundancy",
)
contrast.round(3)

# %% [markdown]
# ```{glue:figure} fig-learned-prior-redundancy
# :name: fig-learned-prior-redundancy
#
# Redundancy (MMI, bits, 95% intervals) of models trained at language prior $p$, measured on
# test questions at the same $p$, at a middle layer and at the last layer.
# ```

# %% tags=["remove-output"]
last_contrast = contrast[contrast["layer"] == n_layers]
claims, found = fingerprint_claims(task_spread, model_spread, last_contrast)
record(cfg.name, "03_task_fingerprints", claims, {"profile": cfg.to_dict()})

# %% [markdown]
# ## Discussion

# %%
if len(finger):
    most, least = finger.index[-1], finger.index[0]
    extremes = (
        f"The most redundant task is **{most}**, with a mean R share of "
        f"{finger.loc[most, charts.ATOM_LABELS['redundancy']]:.1%}. The least redundant is "
        f"**{least}**, at {finger.loc[least, charts.ATOM_LABELS['redundancy']]:.1%} (shares "
        f"only where $I(V,L;Y)$ lies above the {cfg.floor_bits:g}-bit floor). Atom shares vary "
        f"across tasks by {task_spread.mean() * 100:.1f} percentage points on average "
        "(standard deviation over tasks)."
    )
else:
    extremes = (
        f"No task has $I(V,L;Y)$ above the {cfg.floor_bits:g}-bit floor at any layer, so no "
        "task has a fingerprint in this build and nothing is compared across tasks."
    )
prior = claims[1]
detect = f"the smallest difference it could detect at 80% power is {found['mde']:.3g} bits"
prior_text = {
    True: f"raises the measured redundancy at the last layer by **{found['difference']:.3g}** "
    f"bits [{found['lo']:.3g}, {found['hi']:.3g}] ({detect})",
    False: f"does not detectably raise the measured redundancy: **{found['difference']:.3g}** "
    f"bits [{found['lo']:.3g}, {found['hi']:.3g}] ({detect})",
    None: "cannot be tested here: no prior-sensitive task has information above the floor at "
    "the weakest or the strongest prior, or the profile names no prior-trained models",
}[prior.holds]
Markdown(
    f"""
- {extremes}
- A language prior learned in training {prior_text} ({prior.n_tested} of {prior.n_pairs}
  tasks tested).
"""
)

# %% [markdown]
# ## Limitations

# %%
measurable = pid[(pid["measure"] == "mmi") & (pid["atom"] == "total")]
share_above = above_floor(measurable, cfg.floor_bits).mean()
Markdown(
    f"""
- Shares are a fraction of $I(V,L;Y)$ and are kept only where its interval lies above the
  {cfg.floor_bits:g}-bit floor: {share_above:.0%} of the (model, task, layer) cells here. A
  task whose cells fall below it has no fingerprint in this build, not an empty one.
- Each task's fingerprint comes from one trained model per architecture and
  {cfg.samples_per_task} questions per task; the spread across tasks is compared with the
  spread across the two models, a point comparison without an interval over questions. The
  Seeds chapter recomputes it on retrained models and gives it an interval across seeds.
- The learned-prior experiment has one model per prior strength ({len(cfg.seeds.priors)}
  strengths, one seed each), so a difference between them mixes the prior with seed-to-seed
  variation; the Seeds chapter widens its interval by the seed spread of the weakest-prior
  model's retrains.
"""
)

# %% [markdown]
# ## References
#
# - Wu, Zhang, Zhou (2026). arXiv 2602.15580.
# - Hudson and Manning (2019). *GQA: A New Dataset for Real-World Visual Reasoning and
#   Compositional Question Answering.* CVPR.
