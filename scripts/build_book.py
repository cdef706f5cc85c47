"""Build the book: execute every chapter with papermill under one profile, then Jupyter Book.

    python scripts/build_book.py --profile cpu            # what `make book` runs
    python scripts/build_book.py --profile smoke --only 01_methods

Executed notebooks go to ``build/<profile>/`` (git-ignored), complete with what each chapter
wrote to stderr (reported on the console too). The book publishes a presented copy of each in
``build/book/`` (:func:`pidlib.book.present.present`: parameters folded into one collapsed
cell, code one click away, no stderr, no absolute paths). HTML goes to ``_build/html`` for the
default profile and to ``_build/<profile>/_build/html`` for any other, so profiles never
overwrite each other. Any error in any notebook stops the build (no ``allow_errors``); Sphinx
warnings are reported all at once and fail the build.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import subprocess
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

# This checkout's pidlib, also where one virtual environment serves several checkouts.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nbformat  # noqa: E402

from pidlib.book.charts import write_vega_bundle  # noqa: E402
from pidlib.book.present import PROGRESS_BAR, present, stderr_lines  # noqa: E402
from pidlib.book.runner import (  # noqa: E402
    cache_state,
    chapters,
    execute_chapter,
    lanes,
    record_build,
)
from pidlib.config.profiles import load_profile  # noqa: E402
from pidlib.core.cache import cache_root  # noqa: E402
from pidlib.core.paths import REPO_ROOT as ROOT  # noqa: E402
from pidlib.core.paths import build_dir  # noqa: E402
from pidlib.core.provenance import provenance  # noqa: E402

DEFAULT_PROFILE = "cpu"
#: MathJax 3 parts the book needs, relative to the package's ``es5`` folder (the combined TeX +
#: MathML + CommonHTML component, its web fonts, and the TeX extensions it may autoload).
MATHJAX_PARTS = ("tex-mml-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions")


def utc_now() -> str:
    """Now, UTC, to the second: ``time.gmtime()`` with no argument reads C's ``time()``, a coarse
    clock that can lag ``time.time()`` across a second boundary, so pass the fine clock."""
    return time.strftime("%FT%TZ", time.gmtime(time.time()))


def write_mathjax(static_dir: Path) -> Path:
    """Copy MathJax 3 (from the ``django-static-mathjax`` wheel) into ``static_dir/mathjax`` so
    formulas render offline; ``_config.yml`` points ``mathjax_path`` at it."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    roots = list(spec.submodule_search_locations or []) if spec else []
    src = Path(roots[0]) / "static" / "mathjax" / "es5" if roots else None
    if src is None or not (src / MATHJAX_PARTS[0]).is_file():
        raise SystemExit("MathJax files not found: pip install django-static-mathjax (see README)")
    dest = static_dir / "mathjax"
    shutil.rmtree(dest, ignore_errors=True)
    for part in MATHJAX_PARTS:
        target = dest / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if (src / part).is_dir():
            shutil.copytree(src / part, target)
        else:
            shutil.copy2(src / part, target)
    return dest / MATHJAX_PARTS[0]


def report_stderr(executed: Path, limit: int = 20) -> list[str]:
    """Print what a chapter wrote to stderr on the console (warnings line by line, progress bars
    counted): the book leaves all of it out. Returns the warning lines."""
    lines = stderr_lines(nbformat.read(executed, as_version=4))
    bars = [ln for ln in lines if PROGRESS_BAR.search(ln)]
    other = [ln for ln in lines if not PROGRESS_BAR.search(ln)]
    if lines:
        print(f"[book]   {executed.stem} wrote to stderr (not in the book): {len(other)} line(s)"
              f" of warnings, {len(bars)} line(s) of progress bars")  # fmt: skip
        for line in other[:limit]:
            print(f"[book]     {line}")
        if len(other) > limit:
            print(f"[book]     ... {len(other) - limit} more in {executed.relative_to(ROOT)}")
    return other


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=DEFAULT_PROFILE)
    ap.add_argument("--only", nargs="*", help="notebook stems to execute (default: all)")
    ap.add_argument("--no-html", action="store_true", help="execute only, skip jupyter-book")
    args = ap.parse_args(argv)
    profile = load_profile(args.profile)  # fail fast on a bad profile, before any work
    # A profile file may live anywhere: chapters get its absolute path (they run in the
    # repository root), and folders are named from the profile's name, never from the argument.
    given = Path(args.profile)
    arg = str(given.resolve()) if given.suffix in (".yaml", ".yml") else args.profile
    out_dir = build_dir(profile.name)
    figures = out_dir / "figures"
    timings_path = out_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    try:
        sources = chapters(args.only)
    except ValueError as err:
        ap.error(f"--only: {err}")
    build = {"profile": profile.name, "started": utc_now(),
             **cache_state(cache_root()), "all_chapters": not args.only, "chapters": {},
             "html": None}  # fmt: skip

    def finished(src: Path, seconds: float, lane: str, at: str | None = None) -> None:
        timings[src.stem] = {"seconds": round(seconds, 1), "finished": at or utc_now(),
                             "lane": lane}  # fmt: skip
        timings_path.write_text(json.dumps(timings, indent=1))
        build["chapters"][src.stem] = round(seconds, 1)
        print(f"[book]   {src.stem}: {seconds:.1f} s{' (side lane)' if lane == 'side' else ''}",
              flush=True)  # fmt: skip
        report_stderr(out_dir / f"{src.stem}.ipynb")

    def run(src: Path, lane: str = "main") -> None:
        print(f"[book] executing {src.name} (profile {profile.name}) ...", flush=True)
        finished(src, execute_chapter(src, out_dir / f"{src.stem}.ipynb", {"profile": arg},
                                      figures=figures), lane)  # fmt: skip

    main_lane, side, last = lanes(sources)
    if main_lane and side:
        # the side lane in a second process, one chapter after another, beside the main lane
        names = ", ".join(s.name for s in side)
        print(f"[book] executing {names} (profile {profile.name}) in a second process, beside "
              "the model chapters ...", flush=True)  # fmt: skip
        build["side_lane"] = [s.stem for s in side]
        spawn = multiprocessing.get_context("spawn")
        ended: dict[str, str] = {}  # when each side chapter ended, not when it was collected
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            pending: list[tuple[Path, Future]] = [
                (s, pool.submit(execute_chapter, s, out_dir / f"{s.stem}.ipynb",
                                {"profile": arg}, figures=figures)) for s in side
            ]  # fmt: skip
            for s, fut in pending:
                fut.add_done_callback(lambda _, stem=s.stem: ended.setdefault(stem, utc_now()))
            try:
                for src in main_lane:
                    run(src)
                    while pending and pending[0][1].done():
                        src_side, done = pending.pop(0)
                        finished(src_side, done.result(), "side", ended.get(src_side.stem))
                for src_side, fut in pending:
                    finished(src_side, fut.result(), "side", ended.get(src_side.stem))
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    else:
        for src in main_lane + side:
            run(src)
    for src in last:
        run(src)
    prov = provenance()
    (out_dir / "provenance.json").write_text(
        json.dumps({"profile": profile.name, "source": arg, **prov}, indent=1)
    )
    build.update(commit=prov["git_commit"], cpus=prov["hardware"]["cpus"])
    if args.no_html:
        record_build(out_dir, build)
        return 0

    stage = ROOT / "build" / "book"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for path in sorted(out_dir.glob("*.ipynb")):
        nbformat.write(present(nbformat.read(path, as_version=4), ROOT), stage / path.name)
    write_vega_bundle(ROOT / "build" / "_static")
    write_mathjax(ROOT / "build" / "_static")
    # jupyter-book writes to <path-output>/_build/html
    path_output = ROOT if profile.name == DEFAULT_PROFILE else ROOT / "_build" / profile.name
    html_out = path_output / "_build"
    cmd = [
        str(Path(sys.executable).parent / "jupyter-book"),
        "build",
        str(ROOT),
        "--path-output",
        str(path_output),
        "-W",
        "-n",
        "--keep-going",
    ]
    print("[book] " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, cwd=ROOT)
    print(f"[book]   HTML (jupyter-book): {time.perf_counter() - t0:.1f} s", flush=True)
    record_build(out_dir, {**build, "html": round(time.perf_counter() - t0, 1), "html_rc": rc})
    if rc == 0:
        print(f"[book] done: {html_out / 'html' / 'index.html'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
