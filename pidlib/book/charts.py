"""Altair chart builders (DataFrame in, chart out) and an offline renderer for the book.

Every figure has one stable name ``fig-<topic>``: the chart's name, the saved file stem and the
book label. :func:`figure` saves ``<name>.png`` and ``<name>.vl.json`` and returns a display
object whose HTML draws the interactive chart with a Vega bundle served by the book itself
(``_static/vega-bundle.js``, no CDN), with the PNG as the fallback for LaTeX/PDF and for
viewers without that bundle.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from pathlib import Path

import altair as alt
import pandas as pd
import vl_convert as vlc

__all__ = [
    "ATOM_COLORS",
    "ATOM_LABELS",
    "figure_dir",
    "write_vega_bundle",
    "Figure",
    "figure",
    "line_band",
    "atom_trajectories",
    "atom_bars",
    "bits_interval",
]

#: Display names and colours of the four PID atoms (and the total), used by every chapter.
ATOM_LABELS = {
    "redundancy": "R (redundancy)",
    "unique_1": "U_V (vision-unique)",
    "unique_2": "U_L (language-unique)",
    "synergy": "S (synergy)",
    "total": "I(V,L;Y)",
}
ATOM_COLORS = {
    "R (redundancy)": "#7b6fb0",
    "U_V (vision-unique)": "#e07b39",
    "U_L (language-unique)": "#3b8bc2",
    "S (synergy)": "#4a9a5b",
    "I(V,L;Y)": "#555555",
}
_NAME = re.compile(r"^fig-[a-z0-9]+(-[a-z0-9]+)*$")
_VL_VERSION = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])


def figure_dir() -> Path:
    """Where figures are saved: ``$PIDBOOK_FIGURES`` (set by the book build) or ``figures/``."""
    return Path(os.environ.get("PIDBOOK_FIGURES", "figures"))


def write_vega_bundle(static_dir: str | Path) -> Path:
    """Write the Vega + Vega-Lite + vega-embed bundle the book's charts use (no CDN)."""
    path = Path(static_dir) / "vega-bundle.js"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(vlc.javascript_bundle(vl_version=_VL_VERSION))
    return path


class Figure:
    """A saved chart that displays as inline interactive HTML with a PNG fallback."""

    def __init__(self, name: str, spec: dict, png: bytes):
        self.name, self.spec, self.png = name, spec, png

    def _repr_mimebundle_(self, include=None, exclude=None):
        png64 = base64.b64encode(self.png).decode()
        div = f"{self.name}-view"
        spec = html.escape(json.dumps(self.spec), quote=False).replace("</", "<\\/")
        snippet = (
            f'<div id="{div}" class="pidbook-chart">'
            f'<img src="data:image/png;base64,{png64}" alt="{self.name}"/></div>'
            f'<script type="application/json" id="{div}-spec">{spec}</script>'
            "<script>(function(){var s=document.getElementById("
            f'"{div}-spec");if(window.vegaEmbed&&s){{window.vegaEmbed("#{div}",'
            "JSON.parse(s.textContent),{actions:{export:true,source:false,compiled:false,"
            'editor:false},renderer:"svg"});}}})();</script>'
        )
        return {"text/html": snippet, "image/png": png64, "text/plain": f"<Figure {self.name}>"}


def figure(chart: alt.TopLevelMixin, name: str, *, scale: float = 2.0, glue: bool = True) -> Figure:
    """Save ``chart`` as ``<name>.png`` / ``<name>.vl.json`` and return it for display.

    In a notebook executed for the book it is also glued under ``name`` so that a
    ``{glue:figure}`` directive with ``:name: <name>`` places and labels it.
    """
    if not _NAME.match(name):
        raise ValueError(f"figure name {name!r} must look like 'fig-<topic>' (lower-case, dashes)")
    spec = chart.properties(name=name.replace("-", "_")).to_dict()
    png = vlc.vegalite_to_png(spec, vl_version=_VL_VERSION, scale=scale)
    out = figure_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.png").write_bytes(png)
    (out / f"{name}.vl.json").write_text(json.dumps(spec))
    fig = Figure(name, spec, png)
    if glue:
        try:
            from myst_nb import glue as _glue

            _glue(name, fig, display=False)
        except ImportError:  # plain Python use: nothing to glue into
            pass
    return fig


def line_band(
    df: pd.DataFrame,
    *,
    x: str,
    y: str,
    lo: str | None = None,
    hi: str | None = None,
    color: str | None = None,
    column: str | None = None,
    row: str | None = None,
    x_title: str | None = None,
    y_title: str | None = None,
    color_scale: alt.Scale | None = None,
    width: int = 220,
    height: int = 150,
    columns: int | None = None,
) -> alt.TopLevelMixin:
    """Lines of ``y`` over ``x`` (one per ``color``) with an optional ``[lo, hi]`` band."""
    col = alt.Color(f"{color}:N", scale=color_scale or alt.Undefined) if color else alt.Undefined
    base = alt.Chart(df).encode(x=alt.X(f"{x}:Q", title=x_title or x), color=col)
    tooltip = [c for c in (x, y, lo, hi, color, column, row) if c]
    layers = [
        base.mark_line(point=alt.OverlayMarkDef(size=18)).encode(
            y=alt.Y(f"{y}:Q", title=y_title or y), tooltip=tooltip
        )
    ]
    if lo and hi:
        layers.insert(0, base.mark_area(opacity=0.18).encode(y=f"{lo}:Q", y2=f"{hi}:Q"))
    chart = alt.layer(*layers).properties(width=width, height=height)
    if column and columns and not row:  # wrapped small multiples
        return chart.facet(facet=alt.Facet(f"{column}:N", title=None), columns=columns)
    if column or row:
        kw = {"column": alt.Column(f"{column}:N", title=None)} if column else {}
        if row:
            kw["row"] = alt.Row(f"{row}:N", title=None)
        return chart.facet(**kw)
    return chart.interactive()


def atom_trajectories(
    df: pd.DataFrame,
    *,
    x: str = "layer",
    y: str = "value",
    lo: str | None = "lo",
    hi: str | None = "hi",
    column: str | None = None,
    row: str | None = None,
    columns: int | None = None,
    x_title: str = "layer",
    y_title: str = "bits",
) -> alt.TopLevelMixin:
    """PID atoms over ``x`` (default the layer) with optional ``[lo, hi]`` bands: ``df`` has an
    ``atom`` column and the ``x`` / ``y`` (/ ``lo`` / ``hi``) columns named here."""
    d = df.assign(atom=df["atom"].map(lambda a: ATOM_LABELS.get(a, a)))
    present = [a for a in ATOM_COLORS if a in set(d["atom"])]
    scale = alt.Scale(domain=present, range=[ATOM_COLORS[a] for a in present])
    return line_band(
        d,
        x=x,
        y=y,
        lo=lo if lo in d else None,
        hi=hi if hi in d else None,
        color="atom",
        column=column,
        row=row,
        columns=columns,
        x_title=x_title,
        y_title=y_title,
        color_scale=scale,
    )


def _atom_color() -> alt.Color:
    atoms = [ATOM_LABELS[a] for a in ("redundancy", "unique_1", "unique_2", "synergy")]
    return alt.Color(
        "atom:N",
        sort=atoms,
        scale=alt.Scale(domain=atoms, range=[ATOM_COLORS[a] for a in atoms]),
    )


def atom_bars(
    df: pd.DataFrame,
    *,
    x: str,
    y: str = "estimate",
    column: str | None = None,
    width: int = 60,
    height: int = 160,
) -> alt.TopLevelMixin:
    """Stacked bars of the four atoms per ``x`` (e.g. measure or task): ``df`` has atom, ``y``."""
    d = df[df["atom"].isin(["redundancy", "unique_1", "unique_2", "synergy"])]
    d = d.assign(atom=d["atom"].map(ATOM_LABELS))
    chart = (
        alt.Chart(d)
        .mark_bar()
        .encode(
            x=alt.X(f"{x}:N", title=None),
            y=alt.Y(f"{y}:Q", title="bits", stack="zero"),
            color=_atom_color(),
            tooltip=[c for c in (column, x, "atom") if c] + [alt.Tooltip(f"{y}:Q", format=".3f")],
        )
        .properties(width=width, height=height)
    )
    return chart.facet(column=alt.Column(f"{column}:N", title=None)) if column else chart


def bits_interval(estimate: tuple[float, float, float]) -> str:
    """``(value, lo, hi)`` in bits as signed Markdown: **+0.120 bits** [-0.002, +0.242]."""
    value, lo, hi = estimate
    return f"**{value:+.3f} bits** [{lo:+.3f}, {hi:+.3f}]"
