"""Fault injection, profiles and the build (issue 18, cases 3 and 4): overrides merge, YAML
errors name file and line, the paths a profile names are checked when it loads, and a profile
file anywhere builds into folders named after the profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_script

from pidlib.config.profiles import load_profile

pytestmark = pytest.mark.faults


def _yaml(tmp_path, text, name="mine.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "override",
    [{"pid": {"n_bootstrap": 3}}, {"pid": "{n_bootstrap: 3}"}, {"pid.n_bootstrap": 3}],
    ids=["mapping", "papermill-text", "dotted"],
)
def test_a_section_override_merges_into_the_section(override):
    """``pid={'n_bootstrap': 3}`` reset the rest of ``pid`` to the cpu defaults (max_dims=32)."""
    smoke = load_profile("smoke").pid
    pid = load_profile("smoke", **override).pid
    assert pid.n_bootstrap == 3
    assert (pid.max_dims, pid.n_seeds) == (smoke.max_dims, smoke.n_seeds) == (8, 1)
    assert pid.measures == smoke.measures


@pytest.mark.parametrize(
    ("override", "message"),
    [({"parallel.threads": 0}, "parallel.threads: must be an integer >= 1"),
     ({"error_ns": [50, 1000]}, "error_ns: \\[50, 1000\\] must be sample sizes")],
)  # fmt: skip
def test_thread_counts_and_methods_sizes_are_checked(override, message):
    with pytest.raises(ValueError, match=message):
        load_profile("smoke", **override)


def test_a_bad_section_override_names_the_key():
    with pytest.raises(ValueError, match="pid: expected a mapping"):
        load_profile("smoke", pid="[1, 2]")
    with pytest.raises(ValueError, match="pid.bogus"):
        load_profile("smoke", pid={"bogus": 1})


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("extends: smoke\nsamples_per_task: 20\nsamples_per_task: 40\n", 3,
         "duplicate key 'samples_per_task' (first on line 2)"),
        ("extends: smoke\npid:\n  n_seeds: 1\n  n_seeds: 2\n", 4, "duplicate key 'n_seeds'"),
        ("extends: smoke\npid: {n_seeds: 1\nknockout: {}\n", 3, "flow mapping"),
        ("extends: smoke\ntasks:\n\t- ChooseAttr\n", 3, "cannot start any token"),
        ("extends: smoke\nseed: 1: 2\n", 2, "mapping values are not allowed"),
        ("extends: 5\n", 1, "extends: 5 must be a profile name"),
        ("samples_per_task: 20\nextends: [smoke]\n", 2, "extends: ['smoke'] must be"),
    ],
)  # fmt: skip
def test_yaml_errors_name_the_file_and_the_line(tmp_path, text, line, what):
    """Duplicate keys kept the last value silently; malformed YAML and ``extends: 5`` did not
    name the file."""
    path = _yaml(tmp_path, text)
    with pytest.raises(ValueError) as err:
        load_profile(path)
    assert f"profile {path}, line {line}: " in str(err.value) and what in str(err.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_a_top_level_that_is_not_a_mapping_names_the_file(tmp_path, text):
    path = _yaml(tmp_path, text)
    with pytest.raises(ValueError, match=f"profile {path}: top level must be a mapping"):
        load_profile(path)


def test_an_empty_file_is_the_defaults(tmp_path):
    assert load_profile(_yaml(tmp_path, "")).name == "mine"


def test_extends_a_file_next_to_the_profile(tmp_path):
    _yaml(tmp_path, "extends: smoke\nsamples_per_task: 30\n", "base.yaml")
    p = load_profile(_yaml(tmp_path, "extends: base.yaml\nseed: 4\n"))
    assert (p.name, p.samples_per_task, p.seed) == ("mine", 30, 4)


def test_missing_gqa_files_fail_when_the_profile_loads(tmp_path):
    """Absent GQA files were accepted and failed much later, in a chapter."""
    images = tmp_path / "images"
    images.mkdir()
    base = f"extends: smoke\ndataset: {{name: gqa, images: {images}, questions: %s}}\n"
    path = _yaml(tmp_path, base % (tmp_path / "nope.json"))
    with pytest.raises(FileNotFoundError, match=r"profile mine: dataset.questions '.*nope.json'"):
        load_profile(path)
    path = _yaml(tmp_path, base % images)  # a folder where the JSON file should be
    with pytest.raises(FileNotFoundError, match="dataset.questions .* is a folder"):
        load_profile(path)
    (tmp_path / "q.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="dataset.images .* not found"):
        load_profile(path, **{"dataset.questions": str(tmp_path / "q.json"),
                              "dataset.images": str(tmp_path / "imgs")})  # fmt: skip
    ok = load_profile(path, **{"dataset.questions": str(tmp_path / "q.json")})
    assert ok.dataset.name == "gqa"
    assert load_profile(path, check_paths=False).dataset.name == "gqa"


def test_missing_model_folders_fail_when_the_profile_loads(tmp_path, monkeypatch):
    """Absent local models were accepted and failed much later, when a chapter loaded them."""
    with pytest.raises(FileNotFoundError, match=r"models\[0\] '.*empty': no model at"):
        (tmp_path / "empty").mkdir()
        load_profile("smoke", models=[str(tmp_path / "empty")])
    monkeypatch.setenv("PIDBOOK_MODELS", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match=r"models\[1\] 'tiny-llava-1.6'.*PIDBOOK_MODELS"):
        load_profile("smoke", models=["llava-1.5-7b", "tiny-llava-1.6"])
    with pytest.raises(ValueError, match=r"models\[0\]: unknown model 'no-such-model'"):
        load_profile("smoke", models=["no-such-model"])


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "book", "_static", "my run"])
def test_a_profile_name_must_be_a_folder_name(name):
    with pytest.raises(ValueError, match="name: .* must be a plain folder name"):
        load_profile("smoke", name=name)


def test_a_profile_file_anywhere_builds_into_its_own_folder(tmp_path, monkeypatch):
    """``build_book.py --profile /path/my.yaml`` crashed with NotADirectoryError
    ('/path/my.yaml/src'): the build folder was named from the argument."""
    mod = load_script("scripts/build_book.py")
    executed = []

    def execute(src, out, parameters, figures=None):  # stands in for papermill
        import nbformat

        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbformat.v4.new_notebook(), out)  # an executed chapter, empty
        executed.append((out, dict(parameters)))
        return 0.0

    monkeypatch.setattr(mod, "execute_chapter", execute)
    monkeypatch.setattr(mod, "build_dir", lambda name: tmp_path / "build" / name, raising=False)
    (tmp_path / "elsewhere").mkdir()
    profile = _yaml(tmp_path / "elsewhere", "extends: smoke\n", "my-run.yaml")
    monkeypatch.chdir(tmp_path)
    assert mod.main(["--profile", str(profile), "--only", "01_methods", "--no-html"]) == 0
    [(out, params)] = executed
    assert out == tmp_path / "build" / "my-run" / "01_methods.ipynb"
    assert Path(params["profile"]) == profile.resolve()  # chapters run in the repository root
    saved = json.loads((tmp_path / "build" / "my-run" / "provenance.json").read_text())
    assert saved["profile"] == "my-run"
    # a relative path works from any working directory, too
    executed.clear()
    assert mod.main(["--profile", "elsewhere/my-run.yaml", "--only", "01_methods",
                     "--no-html"]) == 0  # fmt: skip
    assert Path(executed[0][1]["profile"]) == profile.resolve()
