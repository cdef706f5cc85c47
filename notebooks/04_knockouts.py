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
# # Attention knockouts: the causal test
#
# **The question.** Where in the network does each flow of information matter, and does
# blocking the flow from the image into the question change the PID the way the paper reports?
# Wu, Zhang and Zhou block *Image→Question* attention: no question token may attend to an image
# token, in any layer. They report three effects:
#
# 1. visual-unique information is *trapped*: $U_V$ stays high in late layers;
# 2. *compensatory* synergy appears;
# 3. the *total information cost* $I(V,L;Y)$ rises.
#
# They also report that the effect is strongest on vision-dependent tasks and weakest on
# high-redundancy tasks.
#
# **Method in brief.** The chapter first repeats the parent measurement of Zhang et al. (CVPR
# 2025) for all four flows (Image→Question, Image→Last, Question→Last, Last→Last; "Last" is the
# last prompt position, where the answer is read out). A flow is blocked in a window of $k$
# consecutive layers around layer $\ell$, and the measure is the accuracy and the relative
# change in the probability of the answer's first token,
# $(p_\text{knockout} - p_\text{clean}) / p_\text{clean} \times 100$. Zhang et al. use
# $k = 9$ of LLaVA's 32 layers; on a shallow model such a window covers most of the network and
# cannot say *where* a flow matters, so the profile sets the window sizes as a fraction of the
# depth (below). The chapter then measures the PID per layer under the paper's all-layer
# knockout. The questions are the same ones the clean model answered correctly, so every
# knockout-minus-clean difference is *paired*: both runs are cross-fitted with the same folds
# and flow seeds, and the same half-subsamples of the same questions give the difference's
# interval (`pidlib.pid.paired`). The knocked-out activations are measured twice: with PCA and
# flows refit on them, and through the clean run's fitted PCA and flows of the same fold.
#
# One thing cannot change by construction. The image tokens precede the question, and
# attention is causal, so an image token's state never depends on the question: under
# Image→Question the pooled image-token state $V$ is the same at every layer, and only $L$ and
# $Y$ can move. The chapter checks this on its own data (below), and the tests check it
# bit for bit.

# %% tags=["parameters"]
profile = "cpu"
models = None  # a list of model names, or None for the profile value
tasks = None  # a list of task names, or None for the profile value
samples_per_task = None  # an integer, or None for the profile value
sweep_samples = 200  # questions per task in the windowed sweep

# %%
import pandas as pd
from IPython.display import Markdown

from pidlib.analysis.claims import knockout_claims, record
from pidlib.analysis.layerwise import layerwise_pid
from pidlib.analysis.summaries import (
    interval_note,
    knockout_flow_summary,
    knockout_localisation,
    knockout_per_task,
    measurable_pairs,
    paired_widths,
)
from pidlib.book import charts
from pidlib.book.inputs import load_features, load_samples
from pidlib.book.knockouts import ChapterModels, knockout_pid, sweep_table
from pidlib.config.profiles import load_profile
from pidlib.interventions.sweep import summarize

cfg = load_profile(profile, models=models, tasks=tasks, samples_per_task=samples_per_task)
samples = load_samples(cfg)
clean_feats = load_features(cfg, samples=samples)
clean = layerwise_pid(
    clean_feats,
    pid_spec=cfg.pid,
    layers=cfg.layers,
    parallel=cfg.parallel,
    seed=cfg.seed,
    progress=False,
)
model = ChapterModels(cfg)  # loads a model on first use only (every result below is cached)
n_layers = {m: clean_feats[m, cfg.tasks[0]].n_layers for m in cfg.models}
Markdown(
    f"Profile **{cfg.name}**: models {', '.join(cfg.models)} "
    f"({', '.join(f'{k} layers' for k in n_layers.values())}); {len(cfg.tasks)} tasks. "
    f"Windows of **{' and '.join(map(str, cfg.knockout.windows))}** layers, centred every "
    f"{cfg.knockout.stride} layer(s); PID under the all-layer knockout of "
    f"{', '.join(cfg.knockout.pid_flows)}."
)

# %% [markdown]
# ## Results
#
# ### Zhang et al.'s measurement: where each flow matters
#
# Each flow is blocked in a window of layers around every window centre, for each window size.
# Layers before a window are unaffected by it, so `pidlib` replays each knocked-out pass from
# the cached clean pass.

# %%
per_sample = sweep_table(cfg, samples, clean_feats, sweep_samples, model)
curves = summarize(per_sample, by=("model", "task", "flow", "window", "center"))
pooled = summarize(per_sample, by=("model", "flow", "window", "center"))
charts.figure(
    charts.line_band(
        pooled.assign(window=pooled["window"].map(lambda k: f"k = {k}")),
        x="center",
        y="accuracy",
        lo="accuracy_lo",
        hi="accuracy_hi",
        color="flow",
        column="window",
        row="model",
        x_title="window centre (layer)",
        y_title="accuracy under knockout",
    ),
    "fig-knockout-windows",
)

# %% [markdown]
# ```{glue:figure} fig-knockout-windows
# :name: fig-knockout-windows
#
# Accuracy when a flow is blocked in a window of $k$ layers around each centre (all tasks
# pooled; 95% Wilson intervals over questions). The questions are the ones the clean model
# answered correctly, where the profile selects them (`correct_only`).
# ```

# %%
where = knockout_localisation(pooled)
where.set_index(["model", "flow", "window"]).round(3)

# %%
Markdown(
    "Per model, flow and window size: the window with the lowest accuracy, and how many of "
    "the windows lower the accuracy (Wilson interval wholly below the clean accuracy)."
)

# %% [markdown]
# ### The paper's measurement: PID under an all-layer Image→Question knockout
#
# The questions are the ones each model answered correctly without the knockout. $V$, $L$ and
# $Y$ are recomputed with Image→Question attention blocked in every layer. PID Flow then
# measures them in two ways:
#
# - **refit**: PCA and flows are fitted anew on the knocked-out activations. This asks how much
#   information the knocked-out representation holds, in whatever coordinates it now uses. It
#   runs on the (model, task) pairs whose clean $I(V,L;Y)$ passes the information floor at some
#   layer: below it the pooled sources carry no measurable information for a knockout to move.
# - **clean maps reused**: the clean run's PCA and flows are applied to the knocked-out
#   activations. This reads them in the clean model's coordinates. Information that moved out of
#   the clean run's leading PCA directions is then lost to the estimate.

# %%
measurable = measurable_pairs(clean, cfg.floor_bits)
both = knockout_pid(cfg, samples, clean_feats, model, cfg.knockout.pid_flows, refit=measurable)
mmi = both[(both["measure"] == "mmi") & (both["flow"] == "image->question")]
if measurable:  # else every pair, all below the floor (the sentence below says so)
    mmi = mmi[[p in measurable for p in zip(mmi["model"], mmi["task"], strict=True)]]
avg = mmi.groupby(["transforms", "model", "layer", "atom"], as_index=False)[
    ["delta", "lo", "hi"]
].mean()
avg = avg[avg["atom"].isin(["redundancy", "unique_1", "unique_2", "synergy", "total"])]
charts.figure(
    charts.atom_trajectories(
        avg,
        y="delta",
        column="model",
        row="transforms",
        y_title="knockout − clean (bits)",
    ),
    "fig-knockout-pid",
)

# %% [markdown]
# ```{glue:figure} fig-knockout-pid
# :name: fig-knockout-pid
#
# Change of each MMI atom, and of $I(V,L;Y)$, per layer under the all-layer Image→Question
# knockout (knockout minus clean, averaged over the tasks whose clean $I(V,L;Y)$ passes the
# information floor at some layer; bands: their mean paired 95% intervals). Rows: PCA and flows
# refit on the knocked-out activations, or the clean run's reused.
# ```

# %%
iq = both[both["flow"] == "image->question"]
to_last = both[both["flow"] != "image->question"]
widths = paired_widths(both)
n_pairs = len(cfg.models) * len(cfg.tasks)
Markdown(
    (
        f"PCA and flows were refit for **{len(measurable)} of {n_pairs}** (model, task) pairs, "
        f"those above the {cfg.floor_bits:g}-bit floor; the figure averages over them. "
        if measurable
        else f"No (model, task) pair passes the {cfg.floor_bits:g}-bit floor: nothing was refit, "
        "and the figure averages every pair through the clean maps. "
    )
    + f"Under Image→Question the largest change of any pooled image-token state, over every "
    f"layer, model and task, is **{iq['max_dV'].max():g}**: $V$ is unchanged, as causal "
    f"attention requires. The paired intervals of the {widths['rows']} MMI differences are "
    f"**{widths['ratio']:.2f}** times as wide as intervals that treat the two runs as "
    f"independent (median ratio); {widths['paired_excludes_zero']:.0%} of the paired intervals "
    f"exclude zero, against {widths['independent_excludes_zero']:.0%} of the independent ones."
    + (
        f" Under the flows into the last position ({', '.join(to_last['flow'].unique())}) the "
        f"largest change of any pooled image- or question-token state is "
        f"**{max(to_last['max_dV'].max(), to_last['max_dL'].max()):g}**: only the answer $Y$ "
        "moves, so these runs are measured through the clean maps alone."
        if len(to_last)
        else ""
    )
)

# %% [markdown]
# ### Every flow: what $V$ and $L$ still say about the knocked-out answer
#
# Blocking a flow into the last position leaves $V$ and $L$ exactly as they were and changes
# only the answer. The PID of the changed answer, read through the clean run's maps, shows how
# much of what the pooled sources said about the clean answer still holds for the answer the
# crippled model gives. Accuracy stands beside each change in the table below.

# %%
flows_clean = both[(both["measure"] == "mmi") & (both["transforms"] == "clean maps reused")]
by_flow = flows_clean.groupby(["flow", "model", "layer", "atom"], as_index=False, sort=False)[
    ["delta", "lo", "hi"]
].mean()
by_flow = by_flow[by_flow["atom"].isin(["redundancy", "unique_1", "unique_2", "synergy", "total"])]
charts.figure(
    charts.atom_trajectories(
        by_flow, y="delta", column="flow", row="model", y_title="knockout − clean (bits)"
    ),
    "fig-knockout-pid-flows",
)

# %% [markdown]
# ```{glue:figure} fig-knockout-pid-flows
# :name: fig-knockout-pid-flows
#
# Change of each MMI atom, and of $I(V,L;Y)$, per layer under the all-layer knockout of each
# flow, read through the clean run's PCA and flows (knockout minus clean, averaged over tasks;
# bands: the tasks' mean paired 95% intervals). Columns: the blocked flow; rows: the model.
# ```

# %%
knockout_flow_summary(both).round(3)

# %% [markdown]
# ### Which tasks are hit hardest, and does redundancy protect them?

# %%
per_task = knockout_per_task(both, clean, floor=cfg.floor_bits)
order = ["flow", "transforms", "ΔU_V (late layers)"]
per_task.sort_values(order, ascending=[True, True, False]).set_index(
    ["flow", "transforms", "model", "task"]
).round(3)

# %% tags=["remove-output"]
# The paper's claims concern Image→Question; the sweep's claim uses the widest window (Zhang's).
claims, found = knockout_claims(
    per_task[per_task["flow"] == "image->question"],
    curves[curves["window"] == max(cfg.knockout.windows)],
)
record(cfg.name, "04_knockouts", claims, {"profile": cfg.to_dict(), "sweep_samples": sweep_samples})

# %% [markdown]
# ## Discussion

# %%
acc_drop = found["acc_drop"]
lines = [
    "- In Zhang et al.'s windowed sweep, the largest drop of the answer probability under "
    f"Image↛Question is **{acc_drop[0]:.1f}%** on average over (model, task) "
    f"(95% CI [{acc_drop[1]:.1f}, {acc_drop[2]:.1f}])."
]
per_task_iq = per_task[(per_task["flow"] == "image->question")
                       & (per_task["transforms"] == "refit")]  # fmt: skip
tested = int(per_task_iq["measurable"].sum())
for variant, (d_uv, d_s, d_tot, rho) in found["variants"].items():
    r, p, used, pairs = rho
    relation = (
        f"is **{r:.2f}** (p = {p:.2g}, {used} of {pairs} (model, task) pairs)"
        if r == r
        else f"cannot be computed: only {used} of {pairs} (model, task) pairs have a clean "
        "redundancy share above the information floor"
    )
    lines.append(
        f"- All-layer Image→Question knockout, PCA and flows **{variant}**: late-layer $U_V$ "
        f"changes by {charts.bits_interval(d_uv)}, synergy by {charts.bits_interval(d_s)} and "
        f"$I(V,L;Y)$ by {charts.bits_interval(d_tot)} (means over layers and the {tested} "
        f"(model, task) pairs whose clean $I(V,L;Y)$ passes the {cfg.floor_bits:g}-bit floor "
        f"at some layer, of {len(per_task_iq)}). The Spearman correlation across tasks "
        f"between clean redundancy and the late-layer $\\Delta U_V$ {relation}."
    )
smallest = min(cfg.knockout.windows)
for flow, g in where[where["window"] == smallest].groupby("flow", sort=False):
    per_model = "; ".join(
        f"{w.model}: layer(s) {w.layers}, accuracy **{w.accuracy:.2f}** "
        f"[{w.accuracy_lo:.2f}, {w.accuracy_hi:.2f}], {w.windows_hurt} of {w.windows} windows "
        "lower it"
        for w in g.itertuples()
    )
    lines.append(f"- {flow} blocked in {smallest}-layer windows, where it hurts most: {per_model}.")
clean_acc = pd.Series({k: (f.choice == f.gold).mean() for k, f in clean_feats.items()}).mean()
for (flow, variant), g in per_task.groupby(["flow", "transforms"], sort=False):
    late = both[(both["flow"] == flow) & (both["transforms"] == variant)
                & (both["measure"] == "mmi") & (both["atom"] == "unique_1")
                & (both["depth"] >= 2 / 3)]  # fmt: skip
    up, down = int((late["lo"] > 0).sum()), int((late["hi"] < 0).sum())
    lines.append(
        f"- All-layer {flow} ({variant}): accuracy **{g['accuracy under knockout'].mean():.2f}** "
        f"(mean over model and task; {clean_acc:.2f} without it); $I(V,L;Y)$ changes by "
        f"{g['ΔI(V,L;Y) (all layers)'].mean():+.3f} bits on average. Of {len(late)} late-layer "
        f"$\\Delta U_V$ rows, {up} have a paired interval above zero and {down} below."
    )
Markdown("\n".join(lines))

# %% [markdown]
# ## Limitations

# %%
unmeasured = [f for f in cfg.knockout.flows if f not in cfg.knockout.pid_flows]
measured = ", ".join(cfg.knockout.pid_flows)
pid_scope = (
    f"The PID is measured under the all-layer knockout of {measured} only; "
    f"{', '.join(unmeasured)} are measured by accuracy and answer probability alone."
    if unmeasured
    else f"The PID is measured under the all-layer knockout of every swept flow ({measured})."
)
Markdown(
    f"""
- The windowed sweep asks at most {sweep_samples}
  {"correctly answered " if cfg.correct_only else ""}questions per task and model, in
  windows of {" and ".join(map(str, cfg.knockout.windows))} layers centred every
  {cfg.knockout.stride} layer(s); a window centred near either end is truncated there. The PID
  under the knockout uses up to {cfg.samples_per_task} questions per task
  {"that each model answered correctly without it" if cfg.correct_only else "(all answers)"},
  with {cfg.pid.n_bootstrap} half-subsamples and
  {cfg.pid.n_seeds} fold split(s) and flow seed(s).{interval_note(both)}
- {pid_scope} Where a knockout leaves $V$ and $L$ unchanged it is read through the clean maps
  only: its change is the change in what the same sources say about the changed answer.
- The correlation between clean redundancy and the knockout's effect rests on the
  {len(measurable)} of {n_pairs} (model, task) pairs above the information floor, so it can
  detect only a strong relation.
- The paired intervals cover the sampling of the questions and the fits (folds, flow seeds),
  not a retrained model: a model trained again can move the differences more than they show.
  The Seeds chapter recomputes the Image→Question claims on retrained models and widens
  their intervals by the spread.
- A knockout acts on the forward pass over the prompt; the greedy continuation of the answer
  runs without it, on the KV cache that the knocked-out prompt made.
"""
)

# %% [markdown]
# ## References
#
# - Wu, Zhang, Zhou (2026). arXiv 2602.15580.
# - Zhang, Yadav, Han, Shutova (2025). *Cross-modal Information Flow in Multimodal Large
#   Language Models.* CVPR; arXiv 2411.18620.
