"""The scorecard's table and tallies: recorded claims in, a table with text verdict badges out."""

from __future__ import annotations

import html

import pandas as pd

from pidlib.analysis.claims import tested_on

__all__ = ["VERDICTS", "verdict_badge", "scorecard_table", "tally"]

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


def scorecard_table(claims: pd.DataFrame):
    """One row per claim, four columns that fit the text column: the claim (with its chapter,
    unit and rule), the paper's value, this build's value [95% CI] and a verdict badge; a pandas
    ``Styler`` without an index (renders as HTML)."""
    table = pd.DataFrame(
        {
            "claim": claims.apply(_claim_cell, axis=1),
            "paper": claims["paper"].map(lambda v: html.escape(str(v))),
            "this build [95% CI]": claims.apply(
                lambda r: f"{r['value']:.3g}<br><small>[{r['lo']:.3g}, {r['hi']:.3g}]</small>",
                axis=1,
            ),
            "verdict": claims["holds"].map(verdict_badge),
        }
    )
    return table.style.hide(axis="index").set_table_styles(
        [{"selector": "td, th", "props": "vertical-align: top; text-align: left"}]
    )


def tally(claims: pd.DataFrame) -> dict[str, int]:
    """Counts of claims that hold, do not hold and were not tested, and the number tested."""
    holds = claims["holds"]
    tested = holds.notna()
    return {
        "holds": int((holds[tested] == True).sum()),  # noqa: E712
        "fails": int((holds[tested] == False).sum()),  # noqa: E712
        "untested": int((~tested).sum()),
        "tested": int(tested.sum()),
        "chapters": int(claims["chapter"].nunique()),
    }
