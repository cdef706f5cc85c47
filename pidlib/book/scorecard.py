"""The scorecard's table and tallies: recorded claims in, a table with text verdict badges out."""

from __future__ import annotations

import html

import pandas as pd

from pidlib.analysis.claims import tested_on

__all__ = ["VERDICTS", "SEEDS_CHAPTER", "verdict_badge", "scorecard_table", "tally"]

#: Verdict text and badge colours (background, text, border) by ``holds`` (True/False/None).
VERDICTS = {
    True: ("holds", "#e3f4e6", "#1e6b32", "#8fcb9c"),
    False: ("does not hold", "#fbe7e4", "#9b2c1d", "#e6a79c"),
    None: ("not tested", "#eeeeee", "#444444", "#c4c4c4"),
}


def verdict_badge(holds: bool | None) -> str:
    """A text badge (HTML ``span`` with inline CSS): readable without an emoji font or CSS."""
    key = None if holds is None or pd.isna(holds) else bool(holds)
    text, bg, fg, border = VERDICTS[key]
    slug = text.replace(" ", "-")
    style = (
        f"display:inline-block;padding:0.1em 0.6em;border-radius:0.9em;font-weight:600;"
        f"font-size:0.85em;white-space:nowrap;background:{bg};color:{fg};"
        f"border:1px solid {border}"
    )
    return f'<span class="pidbook-verdict pidbook-verdict-{slug}" style="{style}">{text}</span>'


def _claim_cell(row: pd.Series) -> str:
    """The claim in bold, then its chapter, unit, rule and the pairs it was tested on in small
    print."""
    parts = [str(row[c]) for c in ("chapter", "unit", "detail") if row[c]]
    if tested := tested_on(row):
        parts.append(f"tested on {tested}")
    robustness = row.get("robustness")
    if isinstance(robustness, str) and robustness:
        # the robustness verdicts come from a second estimator (the Gaussian PID of cross-fitted
        # PCA scores, no flow) under every target, so they vary the estimator and the target
        parts.append(f"second estimator (Gaussian PID of PCA scores) per target: {robustness}")
    small = " · ".join(html.escape(p) for p in parts)
    return f"<strong>{html.escape(str(row['claim']))}</strong><br><small>{small}</small>"


#: The chapter whose claims repeat other chapters' claims with intervals across training seeds.
SEEDS_CHAPTER = "05_seeds"


def _split(claims: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The claims as their chapters test them, and the seed-aware versions (by claim text)."""
    seeded = claims["chapter"] == SEEDS_CHAPTER
    return claims[~seeded].reset_index(drop=True), claims[seeded].set_index("claim")


def _seed_cell(row: pd.Series, seeds: pd.DataFrame) -> str:
    if row["claim"] not in seeds.index:
        return "<small>not recomputed on retrained models</small>"
    s = seeds.loc[row["claim"]]
    return (f"[{s['lo']:.3g}, {s['hi']:.3g}]<br>{verdict_badge(s['holds'])}<br>"
            f"<small>{html.escape(str(s['detail']))}</small>")  # fmt: skip


def scorecard_table(claims: pd.DataFrame):
    """One row per claim, five columns that fit the text column: the claim (with its chapter,
    unit and rule), the paper's value, this build's value [95% CI], its verdict badge, and the
    interval and verdict across training seeds where the Seeds chapter recomputed the claim on
    retrained models; a pandas ``Styler`` without an index (renders as HTML)."""
    main, seeds = _split(claims)
    table = pd.DataFrame(
        {
            "claim": main.apply(_claim_cell, axis=1),
            "paper": main["paper"].map(lambda v: html.escape(str(v))),
            "this build [95% CI]": main.apply(
                lambda r: f"{r['value']:.3g}<br><small>[{r['lo']:.3g}, {r['hi']:.3g}]</small>",
                axis=1,
            ),
            "verdict": main["holds"].map(verdict_badge),
            "across seeds [95% CI]": main.apply(_seed_cell, axis=1, seeds=seeds),
        }
    )
    return table.style.hide(axis="index").set_table_styles(
        [{"selector": "td, th", "props": "vertical-align: top; text-align: left"}]
    )


def tally(claims: pd.DataFrame) -> dict[str, int]:
    """Counts of claims that hold, do not hold and were not tested, and the number tested (as
    their chapters test them); ``seed_*``: the same for the claims recomputed across seeds,
    and ``seed_missing``: the claims not recomputed on retrained models."""
    main, seeds = _split(claims)
    out = {"chapters": int(main["chapter"].nunique()),
           "seed_missing": int((~main["claim"].isin(seeds.index)).sum())}  # fmt: skip
    for prefix, rows in (("", main), ("seed_", seeds)):
        holds = rows["holds"]
        tested = holds.notna()
        out |= {
            f"{prefix}holds": int((holds[tested] == True).sum()),  # noqa: E712
            f"{prefix}fails": int((holds[tested] == False).sum()),  # noqa: E712
            f"{prefix}untested": int((~tested).sum()),
            f"{prefix}tested": int(tested.sum()),
        }
    return out
