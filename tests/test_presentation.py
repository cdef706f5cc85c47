"""How chapters read in the book: parameters once, code collapsed, no stderr, figures once."""

import json

import altair as alt
import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from pidlib.book import charts
from pidlib.book.present import (
    PARAMETERS_PROMPT,
    PROGRESS_BAR,
    collapse_code,
    fold_parameters,
    present,
    stderr_lines,
)
from pidlib.book.scorecard import scorecard_table, tally, verdict_badge
from pidlib.core.paths import REPO_ROOT


def _executed() -> nbformat.NotebookNode:
    """A notebook as papermill leaves it: parameters, injected parameters, a warning, a figure."""
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Title"),
            new_code_cell('profile = "cpu"\nmodels = None', metadata={"tags": ["parameters"]}),
            new_code_cell(
                '# Parameters\nprofile = "smoke"\n', metadata={"tags": ["injected-parameters"]}
            ),
            new_code_cell(
                "import x",
                outputs=[
                    new_output(
                        "stream",
                        name="stderr",
                        text=f"{REPO_ROOT}/w.py:3: UserWarning: careful\nA:  5%|5 | 1/20 "
                        "[00:01<00:19]\n",
                    )
                ],
            ),
            new_code_cell(
                "x.table()",
                metadata={"tags": ["remove-input"]},
                outputs=[new_output("execute_result", data={"text/plain": f"'{REPO_ROOT}/b/c'"})],
            ),
        ]
    )
    nb.metadata["papermill"] = {
        "input_path": str(REPO_ROOT / "build/smoke/src/a.ipynb"),
        "output_path": str(REPO_ROOT / "build/smoke/a.ipynb"),
    }
    return nb


def test_parameters_show_once_collapsed_with_the_injected_values_last():
    nb = fold_parameters(_executed())
    tagged = [
        c
        for c in nb.cells
        if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))
    ]
    assert len(tagged) == 1
    (cell,) = tagged
    assert cell.source.index('profile = "cpu"') < cell.source.index('profile = "smoke"')
    assert "hide-input" in cell.metadata["tags"]
    assert cell.metadata["mystnb"]["code_prompt_show"] == PARAMETERS_PROMPT
    ns: dict = {}
    exec(cell.source, ns)  # the folded cell sets what the two cells set
    assert ns["profile"] == "smoke" and ns["models"] is None


def test_code_is_collapsed_unless_a_cell_says_otherwise():
    nb = collapse_code(_executed())
    tags = [c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"]
    assert "hide-input" in tags[2]
    assert tags[3] == ["remove-input"]


def test_the_published_copy_has_no_stderr_and_no_machine_paths():
    nb = _executed()
    assert any("UserWarning" in ln for ln in stderr_lines(nb))
    assert any(PROGRESS_BAR.search(ln) for ln in stderr_lines(nb))
    out = present(nb, REPO_ROOT)
    assert stderr_lines(out) == []
    assert str(REPO_ROOT) not in json.dumps(out)
    assert out.metadata["papermill"]["output_path"] == "build/smoke/a.ipynb"
    assert out.cells[-1].outputs[0]["data"]["text/plain"] == "'b/c'"


def test_a_glued_figure_is_not_also_the_cells_output(tmp_path, monkeypatch):
    pytest.importorskip("myst_nb")
    monkeypatch.setenv("PIDBOOK_FIGURES", str(tmp_path))
    df = pd.DataFrame({"x": [0, 1], "y": [1.0, 2.0]})
    chart = alt.Chart(df).mark_line().encode(x="x:Q", y="y:Q")
    assert charts.figure(chart, "fig-a") is None  # glued: the directive places it, once
    assert isinstance(charts.figure(chart, "fig-b", glue=False), charts.Figure)
    assert (tmp_path / "fig-a.png").stat().st_size > 0 and (tmp_path / "fig-a.vl.json").exists()


def test_a_figure_is_rendered_again_only_when_its_spec_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("PIDBOOK_FIGURES", str(tmp_path))
    df = pd.DataFrame({"x": [0, 1], "y": [1.0, 2.0]})
    chart = alt.Chart(df).mark_line().encode(x="x:Q", y="y:Q")
    first = charts.figure(chart, "fig-c", glue=False)
    calls = []
    render = charts.vlc.vegalite_to_png
    monkeypatch.setattr(
        charts.vlc, "vegalite_to_png", lambda *a, **k: calls.append(1) or render(*a, **k)
    )
    again = charts.figure(chart, "fig-c", glue=False)
    assert calls == [] and again.png == first.png  # the same spec: the PNG on disk
    charts.figure(chart, "fig-c", glue=False, scale=1.0)  # another scale: rendered
    changed = charts.figure(chart.mark_point(), "fig-c", glue=False)  # another spec: rendered
    assert len(calls) == 2 and changed.png != first.png
    assert (tmp_path / "fig-c.png").read_bytes() == changed.png


@pytest.mark.parametrize("n_panels", [2, 6, 14])
def test_small_multiples_wrap_to_fit_the_text_column(tmp_path, monkeypatch, n_panels):
    from PIL import Image

    monkeypatch.setenv("PIDBOOK_FIGURES", str(tmp_path))
    rows = [
        {"panel": f"system_number_{i}", "measure": m, "atom": a, "estimate": 0.5, "x": x, "y": x}
        for i in range(n_panels)
        for m in ("mmi", "broja")
        for a in ("redundancy", "unique_1", "unique_2", "synergy")
        for x in (0, 1)
    ]
    df = pd.DataFrame(rows)
    for name, chart in {
        "fig-bars": charts.atom_bars(df, x="measure", column="panel"),
        "fig-lines": charts.line_band(df, x="x", y="y", color="atom", column="panel"),
    }.items():
        charts.figure(chart, name, scale=1, glue=False)
        width = Image.open(tmp_path / f"{name}.png").size[0]
        assert width <= charts.COLUMN_WIDTH + 80, (name, n_panels, width)


def test_verdicts_are_text_badges_not_emoji():
    claims = pd.DataFrame(
        {
            "chapter": ["02", "02", "04"],
            "claim": ["a", "b", "c <d>"],
            "paper": ["p"] * 3,
            "value": [0.5, 0.1, 0.2],
            "lo": [0.4, 0.0, 0.1],
            "hi": [0.6, 0.2, 0.3],
            "unit": ["bits"] * 3,
            "holds": [True, False, None],
            "detail": ["rule"] * 3,
        }
    )
    html = scorecard_table(claims).to_html()
    for text in ("holds", "does not hold", "not tested"):
        assert f">{text}</span>" in html
    assert "c &lt;d&gt;" in html
    assert not any(ord(ch) > 0x2FFF for ch in html)  # no emoji (or other pictographs)
    counts = {"holds": 1, "fails": 1, "untested": 1, "tested": 2, "chapters": 2}
    none = {"seed_holds": 0, "seed_fails": 0, "seed_untested": 0, "seed_tested": 0,
            "seed_missing": 3}  # fmt: skip
    assert tally(claims) == counts | none
    assert "pidbook-verdict-holds" in verdict_badge(True)
    # the Seeds chapter's version of claim "a" joins its row; the others say they were not
    # recomputed; its verdict is counted apart
    again = claims.iloc[[0]].assign(chapter="05_seeds", lo=0.1, hi=0.9, holds=False,
                                    detail="widened")  # fmt: skip
    seeded = pd.concat([claims, again])
    html = scorecard_table(seeded).to_html()
    assert html.count("<tr") == 4  # header + three claims
    assert "[0.1, 0.9]" in html and "widened" in html
    assert html.count("not recomputed on retrained models") == 2
    assert tally(seeded) == counts | none | {"seed_fails": 1, "seed_tested": 1, "seed_missing": 2}


def test_banded_lines_keep_a_legend(tmp_path, monkeypatch):
    import vl_convert as vlc

    monkeypatch.setenv("PIDBOOK_FIGURES", str(tmp_path))
    df = pd.DataFrame(
        [
            {"model": m, "layer": k, "atom": a, "value": 0.1 * k, "lo": 0.0, "hi": 1.0}
            for m in ("a", "b")
            for k in range(3)
            for a in ("redundancy", "synergy")
        ]
    )
    fig = charts.figure(
        charts.atom_trajectories(df, column="model", columns=2), "fig-x", glue=False
    )
    svg = vlc.vegalite_to_svg(fig.spec)
    assert "R (redundancy)" in svg and "S (synergy)" in svg


@pytest.mark.parametrize(
    "chapter", sorted(p.name for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
)
def test_every_chapter_reads_like_a_paper(chapter):
    """The question, the method in brief, results, discussion and limitations, in that order."""
    text = (REPO_ROOT / "notebooks" / chapter).read_text()
    parts = ["**The question.**", "Method in brief", "# ## Results", "# ## Discussion",
             "# ## Limitations"]  # fmt: skip
    where = [text.find(p) for p in parts]
    missing = [p for p, i in zip(parts, where, strict=True) if i < 0]
    assert not missing, f"{chapter}: missing {missing}"
    assert where == sorted(where), f"{chapter}: parts out of order {where}"


def test_a_faceted_chart_of_an_empty_table_still_draws():
    """A planted-prior run with no share above the floor left nothing to plot; the faceted
    chart divided by its zero panels (ZeroDivisionError) and stopped the chapter."""
    empty = pd.DataFrame({"prior": [], "share": [], "lo": [], "hi": [], "task": [], "layer": []})
    spec = charts.line_band(empty, x="prior", y="share", color="task", column="layer").to_dict()
    assert spec["columns"] == 1


def test_panels_keep_the_order_of_the_data_and_the_sources_name_the_legend():
    """Facets follow the data (the profile's flows: Image->Question first), not the alphabet;
    ``sources`` relabels the unique atoms and the total in the same colours."""
    df = pd.DataFrame(
        [
            {"flow": f, "model": m, "layer": k, "atom": a, "value": 0.1, "lo": 0.0, "hi": 0.2}
            for f in ("image->question", "image->last")
            for m in ("m2", "m1")
            for k in range(2)
            for a in ("unique_1", "unique_2", "total")
        ]
    )
    spec = charts.atom_trajectories(df, column="flow", row="model").to_dict()
    assert spec["facet"]["column"]["sort"] == ["image->question", "image->last"]
    assert spec["facet"]["row"]["sort"] == ["m2", "m1"]
    wrapped = charts.atom_trajectories(df, column="flow", columns=2).to_dict()
    assert wrapped["facet"]["sort"] == ["image->question", "image->last"]
    last = charts.atom_trajectories(df, column="flow", sources=("Last", "L")).to_dict()
    scale = last["spec"]["layer"][0]["encoding"]["color"]["scale"]
    assert scale["domain"] == ["U_Last (Last-unique)", "U_L (L-unique)", "I(Last,L;Y)"]
    assert scale["range"] == [charts.ATOM_COLORS[charts.ATOM_LABELS[a]]
                              for a in ("unique_1", "unique_2", "total")]  # fmt: skip


def test_the_scorecard_shows_the_pairs_and_the_verdict_under_each_target():
    claims = pd.DataFrame(
        {
            "chapter": ["02", "04"],
            "claim": ["a", "b"],
            "paper": ["p", "p"],
            "value": [0.5, 0.1],
            "lo": [0.4, 0.0],
            "hi": [0.6, 0.2],
            "unit": ["bits", "bits"],
            "holds": [True, False],
            "detail": ["rule", "rule"],
            "n_tested": [4, None],
            "n_pairs": [12, None],
            "robustness": ["logits: holds; hidden: does not hold", None],
        }  # fmt: skip
    )
    html = scorecard_table(claims).to_html()
    assert "tested on 4 of 12 pairs" in html
    rob = "second estimator (Gaussian PID of PCA scores) per target: logits: holds; hidden: "
    assert rob + "does not hold" in html
    assert html.count("per target:") == 1  # a claim without robustness shows none
