"""The rendered book in a real browser: headless Chromium, offline, every page of the smoke build.

Two tiers. Without a marker: the checker itself, on small pages built here around a real chart
(so it runs in ``make test`` wherever Chromium is installed); each tampering must fail it.
Marked ``browser`` (``.ci/run`` runs them after ``make book PROFILE=smoke``): every page of the
built smoke book passes, and a tampered copy of one of its pages fails.

Without Chromium these tests skip and say what to install; ``PIDBOOK_REQUIRE_BROWSER=1`` (set by
``.ci/run``) turns a missing browser or book into a failure.
"""

import os
import re
import shutil
import time
from pathlib import Path

import altair as alt
import pandas as pd
import pytest

from pidlib.book import charts
from pidlib.book.browser import INSTALL_HINT, Browser, find_chromium
from pidlib.book.pagecheck import book_pages, check_book, check_page, summary
from pidlib.core.paths import REPO_ROOT

REQUIRED = os.environ.get("PIDBOOK_REQUIRE_BROWSER") == "1"
SMOKE_HTML = REPO_ROOT / "_build" / "smoke" / "_build" / "html"
SMOKE_FIGURES = REPO_ROOT / "build" / "smoke" / "figures"
SCREENSHOTS = SMOKE_HTML.parent / "screenshots"
BAR = "tiny-llava-1.5 ChooseAttr:  45%|####5     | 81/180 [00:03<00:04, 20.1q/s]"


def _need(ok: bool, why: str) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    _need(find_chromium() is not None, f"no Chromium: {INSTALL_HINT}")
    with Browser() as b:
        yield b


# --- the checker on small pages around a real chart ------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A folder with the book's Vega bundle and a page template holding one real chart."""
    root = tmp_path_factory.mktemp("pages")
    charts.write_vega_bundle(root)
    os.environ["PIDBOOK_FIGURES"] = str(root / "figures")
    try:
        df = pd.DataFrame({"layer": [0, 1, 2], "value": [0.1, 0.4, 0.2]})
        chart = alt.Chart(df).mark_line().encode(x="layer:Q", y="value:Q")
        fig = charts.figure(chart, "fig-demo", glue=False)
    finally:
        os.environ.pop("PIDBOOK_FIGURES")
    snippet = fig._repr_mimebundle_()["text/html"]
    page = (
        '<html><head><script src="vega-bundle.js"></script></head><body>'
        '<article class="bd-article"><h1>Demo</h1><p>Prose.</p>'
        f'<figure id="fig-demo">{snippet}<figcaption>A demo chart.</figcaption></figure>'
        "<!--extra--></article></body></html>"
    )
    return root, page, snippet


def _check(browser, root: Path, name: str, html: str) -> list[str]:
    path = root / f"{name}.html"
    path.write_text(html)
    tab = browser.page()
    try:
        return list(check_page(tab, path, root, wait_ms=5000).problems)
    finally:
        tab.close()


def test_the_checker_passes_a_clean_page(browser, demo):
    root, page, _ = demo
    assert _check(browser, root, "clean", page) == []


TAMPERINGS = {
    # a figure shown once as a cell output and again glued (the bug of fb6fb5e)
    "duplicated figure": (lambda s: s, "fig-demo: the chart is on the page 2 times"),
    "leaked progress bar": (
        lambda s: f'<div class="output stream"><pre>{BAR}</pre></div>',
        "visible progress bar",
    ),
    "stderr block": (lambda s: '<div class="output stderr"><pre>done</pre></div>', "stderr"),
    "traceback": (
        lambda s: "<pre>Traceback (most recent call last):\n  ValueError: x</pre>",
        "visible traceback",
    ),
    "warning": (
        lambda s: "<pre>features.py:282: UserWarning: only 3 of the 120 requested</pre>",
        "visible warning",
    ),
    "network request": (
        lambda s: '<img src="https://example.com/pixel.png">',
        "request left the machine: https://example.com/pixel.png",
    ),
    "formula not typeset": (lambda s: '<span class="math">\\(x^2\\)</span>', "MathJax typeset 0"),
    "machine path": (lambda s: f"<p>{REPO_ROOT}/_cache/x</p>", "the build machine's path"),
}


@pytest.mark.parametrize("what", sorted(TAMPERINGS))
def test_the_checker_fails_a_tampered_page(browser, demo, what):
    root, page, snippet = demo
    extra, expected = TAMPERINGS[what]
    problems = _check(
        browser, root, what.replace(" ", "-"), page.replace("<!--extra-->", extra(snippet))
    )
    assert any(expected in p for p in problems), problems


def test_a_chart_wider_than_the_column_fails(browser, demo):
    root, page, snippet = demo
    narrow = page.replace(
        '<article class="bd-article">', '<article class="bd-article" style="width:200px">'
    )
    problems = _check(browser, root, "narrow", narrow)
    assert any("wider than the text column" in p for p in problems), problems


# --- the built smoke book --------------------------------------------------------------------


def _smoke_book() -> Path:
    _need(
        (SMOKE_HTML / "build" / "book").is_dir(),
        f"no smoke build at {SMOKE_HTML.relative_to(REPO_ROOT)}: run make book PROFILE=smoke",
    )
    return SMOKE_HTML


@pytest.mark.browser
def test_every_page_of_the_smoke_book_reads_clean(browser):
    html = _smoke_book()
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    expected = sorted(p.stem for p in SMOKE_FIGURES.glob("fig-*.png"))
    t0 = time.perf_counter()
    reports = check_book(html, screenshots=SCREENSHOTS, expected_figures=expected, browser=browser)
    text = summary(reports) + f"\n{len(reports) - 1} pages in {time.perf_counter() - t0:.1f} s\n"
    (SCREENSHOTS / "report.txt").write_text(text)
    print(text)
    pages = book_pages(html)
    assert len(pages) >= 9 and expected
    assert sorted(p.name for p in SCREENSHOTS.glob("*.png")) == sorted(
        f"{p.stem}.png" for p in pages
    )
    assert sum(len(r.figures) for r in reports) == len(expected)
    assert any(r.formulas for r in reports)
    assert not [r for r in reports if r.problems], text


@pytest.mark.browser
def test_the_published_sources_name_no_path_of_the_build_machine():
    html = _smoke_book()
    leaks = [
        str(p.relative_to(html))
        for p in html.rglob("*")
        if p.suffix in (".html", ".ipynb", ".md", ".txt", ".js")
        and "_static" not in p.parts
        and str(REPO_ROOT) in p.read_text(errors="replace")
    ]
    assert leaks == []


@pytest.mark.browser
def test_a_tampered_copy_of_a_built_page_fails(browser, tmp_path):
    html = _smoke_book()
    copy = tmp_path / "html"
    shutil.copytree(html, copy)
    page = next(p for p in book_pages(copy) if "pidbook-chart" in p.read_text())
    source = page.read_text()
    block = re.search(r'<div id="(fig-[a-z0-9-]+)-view".*?</script>.*?</script>', source, re.S)
    assert block, page
    name = block.group(1)
    leak = (
        '<div class="cell_output docutils container"><div class="output stream '
        f'highlight-myst-ansi notranslate"><div class="highlight"><pre>{BAR}</pre></div></div>'
        "</div>"
    )
    tampered = source.replace(block.group(0), block.group(0) * 2, 1)
    tampered = tampered.replace("</article>", leak + "</article>", 1)
    page.write_text(tampered)
    tab = browser.page()
    try:
        report = check_page(tab, page, copy)
    finally:
        tab.close()
    assert any(f"{name}: the chart is on the page 2 times" in p for p in report.problems)
    assert any(p.startswith("visible progress bar") for p in report.problems)
