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
# # Modal transduction
#
# **The question.** Across the decoder layers of LLaVA-1.5 and LLaVA-1.6, does the information
# about the answer move from the image into the language stream, as Wu, Zhang and Zhou (2026)
# report? Their four claims:
#
# 1. vision-unique information $U_V$ peaks in early layers and then decays;
# 2. language-unique information $U_L$ surges late and carries about **82%** of the final
#    layer's predictive information $I(V, L; Y)$;
# 3. synergy $S$ stays below **2%** on every task;
# 4. the layer-wise trajectories of the two models correlate above **0.96**.
#
# **Method in brief.** At every layer, $V$ is the hidden state mean-pooled over the image-token
# positions and $L$ is the hidden state mean-pooled over the question tokens. $Y$ is the
# model's answer: the first-answer-token logits over the task's answer set, a log-odds for
# two-option tasks. Only questions that the model answers correctly enter. PID Flow (see the
# Methods chapter) gives the four atoms with 95% cross-fitted intervals. MMI is the headline
# measure, as in the paper, and BROJA is shown beside it. For the two-option tasks $Y$ is a
# scalar log-odds, where BROJA and MMI coincide exactly (Barrett, 2015); they can differ only on
# tasks with more options (CompareAttr). Shares and claims are reported only where
# $I(V, L; Y)$ lies measurably above an information floor, and a discrete-target cross-check
# that can see XOR-type synergy is shown beside PID Flow.

# %% tags=["parameters"]
profile = "cpu"
models = None  # a list of model names, or None for the profile value
tasks = None  # a list of task names, or None for the profile value
samples_per_task = None  # an integer, or None for the profile value

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown

from pidlib.analysis.claims import claims_markdown, record, transduction_claims
from pidlib.analysis.crosscheck import crosscheck_sentence, crosscheck_table
from pidlib.analysis.lastview import (
    formation,
    formation_sentence,
    information_rows,
    last_pid,
    last_pid_atoms,
    last_source_sentence,
    probe_table,
)
from pidlib.analysis.layerwise import layerwise_pid
from pidlib.analysis.robustness import (
    TARGET_LABELS,
    cheap_backend,
    cheap_pid_spec,
    pid_by_target,
    robustness_sentence,
    robustness_settings,
    robustness_table,
    target_claims,
    with_robustness,
)
from pidlib.analysis.summaries import (
    floor_sentence,
    interval_note,
    last_layer_shares,
    measurable_tasks,
    peak_layers,
    shares,
    trajectory_correlation,
)
from pidlib.book import charts
from pidlib.book.inputs import load_features
from pidlib.config.profiles import load_profile
from pidlib.data.tasks import TASK_GQA_TYPES

cfg = load_profile(profile, models=models, tasks=tasks, samples_per_task=samples_per_task)
features = load_features(cfg)
pid = layerwise_pid(
    features, pid_spec=cfg.pid, layers=cfg.layers, parallel=cfg.parallel, seed=cfg.seed
)
Markdown(
    f"Profile **{cfg.name}**: models {', '.join(cfg.models)}; "
    f"{len(cfg.tasks)} tasks; PID measures {', '.join(cfg.pid.measures)}."
)

# %% [markdown]
# ## Results
#
# ### The samples
#
# The table gives, for each model and task, the accuracy of greedy answers on all questions
# seen and the number of correctly answered questions that enter the PID.

# %%
pd.DataFrame(
    [
        {"model": m, "task": t, "accuracy": f.info.get("accuracy"), "samples used": f.n}
        for (m, t), f in features.items()
    ]
).pivot(index="task", columns="model", values=["accuracy", "samples used"])

# %% [markdown]
# ### The four atoms, layer by layer
#
# This view averages over the tasks, with 95% bands. The Task Fingerprints chapter shows each
# task on its own.

# %%
mmi = pid[pid["measure"] == "mmi"]
avg = mmi.groupby(["model", "layer", "atom"], as_index=False)[["value", "lo", "hi"]].mean()
avg = avg[avg["atom"].isin(["redundancy", "unique_1", "unique_2", "synergy"])]
charts.figure(
    charts.atom_trajectories(avg, column="model", columns=2),
    "fig-transduction-atoms",
)

# %% [markdown]
# ```{glue:figure} fig-transduction-atoms
# :name: fig-transduction-atoms
#
# MMI PID atoms (bits) per layer, averaged over tasks, for each model. Layer 0 is the
# embedding layer. Bands are 95% intervals (cross-fitted), averaged over tasks.
# ```

# %%
sh = shares(pid, floor=cfg.floor_bits)
sh_avg = sh.groupby(["model", "measure", "layer", "atom"], as_index=False)["share"].mean()
charts.figure(
    charts.atom_trajectories(
        sh_avg,
        y="share",
        column="model",
        row="measure",
        y_title="share of I(V,L;Y)",
    ),
    "fig-transduction-shares",
)

# %% [markdown]
# ```{glue:figure} fig-transduction-shares
# :name: fig-transduction-shares
#
# Each atom's share of $I(V,L;Y)$ per layer, averaged over tasks. Rows: MMI (the paper's
# measure) and BROJA.
# ```

# %% [markdown]
# ### Is there information to decompose? The floor
#
# A share is a fraction of $I(V,L;Y)$; where that total is indistinguishable from zero, a
# share is a fraction of noise. Each (model, task, layer) therefore gets a lower bound on
# $I(V,L;Y)$: the lower end of its 95% interval. Shares are shown, and claims tested, only
# where that bound lies above the profile's floor (`floor_bits`); elsewhere the book reports
# "no measurable information in the pooled sources", in bits.

# %%
last = last_layer_shares(pid, "mmi", floor=cfg.floor_bits)
floor_view = last[["model", "task", "total", "total_lo", "measurable"]].round(3)
floor_view

# %%
Markdown(floor_sentence(last, cfg.floor_bits))

# %% [markdown]
# ### Where does $U_V$ peak, and what is left at the last layer?
#
# Only layers whose $U_V$ interval lies above the floor can hold a peak; exact ties are
# counted (`tied`) and averaged, never broken toward the shallow end.

# %%
peaks = peak_layers(pid, "unique_1", "mmi", floor=cfg.floor_bits)
peaks

# %%
last

# %% [markdown]
# ### Do the two models agree?
#
# The Pearson correlation between the two models' trajectories of each atom is taken over
# relative depth, per task. Models with different numbers of layers are aligned by
# interpolation. The table shows every task; the claim averages only the tasks whose
# information passes the floor for either model (elsewhere both trajectories are noise).

# %%
if len(cfg.models) >= 2:
    corr = trajectory_correlation(pid, list(cfg.models[:2]), measure="mmi")
    display_corr = corr.pivot(index="task", columns="atom", values="r")
    overall = corr.groupby("atom")["r"].mean()
else:
    corr, display_corr, overall = None, "one model only: no cross-model correlation", None
display_corr

# %% [markdown]
# ### Where synergy can come from: options named in question order
#
# For the three *choose* tasks, the target $Y$ is the log-odds of the first option named in the
# question against the second ("Is the star red or blue?"). Which option comes first is drawn
# at random. If the image shows a red star, $Y$ is positive when "red" is named first and
# negative otherwise. While $V$ holds the colour and $L$ only the option order, neither alone
# tells $Y$ and the pair does: synergy, from the XOR-like structure of the target. Once the
# question tokens have taken in the colour (the transfer the paper calls modal transduction),
# $L$ alone carries $Y$ and the synergy turns into $U_L$. A large last-layer synergy share on
# the choose tasks therefore marks an incomplete transfer into the question tokens. A caveat on
# the estimator: a Gaussian PID sees dependence only through covariances of the per-variable
# Gaussianized latents, and a pure XOR has none. Where $Y$'s sign is an exact XOR of a colour
# bit in $V$ and an order bit in $L$, PID Flow can report little synergy and even little
# $I(V,L;Y)$; it sees the synergy only when the dependence is partly linear. The table
# compares the last-layer shares of the choose tasks with those of the tasks whose answer set
# does not depend on the question. A target that does not flip with the option order
# (`target: hidden` in a profile: the last position's hidden state) removes this structure.

# %%
choose = [t for t in cfg.tasks if TASK_GQA_TYPES[t][1] == "choose"]
above = last[last["measurable"]]
kind = np.where(above["task"].isin(choose), "choose: options in question order", "other tasks")
above.assign(tasks=kind).groupby(["model", "tasks"])[["synergy", "unique_2"]].mean().round(3)

# %% [markdown]
# ### A non-Gaussian cross-check
#
# A Gaussian PID sees dependence only through covariances, so it is blind to XOR-type synergy
# (the Methods chapter shows it reporting 0 bits on XOR). The cross-check takes the model's
# chosen option as a discrete $Y$, discretises $V$ and $L$ into four k-means clusters each, and
# computes the BROJA PID of the resulting table with a certified convex solver. It is shown
# beside PID Flow's BROJA atoms at the first, middle and last layer (bits). The plug-in of a
# discrete table is biased upward by about (cells / 2n ln 2) bits at these sample sizes.

# %%
cross = crosscheck_table(features, pid, seed=cfg.seed)
cross[cross["atom"].isin(["total", "synergy"])].pivot_table(
    index=["model", "task", "layer"], columns="atom", values=["PID Flow", "cross-check"]
).round(3)

# %%
Markdown(crosscheck_sentence(cross))

# %% [markdown]
# ### The last position: where is the answer formed?
#
# $V$ and $L$ pool the image and question tokens, but the answer is read from the next-token
# logits at the *last* prompt position. Its hidden state at every layer, $\text{Last}$, is
# captured by the same hooks in the same forward pass. Two measures per layer: how well a
# linear probe (logistic regression, cross-validated) recovers the model's answer from $V$,
# $L$, $[V, L]$ and $\text{Last}$; and $I(\text{Last}; Y)$ beside $I(V, L; Y)$, both with
# the cheaper PID settings of the robustness table below.

# %%
rob, lp_spec = cfg.robustness, cfg.last_position
cheap = cheap_pid_spec(cfg.pid, rob)
probes = probe_table(features, lp_spec, seed=cfg.seed, parallel=cfg.parallel)
last_tab = last_pid(
    features, lp_spec, cheap, parallel=cheap_backend(cfg.parallel, rob.flow), seed=cfg.seed
)
by_target = pid_by_target(features, rob, cfg.pid, parallel=cfg.parallel, seed=cfg.seed)
acc = probes.groupby(["model", "layer", "view"], as_index=False)["accuracy"].mean()
majority = probes.groupby(["model", "layer"], as_index=False)["chance"].mean()
acc = pd.concat(
    [acc, majority.rename(columns={"chance": "accuracy"}).assign(view="majority answer")]
)
info = information_rows(last_tab, by_target.get(cfg.target))
charts.figure(charts.views_chart(acc, info), "fig-transduction-last")

# %%
Markdown(
    f"Probes: {lp_spec.probe_folds}-fold stratified cross-validation, logistic regression "
    f"with C = {lp_spec.probe_c:g} on standardised states, seed {cfg.seed}; the label is the "
    "model's chosen option. Each (model, task) enters with the same questions as the PID above."
)

# %% [markdown]
# ```{glue:figure} fig-transduction-last
# :name: fig-transduction-last
#
# (a) Cross-validated accuracy of linear probes of the model's answer from the pooled image
# tokens $V$, the pooled question tokens $L$, both $[V, L]$, and the last prompt position's
# state, mean over tasks; grey: the majority answer's rate. (b) $I(\text{Last}; Y)$ and
# $I(V, L; Y)$ in bits (Gaussian PID of cross-fitted PCA scores), with 95% bands, mean over
# tasks. At layer 0 the last position holds the same template token in every prompt.
# ```

# %%
formed = formation(probes, lp_spec.formed_at)
Markdown(formation_sentence(formed, lp_spec.formed_at))

# %% [markdown]
# Where the answer is formed, the chapter's question becomes which source the last position
# takes it from. The PID of $I(Y; \text{Last}, L)$ splits it: information the last position
# holds that the pooled question does not ($U_\text{Last}$), what the question still holds
# alone ($U_L$), and what both hold ($R$).

# %%
last_atoms = last_pid_atoms(last_tab)
charts.figure(
    charts.atom_trajectories(
        last_atoms[last_atoms["atom"].isin(["redundancy", "unique_1", "unique_2", "synergy"])],
        column="model",
        sources=("Last", "L"),
    ),
    "fig-transduction-last-pid",
)

# %% [markdown]
# ```{glue:figure} fig-transduction-last-pid
# :name: fig-transduction-last-pid
#
# MMI atoms of $I(Y; \text{Last}, L)$ per layer (bits, mean over tasks, with the tasks' mean
# 95% bands; Gaussian PID of cross-fitted PCA scores, the settings of panel (b) above). Layer
# 0 is left out: there the last position holds the same template token in every prompt.
# ```

# %%
Markdown(last_source_sentence(last_tab))

# %%
claims = transduction_claims(peaks, last, corr, cfg.floor_bits,
                             corr_tasks=measurable_tasks(pid, cfg.floor_bits))  # fmt: skip

# %% [markdown]
# ### Do the verdicts depend on the target?
#
# The claims are statements about $Y$, and $Y$ is a choice. Each claim is re-tested below
# with the same features viewed through other targets (no re-extraction): *logits*, the
# log-odds of the options in the order the question names them (this chapter's $Y$; for the
# choose tasks that order is random, so $V$, which cannot see the question, carries no
# information about it); *canonical*, the same log-odds with the options in alphabetical order,
# so $Y$ no longer flips with the question; *margin*, the gold answer's logit against the
# others'; and *hidden*, the last position's final state. Each cell gives the verdict, the value
# with its 95% interval and the (model, task) pairs above the floor it rests on.

# %%
verdicts = target_claims(by_target, cfg.floor_bits)
Markdown(robustness_settings(rob, cfg.pid))

# %%
robustness_table(verdicts, claims, cfg.target)

# %%
Markdown(robustness_sentence(verdicts))

# %% tags=["remove-output"]
record(cfg.name, "02_modal_transduction", with_robustness(claims, verdicts), cfg.to_dict())

# %% [markdown]
# ## Discussion
#
# Each of the paper's claims, tested on the (model, task) pairs whose information lies above
# the floor, with this build's value and 95% interval:

# %%
Markdown(claims_markdown(claims))

# %% [markdown]
# ## Limitations

# %%
used = [f.n for f in features.values()]
n_measurable = int(last["measurable"].sum())
Markdown(
    f"""
- Each (model, task) pair enters with {min(used)} to {max(used)}
  {"correctly answered " if cfg.correct_only else ""}questions (of {cfg.samples_per_task}
  asked). The intervals are cross-fitted with {cfg.pid.n_bootstrap} half-subsamples and
  {cfg.pid.n_seeds} flow seed(s); they cover the sampling of questions, not the training of
  the models: each architecture is one trained model.{interval_note(pid, floored=True)}
- {n_measurable} of {len(last)} (model, task) pairs carry $I(V,L;Y)$ above the
  {cfg.floor_bits:g}-bit floor at the last layer; every claim rests on those pairs only, and
  a claim tested on few pairs can come out either way by chance.
- The image tokens precede the question, so under causal attention $V$ is a function of the
  image alone. Whatever depends on the question (such as which option is named first) can
  reach $Y$ only through $L$ or through synergy.
- PID Flow is a Gaussian PID after per-variable Gaussianization, blind to XOR-type synergy
  (Methods, section 6). The cross-check above is the safeguard; it has its own upward plug-in
  bias on small tables.
- The target robustness table uses cheaper settings than the chapter's estimate, so a cell can
  differ from the chapter's verdict through the estimator as well as through $Y$; its
  *{TARGET_LABELS["logits"]}* column against the first column shows how much.
- The probes are linear and see one position (or one pooled view) at a time; a view a linear
  probe cannot read may still carry the answer non-linearly.
"""
)

# %% [markdown]
# ## References
#
# - Wu, Zhang, Zhou (2026). arXiv 2602.15580.
# - Zhang, Yadav, Han, Shutova (2025). *Cross-modal Information Flow in Multimodal Large
#   Language Models.* CVPR; arXiv 2411.18620.
