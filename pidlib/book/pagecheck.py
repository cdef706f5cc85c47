"""What a reader's browser must show on every page of the built book, checked in headless Chromium.

Each page is opened from ``file://`` with the network off (:mod:`pidlib.book.browser`). A probe
script waits for MathJax and for the Vega charts, then reports what the reader sees; the rules
in :func:`page_problems` turn that into a list of problems (empty: the page passes):

- every ``fig-*`` on the page is drawn exactly once, as an SVG or canvas, inside its numbered
  figure with a caption, and fits the text column without being shrunk;
- every formula was typeset by MathJax, without TeX errors; no output is wider than the column;
- no visible text of a progress bar, traceback or warning, no stderr or error output block,
  and no absolute path of the build machine (in the visible text or anywhere in the HTML);
- no request left the machine, no local file failed to load, no script error.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pidlib.book.browser import Browser, Page
from pidlib.book.present import PROGRESS_BAR
from pidlib.core.paths import REPO_ROOT

__all__ = [
    "LEAKS",
    "KNOWN_NOISE",
    "PageReport",
    "book_pages",
    "page_problems",
    "check_page",
    "check_book",
    "summary",
]

#: Visible text that must never appear on a page: (what, pattern).
LEAKS: tuple[tuple[str, re.Pattern], ...] = (
    ("progress bar", PROGRESS_BAR),
    ("traceback", re.compile(r"Traceback \(most recent call last\)")),
    ("warning", re.compile(r"\b[A-Z][A-Za-z]*Warning\b\s*[:(]")),
    ("warning", re.compile(r"warnings\.warn\(")),
    ("untypeset TeX", re.compile(r"\\\(|\\\[|\$(?=[^\s$\d])[^$\n]{0,80}?(?<!\s)\$")),
)
_SAFE_SCHEMES = ("file:", "data:", "blob:", "about:")
#: Console messages of the book's toolchain that are not the book's doing, and harmless:
#: jupyter-book 1.0.4 emits sphinx-thebe's config script twice (its second ``const`` fails; the
#: first has set everything, and thebe is off), and pydata-sphinx-theme logs an empty stored
#: colour mode on a fresh profile before it falls back to "auto".
KNOWN_NOISE: tuple[str, ...] = (
    "Identifier 'THEBE_JS_URL' has already been declared",
    "Got invalid theme mode",
)

#: The probe: waits for MathJax and the charts (at most ``wait`` ms), then reports the page.
_PROBE = r"""
(async (wait) => {
  const t0 = Date.now();
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await Promise.race([MathJax.startup.promise, new Promise(r => setTimeout(r, wait))]);
  }
  const drawn = el => el.querySelectorAll('svg.marks, canvas.marks').length > 0;
  while (Date.now() - t0 < wait &&
         [...document.querySelectorAll('.pidbook-chart')].some(el => !drawn(el))) {
    await new Promise(r => setTimeout(r, 100));
  }
  const col = document.querySelector('article.bd-article, main, [role=main]') || document.body;
  const cs = getComputedStyle(col);
  const colWidth = col.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  const figures = {};
  const fig = name => (figures[name] = figures[name] || {views: 0, drawn: 0, figure: 0,
                                                         caption: '', fits: true, scale: 1});
  for (const el of document.querySelectorAll('.pidbook-chart')) {
    const f = fig(el.id.replace(/-view$/, ''));
    f.views += 1;
    const marks = el.querySelectorAll('svg.marks, canvas.marks');
    f.drawn += marks.length;
    for (const m of marks) {
      const w = m.getBoundingClientRect().width;
      const natural = m.width && m.width.baseVal ? m.width.baseVal.value : m.width;
      f.fits = f.fits && w <= colWidth + 2;
      if (natural) f.scale = Math.min(f.scale, w / natural);
    }
  }
  for (const el of document.querySelectorAll('figure[id^="fig-"]')) {
    const f = fig(el.id);
    f.figure += 1;
    const cap = el.querySelector('figcaption');
    f.caption = cap ? cap.innerText.trim() : '';
  }
  const math = [...document.querySelectorAll('.math')];
  const wide = [...document.querySelectorAll('.cell_output')]
    .filter(el => el.offsetParent !== null && el.scrollWidth > el.clientWidth + 2)
    .map(el => (el.innerText || '').trim().slice(0, 60));
  return {
    title: document.title,
    text: document.body.innerText,
    figures,
    math: math.length,
    typeset: math.filter(m => m.querySelector('mjx-container')).length,
    tex_errors: document.querySelectorAll('mjx-merror').length,
    output_blocks: {
      stderr: document.querySelectorAll('.output.stderr, .stderr').length,
      error: document.querySelectorAll('.output.error, .output.traceback').length,
    },
    column_width: colWidth,
    wide_outputs: wide,
  };
})(%d)
"""


@dataclass(frozen=True)
class PageReport:
    """One page: its path under the HTML folder, problems found, figures drawn, screenshot."""

    page: str
    problems: tuple[str, ...]
    figures: tuple[str, ...] = ()
    formulas: int = 0
    screenshot: Path | None = None
    seconds: float = 0.0
    requests: tuple[str, ...] = field(default=(), repr=False)


def book_pages(html_dir: Path) -> list[Path]:
    """The book's HTML pages (not ``_static`` etc., not the bare redirect ``index.html``)."""
    pages = []
    for path in sorted(Path(html_dir).rglob("*.html")):
        rel = path.relative_to(html_dir)
        if any(part.startswith("_") for part in rel.parts[:-1]):
            continue
        if rel.name == "index.html" and 'http-equiv="Refresh"' in path.read_text()[:2000]:
            continue
        pages.append(path)
    return pages


def _machine_paths() -> list[str]:
    """Absolute paths that identify the build machine: the checkout and the home folder."""
    home = str(Path.home())
    return [p for p in {str(REPO_ROOT), home} if p not in ("/", "")]


def page_problems(
    facts: dict,
    *,
    html: str = "",
    requests: Iterable[str] = (),
    failed: Iterable[str] = (),
    errors: Iterable[str] = (),
) -> list[str]:
    """The problems in one page's probe ``facts`` (see the module docstring); empty if none."""
    out = []
    for name, f in sorted(facts["figures"].items()):
        if f["views"] != 1:
            out.append(f"{name}: the chart is on the page {f['views']} times (expected once)")
        if f["drawn"] != f["views"]:
            out.append(f"{name}: {f['drawn']} of {f['views']} chart(s) drawn as SVG/canvas")
        if f["figure"] != 1:
            out.append(f"{name}: {f['figure']} numbered figure(s) (expected one, with a caption)")
        elif not f["caption"]:
            out.append(f"{name}: the figure has no caption")
        if not f["fits"]:
            out.append(f"{name}: wider than the text column ({facts['column_width']:.0f} px)")
        if f["scale"] < 0.95:
            out.append(f"{name}: drawn at {f['scale']:.0%} of its size (text shrunk)")
    for head in facts.get("wide_outputs", []):
        out.append(f"an output is wider than the text column: {head!r}...")
    if facts["typeset"] < facts["math"]:
        out.append(f"MathJax typeset {facts['typeset']} of {facts['math']} formulas")
    if facts["tex_errors"]:
        out.append(f"{facts['tex_errors']} TeX error(s) in the formulas")
    for kind, n in facts["output_blocks"].items():
        if n:
            out.append(f"{n} {kind} output block(s) shown")
    text = facts["text"]
    for what, pattern in LEAKS:
        hit = pattern.search(text)
        if hit:
            line = text[max(0, hit.start() - 40) : hit.end() + 40].replace("\n", " ")
            out.append(f"visible {what}: ...{line}...")
    for path in _machine_paths():
        if path in text or path in html:
            out.append(f"the build machine's path {path} is in the page")
    out += [f"request left the machine: {u}" for u in requests if not u.startswith(_SAFE_SCHEMES)]
    out += [f"failed to load: {u}" for u in failed if u.startswith("file:")]
    out += [f"script error: {e}" for e in errors if not any(k in e for k in KNOWN_NOISE)]
    return out


def check_page(
    page: Page, path: Path, html_dir: Path, *, screenshots: Path | None = None, wait_ms: int = 15000
) -> PageReport:
    """Open ``path`` in ``page``, probe it, save a full-page screenshot, return the report."""
    t0 = time.perf_counter()
    page.goto(path.resolve().as_uri())
    facts = page.evaluate(_PROBE % wait_ms, timeout=wait_ms / 1000 + 30)
    shot = None
    if screenshots is not None:
        shot = page.screenshot(Path(screenshots) / f"{path.stem}.png")
    requests = page.requests()
    problems = page_problems(
        facts,
        html=path.read_text(),
        requests=requests,
        failed=page.failed_requests(),
        errors=page.errors(),
    )
    return PageReport(
        page=str(path.relative_to(html_dir)),
        problems=tuple(problems),
        figures=tuple(sorted(facts["figures"])),
        formulas=facts["math"],
        screenshot=shot,
        seconds=round(time.perf_counter() - t0, 2),
        requests=tuple(requests),
    )


def check_book(
    html_dir: Path,
    *,
    screenshots: Path | None = None,
    expected_figures: Iterable[str] | None = None,
    browser: Browser | None = None,
) -> list[PageReport]:
    """Check every page of the book in ``html_dir``; each page opens in a fresh tab.

    ``expected_figures`` (e.g. the stems of the build's saved ``fig-*.png``): each must be on
    exactly one page; a missing or repeated one is a problem of a final ``(book)`` report.
    """
    html_dir = Path(html_dir)
    own = browser is None
    browser = browser or Browser()
    reports = []
    try:
        for path in book_pages(html_dir):
            page = browser.page()
            try:
                reports.append(check_page(page, path, html_dir, screenshots=screenshots))
            finally:
                page.close()
    finally:
        if own:
            browser.close()
    if expected_figures is not None:
        where: dict[str, list[str]] = {}
        for r in reports:
            for name in r.figures:
                where.setdefault(name, []).append(r.page)
        problems = [
            f"{n}: on {len(where.get(n, []))} pages {where.get(n, [])} (expected one)"
            for n in sorted(set(expected_figures))
            if len(where.get(n, [])) != 1
        ]
        reports.append(PageReport(page="(book)", problems=tuple(problems)))
    return reports


def summary(reports: list[PageReport]) -> str:
    """A readable multi-line report (one line per page, then its problems)."""
    lines = []
    for r in reports:
        lines.append(
            f"{r.page}: {len(r.figures)} figure(s), {r.formulas} formula(s), "
            f"{r.seconds:.1f} s, {'ok' if not r.problems else 'FAILED'}"
        )
        lines += [f"    - {p}" for p in r.problems]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m pidlib.book.pagecheck <html dir> [<screenshot dir>]
    import sys

    reps = check_book(
        Path(sys.argv[1]), screenshots=Path(sys.argv[2]) if len(sys.argv) > 2 else None
    )
    print(summary(reps))
    print(json.dumps({"failed": sum(bool(r.problems) for r in reps)}))
    sys.exit(1 if any(r.problems for r in reps) else 0)
