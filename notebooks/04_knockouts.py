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
# **Claims under test.** Wu, Zhang and Zhou block *Image→Question* attention: no question
# token may attend to an image token, in any layer. They report three effects:
#
# 1. visual-unique information is *trapped*: $U_V$ stays high in late layers;
# 2. *compensatory* synergy appears;
# 3. the *total information cost* $I(V,L;Y)$ rises.
#
# They also report that the effect is strongest on vision-dependent tasks and weakest on
# high-redundancy tasks.
#
# The chapter first repeats the parent measurement of Zhang et al. (CVPR 2025). A flow is
# blocked in a window of $k$ consecutive layers around layer $\ell$, and the measure is the
# relative change in the probability of the answer's first token,
# $(p_\text{knockout} - p_\text{clean}) / p_\text{clean} \times 100$, and in accuracy. It then
# measures the PID per layer under the paper's all-layer Image→Question knockout. The questions
# are the same ones the clean model answered correctly. The knocked-out activations are measured
# twice: with PCA and flows refit on them, and through the clean run's fitted PCA and flows.

# %% tags=["parameters"]
profile = "cpu"
models = None  # a list of model names, or None for the profile value
tasks = None  # a list of task names, or None for the profile value
samples_per_task = None  # an integer, or None for the profile value
sweep_samples = 200  # questions per task in the windowed sweep

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown
from scipy import stats

from pidlib import charts
from pidlib.cache import cached_table
from pidlib.claims import Claim, mean_ci, record
from pidlib.datasets import load_features, load_samples
from pidlib.knockout_sweep import knockout_features, summarize, sweep
from pidlib.layerwise import layerwise_pid, shares
from pidlib.models import load_model
from pidlib.profiles import load_profile

cfg = load_profile(profile, models=models, tasks=tasks, samples_per_task=samples_per_task)
samples = load_samples(cfg)
clean_feats = load_features(cfg, samples=samples)
clean = layerwise_pid(
    clean_feats, pid_spec=cfg.pid, layers=cfg.layers, parallel=cfg.parallel, seed=cfg.seed
)
_loaded = {}


def model(name):
    """Load a model on first use only (every result below is cached)."""
    if name not in _loaded:
        _loaded[name] = load_model(name, dtype=cfg.dtype, device=cfg.device)
    return _loaded[name]


def correct_samples(name, task, limit=None):
    """The task's questions that the clean model answered correctly, in feature order."""
    keep = list(clean_feats[name, task].qid[:limit])
    by_qid = {s.qid: s for s in samples[task]}
    return [by_qid[q] for q in keep]


Markdown(f"Profile **{cfg.name}**: models {', '.join(cfg.models)}; {len(cfg.tasks)} tasks.")

# %% [markdown]
# ## Zhang et al.'s measurement: windowed knockouts
#
# The flows tested are Image↛Question, Image↛Last and Question↛Last. Each is blocked in a
# window of layers around every window centre. Layers before a window are unaffected by it, so
# `pidlib` replays each knocked-out pass from the cached clean pass.

# %%
sweep_code = ("pidlib.knockout", "pidlib.knockout_sweep", "pidlib.prompt")


def run_sweep(name, task):
    n_layers = model(name).num_layers
    centers = list(range(0, n_layers, cfg.knockout.stride))
    res = sweep(model(name), correct_samples(name, task, sweep_samples), cfg.knockout.flows,
                centers, window=cfg.knockout.window, batch_size=cfg.batch_size)  # fmt: skip
    per = res.per_sample.assign(model=name, task=task, n_layers=n_layers)
    keep = ["model", "task", "flow", "center", "layers", "first_layer", "last_layer",
            "n_layers", "p_clean", "p_ko", "rel_change", "correct_clean", "correct_ko"]  # fmt: skip
    return per[keep].astype({"center": int, "layers": str})


per_sample = pd.concat(
    [
        cached_table(
            "knockout-sweep",
            {
                "columns": 2,
                "model": m,
                "task": t,
                "n": sweep_samples,
                "knockout": cfg.to_dict()["knockout"],
                "features": clean_feats[m, t].info.get("cache_keys", []),
            },
            lambda m=m, t=t: run_sweep(m, t),
            sweep_code,
        )  # fmt: skip
        for m in cfg.models
        for t in cfg.tasks
    ],
    ignore_index=True,
)
curves = summarize(per_sample, by=("model", "task", "flow", "center"))
curves["depth"] = (
    curves["center"]
    / per_sample.groupby("model")["n_layers"].max().reindex(curves["model"]).to_numpy()
)
charts.figure(
    charts.line_band(
        curves[curves["model"] == cfg.models[0]],
        x="center",
        y="rel_change",
        lo="rel_change_lo",
        hi="rel_change_hi",
        color="flow",
        column="task",
        columns=3,
        x_title="window centre (layer)",
        y_title="Δ p(answer) (%)",
    ),
    "fig-knockout-windows",
)

# %% [markdown]
# ```{glue:figure} fig-knockout-windows
# :name: fig-knockout-windows
#
# Relative change (%) of the probability of the answer's first token when a flow is blocked in a
# window of layers around each centre (first model; 95% intervals over questions).
# ```

# %%
curves.groupby(["model", "flow"])[["rel_change", "accuracy", "accuracy_clean"]].min().round(3)

# %% [markdown]
# ## The paper's measurement: PID under an all-layer Image→Question knockout
#
# The questions are the ones each model answered correctly without the knockout. $V$, $L$ and
# $Y$ are recomputed with Image→Question attention blocked in every layer. PID Flow then
# measures them in two ways:
#
# - **refit**: PCA and flows are fitted anew on the knocked-out activations. This asks how much
#   information the knocked-out representation holds, in whatever coordinates it now uses.
# - **clean maps reused**: the clean run's PCA and flows are applied to the knocked-out
#   activations. This reads them in the clean model's coordinates. Information that moved out of
#   the clean run's leading PCA directions is then lost to the estimate.

# %%
ko_feats = {}
for m in cfg.models:
    for t in cfg.tasks:
        ko_feats[m, t] = knockout_features(
            model(m),
            correct_samples(m, t),
            "image->question",
            batch_size=cfg.batch_size,
            target=cfg.target,
        )
run = dict(pid_spec=cfg.pid, layers=cfg.layers, parallel=cfg.parallel, seed=cfg.seed)
variants = {
    "refit": layerwise_pid(ko_feats, **run),
    "clean maps reused": layerwise_pid(ko_feats, fit_features=clean_feats, **run),
}

# %%
keys = ["model", "task", "layer", "depth", "measure", "atom"]


def deltas(ko, variant):
    """Knockout minus clean per row, with the interval of a difference of two independent
    estimates (half-widths added in quadrature)."""
    d = clean.merge(ko, on=keys, suffixes=("_clean", "_ko"))
    d["delta"] = d["value_ko"] - d["value_clean"]
    half = np.sqrt(sum(((d[f"hi_{s}"] - d[f"lo_{s}"]) / 2) ** 2 for s in ("clean", "ko")))
    d["lo"], d["hi"] = d["delta"] - half, d["delta"] + half
    return d.assign(transforms=variant)


both = pd.concat([deltas(ko, v) for v, ko in variants.items()], ignore_index=True)
mmi = both[both["measure"] == "mmi"]
avg = mmi.groupby(["transforms", "model", "layer", "atom"], as_index=False)[
    ["delta", "lo", "hi"]
].mean()
avg = avg[avg["atom"].isin(["redundancy", "unique_1", "unique_2", "synergy", "total"])]
charts.figure(
    charts.atom_trajectories(
        avg.rename(columns={"delta": "bits"}),
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
# knockout (knockout minus clean, averaged over tasks; bands combine both runs' 95% intervals).
# Rows: PCA and flows refit on the knocked-out activations, or the clean run's reused.
# ```

# %%
late = mmi[mmi["depth"] >= 2 / 3]


def mean_delta(rows, atom):
    return rows[rows["atom"] == atom].groupby(["transforms", "model", "task"])["delta"].mean()


per_task = pd.DataFrame(
    {
        "ΔU_V (late layers)": mean_delta(late, "unique_1"),
        "ΔS (all layers)": mean_delta(mmi, "synergy"),
        "ΔI(V,L;Y) (all layers)": mean_delta(mmi, "total"),
    }
).reset_index()
red = shares(clean[clean["measure"] == "mmi"])
red = red[red["atom"] == "redundancy"].groupby(["model", "task"])["share"].mean()
per_task["clean R share"] = red.reindex(
    pd.MultiIndex.from_frame(per_task[["model", "task"]])
).to_numpy()
per_task.sort_values(["transforms", "ΔU_V (late layers)"], ascending=[True, False]).round(3)

# %% [markdown]
# ## Which tasks are hit hardest, and does redundancy protect them?

# %%
acc_drop = mean_ci(
    curves[curves["flow"] == "image->question"].groupby(["model", "task"])["rel_change"].min()
)
claims, found = [], {}
for variant in variants:
    rows = per_task[per_task["transforms"] == variant]
    rho = stats.spearmanr(rows["clean R share"], rows["ΔU_V (late layers)"])
    cols = ("ΔU_V (late layers)", "ΔS (all layers)", "ΔI(V,L;Y) (all layers)")
    d_uv, d_s, d_tot = (mean_ci(rows[c]) for c in cols)
    found[variant] = d_uv, d_s, d_tot, rho
    how = f" ({variant})" if variant != "refit" else ""
    claims += [
        Claim(f"Image→Question knockout traps visual-unique information{how}",
              "U_V rises in late layers", *d_uv, holds=bool(d_uv[1] > 0),
              unit="Δ U_V, bits, mean over late layers",
              detail="mean over (model, task); holds if the CI lies above 0"),
        Claim(f"Knockout induces compensatory synergy{how}", "S rises", *d_s,
              holds=bool(d_s[1] > 0), unit="Δ S, bits, mean over layers",
              detail="mean over (model, task)"),
        Claim(f"Knockout raises the total information cost{how}",
              "I(V,L;Y) rises (some totals fall)", *d_tot, holds=bool(d_tot[1] > 0),
              unit="Δ I(V,L;Y), bits, mean over layers", detail="mean over (model, task)"),
        Claim(f"Knockout effect is weakest on high-redundancy tasks{how}",
              "strongest on vision-dependent tasks", float(rho[0]), float(rho[0]), float(rho[0]),
              holds=bool(rho[0] < 0 and rho[1] < 0.05),
              unit="Spearman rho(clean R share, Δ U_V)",
              detail=f"over (model, task); p = {rho[1]:.2g}"),
    ]  # fmt: skip
record(cfg.name, "04_knockouts", claims, {"profile": cfg.to_dict(), "sweep_samples": sweep_samples})

# %% [markdown]
# ## Summary


# %%
def ci(t):
    return f"**{t[0]:+.3f} bits** [{t[1]:+.3f}, {t[2]:+.3f}]"


lines = [
    "- In Zhang et al.'s windowed sweep, the largest drop of the answer probability under "
    f"Image↛Question is **{acc_drop[0]:.1f}%** on average over (model, task) "
    f"(95% CI [{acc_drop[1]:.1f}, {acc_drop[2]:.1f}])."
]
for variant, (d_uv, d_s, d_tot, rho) in found.items():
    lines.append(
        f"- All-layer Image→Question knockout, PCA and flows **{variant}**: late-layer $U_V$ "
        f"changes by {ci(d_uv)}, synergy by {ci(d_s)} and $I(V,L;Y)$ by {ci(d_tot)} (means "
        "over layers, models and tasks). The Spearman correlation across tasks between clean "
        f"redundancy and the late-layer $\\Delta U_V$ is **{rho[0]:.2f}** (p = {rho[1]:.2g})."
    )
Markdown("\n".join(lines))

# %% [markdown]
# ## References
#
# - Wu, Zhang, Zhou (2026). arXiv 2602.15580.
# - Zhang, Yadav, Han, Shutova (2025). *Cross-modal Information Flow in Multimodal Large
#   Language Models.* CVPR; arXiv 2411.18620.
