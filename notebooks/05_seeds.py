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
# # Seeds and decoders: how far a retrain moves each result
#
# **The question.** Every interval in the earlier chapters covers the questions (and, for
# claims averaged over tasks, the tasks) for *one* trained model per family. How much would each
# result move if the same recipe were trained again, and do the claims still hold once that
# movement is counted? How well do two seeds of the *same* model agree, which is the yardstick
# for the paper's cross-model correlation?
#
# **Method in brief.** The recipe was retrained: a second decoder (B, every decoder stage
# reseeded) and, on it, three seeds of each model's own stages (vision alignment and QA). Each
# retrained set goes through the transduction and knockout chapters' pipelines (same questions,
# layers and PID settings) on the tasks whose information passes the floor, and every claim of
# the transduction, fingerprint and knockout chapters is recomputed on it. A claim's interval
# is then widened by the spread of the retrained sets (method below) and its rule applied
# again. The cross-model correlation is set beside the correlation of one model's seeds on one
# decoder and of one model on two decoders.

# %% tags=["parameters"]
profile = "cpu"
samples_per_task = None  # an integer, or None for the profile value

# %%
from dataclasses import replace

import pandas as pd
from IPython.display import Markdown

from pidlib.analysis.claims import prior_claim, record, verdict_text
from pidlib.analysis.layerwise import layerwise_pid
from pidlib.analysis.seeds import (
    baseline_summary,
    correlation_baselines,
    difference_seed_spread,
    replicate_pairs,
    seed_claims,
    set_claims,
    spread_view,
    with_seed_spread,
)
from pidlib.analysis.summaries import measurable_tasks
from pidlib.book.inputs import load_features
from pidlib.book.knockouts import image_question_claims
from pidlib.book.priors import learned_prior_contrast, prior_side, replicate_tables
from pidlib.config.profiles import load_profile
from pidlib.models.cards import embedded_cards, retrain_table

cfg = load_profile(profile, samples_per_task=samples_per_task)
sets = dict(zip(cfg.seeds.set_labels(), cfg.seeds.matching(cfg.models), strict=True))
if sets:
    pid = layerwise_pid(load_features(cfg), pid_spec=cfg.pid, layers=cfg.layers,
                        parallel=cfg.parallel, seed=cfg.seed, progress=False)  # fmt: skip
    tasks = cfg.seeds.tasks or measurable_tasks(pid, cfg.floor_bits)
    reps = replicate_tables(cfg, tasks) if tasks else {}
Markdown(
    f"Profile **{cfg.name}**: the build's models {', '.join(cfg.models)}; retrained sets "
    + ("; ".join(f"{k}: {', '.join(v)}" for k, v in sets.items()) or "none in this profile")
    + "."
)

# %% [markdown]
# ## Results
#
# ### The retrained models
#
# Each model's held-out accuracy (200 test questions per task, greedy decoding) with its own
# image, and on average with a blank or another scene's image, from its model card; the minutes
# of its own stages and of its decoder's (shared by every model on it). Where the card holds a
# full re-timing on otherwise idle cores (`benchmarks/bench_training.py --fraction 1 --record`,
# which runs every step of the stages again and saves no weights), the minutes are that run's;
# otherwise they are the training run's, on the threads it had.

# %%
names = [*cfg.models, *(m for s in sets.values() for m in s)]
cards = embedded_cards(names)
retrain_table(cards) if cards else "no embedded models in this profile"

# %% [markdown]
# ### Each claim on each retrained set
#
# The transduction and fingerprint claims of the build's models are recomputed on the same
# tasks as the retrained sets, so that every column below is the same statistic; the knockout
# claims are the knockout chapter's (every task, tested on the pairs above the floor), and the
# retrained sets' knockouts run on the tasks above. The interval *across seeds* widens the
# build's interval by the spread of the retrained sets: with the build's standard error
# $se_b$ (a side's half-width over 1.96) and the sets' standard deviation $s_r$ ($k - 1$
# degrees of freedom for $k$ sets), each side of the interval becomes $t_{df} \sqrt{se_b^2 +
# s_r^2}$ long with Welch–Satterthwaite degrees of freedom (for a symmetric interval, the
# build's value $\pm$ that), so an asymmetric interval, such as a correlation's, never gets
# narrower on either side; a correlation's interval is clipped to $[-1, 1]$. Each set's value
# also carries its own question noise, so the widening is conservative. The verdict applies
# the claim's own rule to the wider interval. The learned-prior contrast compares two models
# trained from the same seeds, and only the weakest-prior side was retrained on every set: its
# seed spread, times $\sqrt 2$, stands for the spread of the difference.

# %%
if sets and tasks:
    mmi = pid[pid["measure"] == "mmi"]
    build_claims = [*set_claims(mmi[mmi["task"].isin(tasks)], list(cfg.models), cfg.floor_bits),
                    *image_question_claims(cfg, pid)]  # fmt: skip
    per_set = {label: [*set_claims(reps[label], list(models), cfg.floor_bits),
                       *image_question_claims(replace(cfg, models=tuple(models), tasks=tasks),
                                              reps[label], intervals=False)]
               for label, models in sets.items()}  # fmt: skip
    n_layers = int(pid["n_layers"].max())
    contrast = learned_prior_contrast(cfg, n_layers)[1]
    prior, found = prior_claim(contrast[contrast["layer"] == n_layers])
    side = prior_side(cfg, reps, found["tasks"], n_layers)
    spread = pd.concat([with_seed_spread(build_claims, per_set),
                        difference_seed_spread(prior, side, "redundancy at p = 0 (bits)")],
                       ignore_index=True)  # fmt: skip
    widened = seed_claims(spread, [*build_claims, prior], list(sets))
    shown = spread_view(spread, list(sets))
else:
    build_claims, widened, shown = [], [], "no retrained sets, or no task above the floor"
shown

# %% tags=["remove-output"]
record(cfg.name, "05_seeds", widened,
       {"profile": cfg.to_dict(), "tasks": list(tasks) if sets else []})  # fmt: skip

# %% [markdown]
# ### What does the same model reach? Three correlation baselines
#
# The paper's cross-model claim is a mean Pearson r over depth (four atoms, bits, averaged over
# tasks). The same statistic for three kinds of model pair: the two families on one decoder
# (what the paper compares), one family's two seeds on one decoder, and one family on two
# decoders.

# %%
if sets and tasks:
    both = pd.concat([pid[(pid["measure"] == "mmi") & pid["task"].isin(tasks)],
                      *reps.values()], ignore_index=True)  # fmt: skip
    labelled = {"build": list(cfg.models), **{k: list(v) for k, v in sets.items()}}
    baselines = correlation_baselines(both, replicate_pairs(labelled))
    summary = baseline_summary(baselines)
else:
    baselines = summary = pd.DataFrame()
summary.round(3)

# %%
baselines.round(3)

# %% [markdown]
# ## Discussion

# %%
if len(shown) and not isinstance(shown, str):
    flips = spread[spread["holds"].map(verdict_text) != spread["build_holds"].map(verdict_text)]
    lines = [
        f"- Recomputed on {len(sets)} retrained sets ({', '.join(sets)}) over "
        f"{len(tasks)} task(s) ({', '.join(tasks)}), {len(spread)} claims get an interval "
        "across seeds; "
        + (f"the verdict changes for {len(flips)}: "
           + "; ".join(f"**{r.claim}** ({verdict_text(r.build_holds)} → {verdict_text(r.holds)})"
                       for r in flips.itertuples())
           if len(flips) else "no verdict changes")
        + "."
    ]  # fmt: skip
    for r in spread.itertuples():
        sets_said = (f"{r.how}" if r.how else f"retrained sets {r.replicates_mean:.3g} on "
                     f"average (build minus that: {r.gap:+.3g})")  # fmt: skip
        lines.append(
            f"- {r.claim}: build {r.value:.3g} [{r.build_lo:.3g}, {r.build_hi:.3g}], "
            f"{sets_said}; across seeds [{r.lo:.3g}, {r.hi:.3g}]."
        )
    kinds = summary.set_index("kind")
    lines.append(
        "- Correlation over depth: "
        + "; ".join(f"{k} **{v['mean r']:.2f}** ({int(v.pairs)} pairs, {v['min r']:.2f} to "
                    f"{v['max r']:.2f})" for k, v in kinds.iterrows())
        + ". The paper's r > 0.96 between LLaVA-1.5 and 1.6 means something only against what "
        "two seeds of one model reach."
    )  # fmt: skip
    text = "\n".join(lines)
else:
    text = "This profile has no retrained models, so no claim is widened across seeds."
Markdown(text)

# %% [markdown]
# ## Limitations

# %%
Markdown(
    f"""
- {len(sets)} retrained sets give the seed spread {max(len(sets) - 1, 0)} degrees of freedom:
  the widened intervals are wide because the spread itself is uncertain.
- Decoder-level variation is shown (the build's decoder against decoder B's sets: the gap
  column) but not pooled into the interval: two decoders give it one degree of freedom.
- The retrained sets are measured on the build's test questions, at the tasks whose
  information passes the floor for the build's models; their knockout PID jobs skip the
  half-subsamples (only their values enter the spread), and their knockouts are measured under
  Image→Question only.
- The learned-prior contrast was trained at each prior from one set of seeds; its seed spread
  is that of the weakest-prior model's family across the sets, times √2, which assumes
  the two sides of the difference vary alike and independently across seeds.
- Each claim is widened on its own, with no correction for the number of claims.
"""
)

# %% [markdown]
# ## References
#
# - Wu, Zhang, Zhou (2026). arXiv 2602.15580.
# - Welch (1947). *The generalization of "Student's" problem when several different population
#   variances are involved.* Biometrika 34.
