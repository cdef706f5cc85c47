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
# # Reproducibility
#
# **The question.** What produced this copy of the book, and how can it be produced again?
#
# **Method in brief.** This page records the profile and its settings, the git commit, the
# package versions, the hardware, and how long each chapter took to execute. All of it is read
# at build time from the records that `scripts/build_book.py` and `pidlib` write. To reproduce
# the book, check out the commit and run `make book PROFILE=<profile>`.

# %% tags=["parameters"]
profile = "cpu"

# %%
import json

import pandas as pd
from IPython.display import Markdown, display

from pidlib.book.runner import stage_table
from pidlib.config.profiles import load_profile
from pidlib.core.paths import REPO_ROOT, build_dir
from pidlib.core.provenance import provenance

cfg = load_profile(profile)
build = build_dir(cfg.name)
prov = provenance()

# %% [markdown]
# ## Results
#
# ### Build

# %%
pd.DataFrame(
    [
        ("profile", cfg.name),
        ("description", cfg.description),
        ("git commit", prov["git_commit"]),
        ("built (UTC)", prov["created"]),
        ("python", prov["python"]),
        ("platform", prov["platform"]),
        ("CPU cores", prov["hardware"]["cpus"]),
        ("GPU", prov["hardware"].get("gpu", "none")),
    ],
    columns=["", "value"],
).set_index("")

# %% [markdown]
# ### Execution time per chapter
#
# These are wall-clock seconds for the most recent execution of each chapter under this profile.
# A *warm* run reuses the content-addressed cache in `_cache/`, and a *cold* run computes
# everything. `make book` runs the chapters that need no model and no other chapter's results
# (lane `side`: the data gallery, Methods, the training report) in a second process beside the
# model chapters (lane `main`), and the scorecard and this page after both; a side chapter's
# seconds therefore overlap the main lane's, and each lane's chapters share the two cores.

# %%
timings_file = build / "timings.json"
timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
pd.DataFrame(
    [(k, v["seconds"], v.get("lane", "main"), v["finished"]) for k, v in sorted(timings.items())],
    columns=["chapter", "seconds", "lane", "finished (UTC)"],
)

# %% [markdown]
# ### Where the time goes
#
# Each chapter's seconds split by stage, for the same executions: questions (generating or
# reading them), feature extraction (and model loading, part of it when the chapter's own
# process runs the forwards: its seconds count once), layer-wise PID jobs, knockout forwards,
# the last-position probes, and each cached experiment by its name (the Methods chapter's
# tables, the knockout sweep). A stage read from the cache takes almost nothing, so a warm build
# shows near-zero stages; `other` is what no stage covers (kernel start, tables, charts,
# uncached analysis cells).

# %%
stage_table(build)

# %% [markdown]
# ### Package versions

# %%
pd.Series(prov["packages"], name="version").to_frame()

# %% [markdown]
# ### Profile settings

# %%
pd.json_normalize(cfg.to_dict(), sep=".").T.rename(columns={0: "value"})

# %% [markdown]
# ### GPU measurements
#
# `make bench-gpu` measures the extraction and knockout paths in bf16 on CUDA, on a
# random-initialised model with LLaVA-1.5-7B's real configuration. It writes
# `book/gpu-benchmark.json`, which this table reads when the file exists.

# %%
gpu_file = REPO_ROOT / "book" / "gpu-benchmark.json"
if gpu_file.exists():
    display(pd.json_normalize(json.loads(gpu_file.read_text())).T)
else:
    display(Markdown("No GPU measurement recorded yet: no CUDA machine has run `make bench-gpu`."))

# %% [markdown]
# ## Discussion

# %%
seconds = {k: v["seconds"] for k, v in timings.items()}
side = sorted(k for k, v in timings.items() if v.get("lane") == "side")
slowest = max(seconds, key=seconds.get) if seconds else None
Markdown(
    f"The chapters of this build took **{sum(seconds.values()) / 60:.1f} minutes** to execute "
    f"in all, on {prov['hardware']['cpus']} CPU core(s); the slowest was {slowest} "
    f"({seconds[slowest] / 60:.1f} minutes)"
    + (
        f". {', '.join(side)} ran beside the model chapters, so the build's wall-clock time is "
        f"shorter than that sum by up to {sum(seconds[k] for k in side) / 60:.1f} minutes"
        if side
        else ""
    )
    + f". The commit is {prov['git_commit'][:12]}"
    + (
        ", with uncommitted changes: the exact sources are not recoverable from it."
        if prov["git_commit"].endswith("-dirty")
        else ", without uncommitted changes: `git checkout` and `make book` rebuild this copy."
    )
    if seconds
    else "No execution times are recorded for this profile yet."
)

# %% [markdown]
# ## Limitations

# %%
Markdown(
    f"""
- Each time is the most recent execution of that chapter under profile {cfg.name}; a chapter
  re-run alone (`--only`) updates its own row, so the rows can come from different runs, warm
  (results read from the cache) or cold.
- The numbers are reproducible to the seed: every PID job's seed derives from (model, task,
  layer) and profile seed {cfg.seed}, but floating-point results can differ in the last digits
  across CPU types, thread counts and library versions.
"""
)
