"""The chapters are papermill-executable with a profile and overrides (slow tier)."""

import json
import subprocess
import sys

import jupytext
import papermill
import pytest
from conftest import load_script

from pidlib.book.runner import CHAPTER_DIR, chapters, execute_chapter
from pidlib.core.paths import REPO_ROOT as ROOT

NOTEBOOKS = chapters()


def test_every_chapter_has_a_parameters_cell_with_a_profile():
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        nb = jupytext.read(path)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), path.name
        assert code[0].source.startswith('profile = "cpu"'), path.name


def _execute(tmp_path, name, **params):
    out = tmp_path / f"{name}-{len(params)}.ipynb"
    execute_chapter(CHAPTER_DIR / f"{name}.py", out, params, figures=tmp_path / "figures")
    return json.loads(out.read_text())


def _text(nb) -> str:
    parts = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            parts.append(
                "".join(
                    data.get("text/html", data.get("text/markdown", data.get("text/plain", "")))
                )
            )
            parts.append("".join(o.get("text", "")))
    return "\n".join(parts)


@pytest.mark.slow
def test_papermill_overrides_change_the_result(tmp_path):
    both = _text(_execute(tmp_path, "00_data_and_models", profile="smoke"))
    one = _text(
        _execute(tmp_path, "00_data_and_models", profile="smoke", models=["tiny-llava-1.5"])
    )
    # the accuracy table's column headers name each model of the profile
    assert "tiny-llava-1.6 image" in both and "tiny-llava-1.6 image" not in one
    assert "tiny-llava-1.5 image" in one


@pytest.mark.slow
def test_bad_override_fails_fast_naming_the_key(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="samples_per_task"):
        _execute(tmp_path, "02_modal_transduction", profile="smoke", samples_per_task="lots")


def test_build_script_rejects_an_unknown_profile():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_book.py"), "--profile",
                        "nope", "--no-html"], capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert r.returncode != 0 and "unknown profile 'nope'" in r.stderr


def test_book_assets_are_local(tmp_path):
    """The book loads MathJax and Vega from its own _static folder, never from a CDN."""
    import yaml

    build_book = load_script("scripts/build_book.py")
    js = build_book.write_mathjax(tmp_path)
    assert js.stat().st_size > 100_000 and "MathJax" in js.read_text()
    assert any((tmp_path / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    assert (tmp_path / config["mathjax_path"]) == js
    assert "://" not in config["mathjax_path"]
    assert all("://" not in f for f in config["html_js_files"])
