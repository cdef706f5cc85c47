"""Altair chart builders (DataFrame in, chart out) and an offline renderer for the book.

Every figure has one stable name ``fig-<topic>``: the chart's name, the saved file stem and the
book label. :func:`figure` saves ``<name>.png`` and ``<name>.vl.json`` and glues a display
object whose HTML draws the chart (SVG, with tooltips) with a Vega bundle served by the book
itself (``_static/vega-bundle.js``, no CDN), with the PNG as the fallback for LaTeX/PDF and for
viewers without that bundle. Charts are sized for the book's text column (about 700 CSS pixels
at a 1000-pixel window): small multiples wrap, legends sit below the plot.
"""

from __future__ import annotations

import base64
import hashlib
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
    "VIEW_COLORS",
    "views_chart",
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
#: Width (CSS pixels) the plotting area of a chart may use in the book's text column.
COLUMN_WIDTH = 640


def figure_dir() -> Path:
    """Where figures are saved: ``$PIDBOOK_FIGURES`` (set by the book build) or ``figures/``."""
    return Path(os.environ.get("PIDBOOK_FIGURES", "figures"))


def write_vega_bundle(static_dir: str | Path) -> Path:
    """Write the Vega + Vega-Lite + vega-embed bundle the book's charts use (no CDN).

    The bundle is wrapped in a function scope: its top-level names (``_`` among them) would
    otherwise clash with Sphinx's ``doctools.js`` (``const _``) and the bundle would not run.
    It sets ``window.vegaEmbed``, ``window.vega`` and ``window.vegaLite`` itself."""
    path = Path(static_dir) / "vega-bundle.js"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "(function () {\n" + vlc.javascript_bundle(vl_version=_VL_VERSION) + "\n})();\n"
    )
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
            'editor:false},renderer:"svg"});}})();</script>'
        )
        return {"text/html": snippet, "image/png": png64, "text/plain": f"<Figure {self.name}>"}


def figure(
    chart: alt.TopLevelMixin, name: str, *, scale: float = 2.0, glue: bool = True
) -> Figure | None:
    """Save ``chart`` as ``<name>.png`` / ``<name>.vl.json``; glue it, or return it for display.

    With ``glue`` (the default) and myst-nb importable, the figure is glued under ``name`` and
    nothing is returned, so the cell shows nothing: the ``{glue:figure}`` directive with
    ``:name: <name>`` places it once, with its caption and number (a returned figure would be
    the cell's output too, and the book would show it twice). Otherwise the figure is returned.
    """
    if not _NAME.match(name):
        raise ValueError(f"figure name {name!r} must look like 'fig-<topic>' (lower-case, dashes)")
    chart = (
        chart.configure_axis(labelFontSize=12, titleFontSize=12)
        .configure_header(labelFontSize=13, titleFontSize=13)
        .configure_legend(
            orient="bottom",
            columns=2,
            labelFontSize=12,
            titleFontSize=12,
            labelLimit=0,
            symbolOpacity=1,  # a band's faded swatch would otherwise stand for its line
        )
    )
    spec = chart.properties(name=name.replace("-", "_")).to_dict()
    out = figure_dir()
    out.mkdir(parents=True, exist_ok=True)
    png = _png(spec, scale, out / f"{name}.png")
    (out / f"{name}.vl.json").write_text(json.dumps(spec))
    fig = Figure(name, spec, png)
    if glue:
        try:
            from myst_nb import glue as _glue
        except ImportError:  # plain Python use: nothing to glue into
            return fig
        _glue(name, fig, display=False)
        return None
    return fig


def _png(spec: dict, scale: float, path: Path) -> bytes:
    """The PNG of ``spec`` at ``scale``, written to ``path``; the PNG already there when an
    earlier build rendered the same spec at the same scale with the same renderer (recorded
    in ``<path>.key``), so a warm build renders nothing (about 0.3 s a figure)."""
    key = hashlib.sha256(
        json.dumps([spec, scale, _VL_VERSION, vlc.__version__], sort_keys=True).encode()
    ).hexdigest()
    stamp = path.with_name(path.name + ".key")
    if path.is_file() and stamp.is_file() and stamp.read_text() == key:
        return path.read_bytes()
    png = vlc.vegalite_to_png(spec, vl_version=_VL_VERSION, scale=scale)
    path.write_bytes(png)
    stamp.write_text(key)
    return png


def _panel_width(width: int | None, columns: int) -> int:
    """The width of one of ``columns`` side-by-side panels that keeps the chart in the column
    (``width``: at most this; None: as wide as fits, up to 260)."""
    return max(120, min(width or 260, COLUMN_WIDTH // max(1, columns) - 30))


def _tooltip(cols: list[str | None], quantitative: set[str]) -> list:
    """Tooltips for the named columns, in order, once each; numbers to three decimals."""
    return [
        alt.Tooltip(f"{c}:Q", format=".3f") if c in quantitative else alt.Tooltip(f"{c}:N")
        for c in dict.fromkeys(c for c in cols if c)
    ]


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
    width: int | None = None,
    height: int = 160,
    columns: int | None = None,
) -> alt.TopLevelMixin:
    """Lines of ``y`` over ``x`` (one per ``color``) with an optional ``[lo, hi]`` band.

    ``column`` alone: small multiples wrapped ``columns`` (default 3) to a row; ``column`` and
    ``row``: a grid. Panels are narrowed so the chart fits the book's text column; hovering a
    point shows its values."""
    col = alt.Color(f"{color}:N", scale=color_scale or alt.Undefined) if color else alt.Undefined
    base = alt.Chart(df).encode(x=alt.X(f"{x}:Q", title=x_title or x), color=col)
    tooltip = _tooltip([column, row, color, x, y, lo, hi], {x, y, lo, hi} - {None})
    layers = [
        base.mark_line(point=alt.OverlayMarkDef(size=24)).encode(
            y=alt.Y(f"{y}:Q", title=y_title or y), tooltip=tooltip
        )
    ]
    if lo and hi:
        layers.insert(0, base.mark_area(opacity=0.18).encode(y=f"{lo}:Q", y2=f"{hi}:Q"))
    # panels in the data's order (e.g. the profile's flows), not alphabetical
    order = {c: [str(v) for v in df[c].unique()] for c in (column, row) if c}
    if column and not row:  # wrapped small multiples
        n = df[column].nunique()
        wrap = max(1, min(columns or 3, n))  # an empty frame still draws (no panels)
        chart = alt.layer(*layers).properties(width=_panel_width(width, wrap), height=height)
        facet = alt.Facet(f"{column}:N", title=None, sort=order[column])
        return chart.facet(facet=facet, columns=wrap)
    if column or row:
        n = df[column].nunique() if column else 1
        chart = alt.layer(*layers).properties(width=_panel_width(width, n), height=height)
        kw = {"column": alt.Column(f"{column}:N", title=None, sort=order[column])} if column else {}
        if row:
            kw["row"] = alt.Row(f"{row}:N", title=None, sort=order[row])
        return chart.facet(**kw)
    return alt.layer(*layers).properties(width=min(width or 440, COLUMN_WIDTH), height=240)


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
    sources: tuple[str, str] = ("V", "L"),
) -> alt.TopLevelMixin:
    """PID atoms over ``x`` (default the layer) with optional ``[lo, hi]`` bands: ``df`` has an
    ``atom`` column and the ``x`` / ``y`` (/ ``lo`` / ``hi``) columns named here. ``sources``:
    the names of X1 and X2 in the legend (e.g. ``("Last", "L")``), in the colours of U_V, U_L."""
    labels = dict(ATOM_LABELS)
    if sources != ("V", "L"):
        a, b = sources
        labels.update(unique_1=f"U_{a} ({a}-unique)", unique_2=f"U_{b} ({b}-unique)",
                      total=f"I({a},{b};Y)")  # fmt: skip
    colors = {labels[k]: ATOM_COLORS[ATOM_LABELS[k]] for k in ATOM_LABELS}
    d = df.assign(atom=df["atom"].map(lambda a: labels.get(a, a)))
    present = [a for a in colors if a in set(d["atom"])]
    scale = alt.Scale(domain=present, range=[colors[a] for a in present])
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
    width: int = 80,
    height: int = 140,
    columns: int = 4,
) -> alt.TopLevelMixin:
    """Stacked bars of the four atoms per ``x`` (e.g. measure or task): ``df`` has atom, ``y``.

    With ``column``, one panel per value, wrapped ``columns`` to a row."""
    d = df[df["atom"].isin(["redundancy", "unique_1", "unique_2", "synergy"])]
    d = d.assign(atom=d["atom"].map(ATOM_LABELS))
    chart = (
        alt.Chart(d)
        .mark_bar()
        .encode(
            x=alt.X(f"{x}:N", title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y(f"{y}:Q", title="bits", stack="zero"),
            color=_atom_color(),
            tooltip=_tooltip([column, x, "atom", y], {y}),
        )
        .properties(width=width, height=height)
    )
    if not column:
        return chart
    return chart.facet(facet=alt.Facet(f"{column}:N", title=None), columns=columns)


#: Colours of the probed views and the information curves of :func:`views_chart`.
VIEW_COLORS = {
    "V": "#e07b39",
    "L": "#3b8bc2",
    "[V, L]": "#7b6fb0",
    "Last": "#222222",
    "majority answer": "#bbbbbb",
    "I(Last; Y)": "#222222",
    "I(V, L; Y)": "#7b6fb0",
}


def views_chart(
    accuracy: pd.DataFrame, information: pd.DataFrame, *, column: str = "model"
) -> alt.TopLevelMixin:
    """Two rows of panels over the layer, one column per ``column`` value: probe accuracy
    (``accuracy``: layer, view, accuracy, plus ``column``) and bits with 95% bands
    (``information``: layer, quantity, value, lo, hi, plus ``column``); y scales per row."""
    acc = accuracy.rename(columns={"view": "series", "accuracy": "value"}).assign(
        panel="a. probe accuracy"
    )
    bits = information.rename(columns={"quantity": "series"}).assign(panel="b. bits")
    d = pd.concat([acc, bits], ignore_index=True)
    present = [k for k in VIEW_COLORS if k in set(d["series"])]
    scale = alt.Scale(domain=present, range=[VIEW_COLORS[k] for k in present])
    chart = line_band(d, x="layer", y="value", lo="lo", hi="hi", color="series", column=column,
                      row="panel", x_title="layer", y_title=" ", color_scale=scale)  # fmt: skip
    return chart.resolve_scale(y="independent")


def bits_interval(estimate: tuple[float, float, float]) -> str:
    """``(value, lo, hi)`` in bits as signed Markdown: **+0.120 bits** [-0.002, +0.242]."""
    value, lo, hi = estimate
    return f"**{value:+.3f} bits** [{lo:+.3f}, {hi:+.3f}]"
