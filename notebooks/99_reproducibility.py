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
# This page records how this copy of the book was produced: the profile and its settings, the
# git commit, the package versions, the hardware, and how long each chapter took to execute. All
# of it is read at build time from the records that `scripts/build_book.py` and `pidlib` write.
# To reproduce the book, check out the commit and run `make book PROFILE=<profile>`.

# %% tags=["parameters"]
profile = "cpu"

# %%
import json

import pandas as pd

from pidlib.config.profiles import load_profile
from pidlib.core.paths import REPO_ROOT, build_dir
from pidlib.core.provenance import provenance

cfg = load_profile(profile)
build = build_dir(cfg.name)
prov = provenance()

# %% [markdown]
# ## Build

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
# ## Execution time per chapter
#
# These are wall-clock seconds for the most recent execution of each chapter under this profile.
# A *warm* run reuses the content-addressed cache in `_cache/`, and a *cold* run computes
# everything.

# %%
timings_file = build / "timings.json"
timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
pd.DataFrame(
    [(k, v["seconds"], v["finished"]) for k, v in sorted(timings.items())],
    columns=["chapter", "seconds", "finished (UTC)"],
)

# %% [markdown]
# ## Package versions

# %%
pd.Series(prov["packages"], name="version").to_frame()

# %% [markdown]
# ## Profile settings

# %%
pd.json_normalize(cfg.to_dict(), sep=".").T.rename(columns={0: "value"})

# %% [markdown]
# ## GPU measurements
#
# `make bench-gpu` measures the extraction and knockout paths in bf16 on CUDA, on a
# random-initialised model with LLaVA-1.5-7B's real configuration. It writes
# `book/gpu-benchmark.json`, which this table reads when the file exists.

# %%
gpu_file = REPO_ROOT / "book" / "gpu-benchmark.json"
if gpu_file.exists():
    from IPython.display import display

    display(pd.json_normalize(json.loads(gpu_file.read_text())).T)
else:
    print("No GPU measurement recorded yet: no CUDA machine has run `make bench-gpu`.")
