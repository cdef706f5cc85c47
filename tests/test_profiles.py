"""Profiles: every shipped profile validates; bad keys and values fail fast, naming the key."""

import pytest

from pidlib.config.profiles import available_profiles, load_profile
from pidlib.data.tasks import TASKS


@pytest.mark.parametrize("name", available_profiles())
def test_every_profile_validates(name):
    p = load_profile(name, check_paths=False)  # the real models' GQA files need not be here
    assert p.name == name
    assert set(p.tasks) <= set(TASKS) and p.tasks
    assert p.to_dict()["name"] == name


def test_shipped_profiles_present():
    assert {"cpu", "smoke", "llava", "llava-1.5-7b", "llava-1.6-7b"} <= set(available_profiles())


def test_extends_inherits_and_overrides():
    cpu, smoke = load_profile("cpu"), load_profile("smoke")
    assert smoke.models == cpu.models and smoke.dataset == cpu.dataset
    assert smoke.samples_per_task < cpu.samples_per_task
    assert smoke.pid.measures == cpu.pid.measures  # nested keys merge, not replace
    assert smoke.pid.n_bootstrap != cpu.pid.n_bootstrap


def test_overrides_as_papermill_strings():
    p = load_profile(
        "smoke",
        tasks="[ChooseAttr, QueryAttr]",
        samples_per_task="50",
        **{"pid.n_bootstrap": "3", "pid.flow": "false"},
    )
    assert p.tasks == ("ChooseAttr", "QueryAttr")
    assert p.samples_per_task == 50 and p.pid.n_bootstrap == 3 and p.pid.flow is False
    assert load_profile("smoke", tasks="QueryAttr").tasks == ("QueryAttr",)
    # None = keep the profile's value (smoke: three of the six tasks)
    assert load_profile("smoke", tasks=None).tasks == ("ChooseAttr", "CompareAttr", "QueryAttr")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tasks": ["Foo"]}, "unknown task 'Foo'"),
        ({"bogus": 1}, "unknown profile key(s) bogus"),
        ({"pid.bogus": 1}, "pid.bogus"),
        ({"batch_size": "x"}, "batch_size: expected an integer"),
        ({"batch_size": 0}, "batch_size"),
        ({"pid.measures": ["x"]}, "pid.measures"),
        ({"pid.pca_variance": 1.5}, "pid.pca_variance"),
        ({"dataset.name": "coco"}, "dataset.name"),
        ({"dataset.prior": 2}, "dataset.prior"),
        ({"knockout.flows": ["image->nowhere"]}, "knockout.flows"),
        ({"device": "tpu"}, "device"),
        ({"target": "answer"}, "target"),
        ({"pid.flow": "maybe"}, "pid.flow: expected true/false"),
        ({"robustness.targets": ["answer"]}, "robustness.targets"),
        ({"robustness.n_bootstrap": 1}, "robustness.n_bootstrap"),
        ({"last_position.probe_folds": 1}, "last_position.probe_folds"),
        ({"last_position.formed_at": 0}, "last_position.formed_at"),
        ({"seeds.labels": ["B1"]}, "seeds.labels: 1 labels for 2 sets"),
        (
            {"seeds.sets": [["a", "b"], ["c"]], "seeds.labels": []},
            "seeds.sets: every set lists the same number",
        ),
        ({"seeds.priors": [0.0]}, "seeds.priors (1) and seeds.prior_models (2)"),
        ({"seeds.priors": [0.0, 0.5, 1.5]}, "seeds.priors"),
        ({"seeds.prior_tasks": ["Foo"]}, "unknown task 'Foo'"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_profile("smoke", **overrides)


def test_unknown_profile_lists_available():
    with pytest.raises(ValueError, match="unknown profile 'nope'.*smoke"):
        load_profile("nope")


def test_profile_from_path(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("extends: smoke\nsamples_per_task: 33\n")
    p = load_profile(f)
    assert p.name == "mine" and p.samples_per_task == 33


def test_real_gqa_needs_paths():
    with pytest.raises(ValueError, match="needs both 'questions' and 'images'"):
        load_profile("smoke", **{"dataset.name": "gqa"})


def test_knockout_windows_are_a_fraction_of_depth():
    """Windows that can localise: k = 1 and 3 on the 8-layer embedded models, Zhang et al.'s 9 on
    LLaVA's 32 layers; every flow of the sweep; smoke keeps a cheap stride and the first window."""
    cpu, smoke, llava = (load_profile(n, check_paths=False) for n in ("cpu", "smoke", "llava"))
    assert cpu.knockout.windows == (1, 3) and llava.knockout.windows == (9,)
    assert set(cpu.knockout.flows) == {"image->question", "image->last", "question->last",
                                       "last->last"}  # fmt: skip
    assert smoke.knockout.stride == 4 and smoke.knockout.windows == cpu.knockout.windows[:1]


def test_an_older_profiles_single_window_still_reads(tmp_path):
    f = tmp_path / "old.yaml"
    f.write_text("extends: smoke\nknockout: {window: 5}\n")
    assert load_profile(f).knockout.windows == (5,)
    assert load_profile("smoke", **{"knockout.window": "2"}).knockout.windows == (2,)
    with pytest.raises(ValueError, match="knockout.windows"):
        load_profile("smoke", **{"knockout.windows": [3, 3]})
    with pytest.raises(ValueError, match="pid_flows"):
        load_profile("smoke", **{"knockout.pid_flows": ["image->nowhere"]})


def test_seed_sets_must_match_the_models_and_say_how():
    """A profile run with one model keeps the two-model sets: the chapter that reads them
    stops with a message naming the fix; a profile without retrains has none."""
    cpu = load_profile("smoke")
    assert cpu.seeds.matching(cpu.models)[0] == ("tiny-llava-1.5-b1", "tiny-llava-1.6-b1")
    assert cpu.seeds.set_labels() == ("B1", "B2")
    one = load_profile("smoke", models=["tiny-llava-1.5"])
    with pytest.raises(ValueError, match=r"one model per profile model.*seeds.sets: \[\]"):
        one.seeds.matching(one.models)
    assert load_profile("llava", check_paths=False).seeds.sets == ()
