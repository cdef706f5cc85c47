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
# # Scorecard
#
# There is one row per headline claim of the paper. Each row gives the paper's value and this
# build's value with its 95% interval, and says whether the claim holds here. The chapters
# compute these rows and record them, with the parameters and git commit that produced them, in
# `build/<profile>/claims/`. This page only reads them. Nothing on it is typed by hand.
#
# A claim that fails here is a finding about *this* setup: by default, tiny models trained on
# synthetic scenes, not the 7B models of the paper. It does not refute the paper. The same page
# built with `PROFILE=llava` tests the paper's own setting.

# %% tags=["parameters"]
profile = "cpu"

# %%
from IPython.display import Markdown

from pidlib.analysis.claims import load_claims, tested_on
from pidlib.config.profiles import load_profile

cfg = load_profile(profile)
claims = load_claims(cfg.name)
if claims.empty:
    raise RuntimeError(f"no claims recorded for profile {cfg.name}: run the chapters first")
Markdown(
    f"Profile **{cfg.name}** ({cfg.description}); models: {', '.join(cfg.models)}; "
    f"commit(s): {', '.join(sorted(claims['commit'].unique()))}."
)

# %%
verdict = {True: "✅ holds", False: "❌ does not hold"}
table = claims.assign(
    **{
        "this build [95% CI]": claims.apply(
            lambda r: f"{r['value']:.3g} [{r['lo']:.3g}, {r['hi']:.3g}]", axis=1
        ),
        "verdict": claims["holds"].map(lambda h: verdict.get(h, "– not tested")),
        "tested on": claims.apply(tested_on, axis=1),
    }
)[["chapter", "claim", "paper", "this build [95% CI]", "unit", "verdict", "tested on", "detail"]]
table.style.hide(axis="index")

# %%
n_hold = int((claims["holds"] == True).sum())  # noqa: E712
n_test = int(claims["holds"].notna().sum())
Markdown(f"**{n_hold} of {n_test}** tested claims hold in this build (profile {cfg.name}).")
