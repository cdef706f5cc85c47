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
# **The question.** Which of the paper's headline claims hold in this build?
#
# **Method in brief.** Each chapter turns its results into claims: the paper's value, this
# build's value with its 95% interval, and a verdict by a rule stated under the claim. The
# Seeds chapter recomputes the claims it can on retrained models and gives each an interval
# *across seeds* (the build's interval widened by the retrains' spread) with the same rule's
# verdict, in the last column. The chapters record their claims, with the parameters and git
# commit that produced them, in `build/<profile>/claims/`. This page only reads those records;
# nothing on it is typed by hand.

# %% tags=["parameters"]
profile = "cpu"

# %%
from IPython.display import Markdown

from pidlib.analysis.claims import load_claims
from pidlib.book.scorecard import scorecard_table, tally
from pidlib.config.profiles import load_profile

cfg = load_profile(profile)
claims = load_claims(cfg.name)
if claims.empty:
    raise RuntimeError(f"no claims recorded for profile {cfg.name}: run the chapters first")
count = tally(claims)
Markdown(
    f"Profile **{cfg.name}** ({cfg.description}); models: {', '.join(cfg.models)}; "
    f"commit(s): {', '.join(sorted(claims['commit'].unique()))}."
)

# %% [markdown]
# ## Results

# %%
scorecard_table(claims)

# %%
Markdown(
    f"**{count['holds']} of {count['tested']}** tested claims hold in this build "
    f"(profile {cfg.name}); {count['fails']} do not, and {count['untested']} could not be "
    f"tested. They come from {count['chapters']} chapters. Across training seeds, "
    + (f"{count['seed_holds']} of {count['seed_tested']} recomputed claims hold and "
       f"{count['seed_fails']} do not ({count['seed_untested']} not tested); "
       + (f"the other {count['seed_missing']} claim(s) were not recomputed on retrained "
          "models, so their intervals cover one trained model per family."
          if count["seed_missing"] else "every claim was recomputed on the retrained models.")
       if count["seed_tested"] + count["seed_untested"]
       else "nothing was recomputed: this profile has no retrained models.")
)  # fmt: skip

# %% [markdown]
# ## Discussion

# %%
by_chapter = claims.assign(tested=claims["holds"].notna(), held=claims["holds"] == True)  # noqa: E712
by_chapter = by_chapter.groupby("chapter")[["tested", "held"]].sum()
Markdown(
    "\n".join(
        f"- {chapter}: {int(row.held)} of {int(row.tested)} tested claims hold."
        for chapter, row in by_chapter.iterrows()
    )
    + "\n\nA claim that fails here is a finding about *this* setup: by default, tiny models "
    "trained on synthetic scenes, not the 7B models of the paper. It does not refute the paper. "
    "The same page built with `PROFILE=llava` tests the paper's own setting."
)

# %% [markdown]
# ## Limitations

# %%
Markdown(
    f"""
- Each verdict applies its rule to a 95% interval, claim by claim, with no correction for the
  {count["tested"]} claims tested together: at that level, some verdicts can come out either
  way by chance alone.
- This build used {cfg.samples_per_task} questions per task, {cfg.pid.n_bootstrap}
  half-subsamples and {cfg.pid.n_seeds} cross-fitting split(s) and flow seed(s) per PID
  estimate (the {cfg.pid.scheme} scheme of the Methods chapter): fewer samples give wider
  intervals, which make "holds" harder to reach for claims that need an interval to clear a
  bound.
- A claim is "not tested" when a bound its rule rests on is undefined in this build: an
  interval from a single value, or a statistic of too few or constant values.
"""
)
