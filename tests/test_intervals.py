"""PID Flow's intervals: valid by construction and by measured coverage; scale invariance; rare
classes (issue 21)."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from pidlib.pid import canonical
from pidlib.pid.coverage import coverage, coverage_table, null_system
from pidlib.pid.flow import pid_flow
from pidlib.pid.paired import pid_flow_difference
from pidlib.pid.uncertainty import CI_KEYS, fold_indices, half_subsamples, strata


def _inside(est) -> bool:
    return all(est.ci[k][0] - 1e-12 <= getattr(est, k) <= est.ci[k][1] + 1e-12 for k in CI_KEYS)


def test_the_old_bootstrap_excludes_its_estimate_where_crossfit_does_not():
    """No information, book-sized latents (20 + 28 + 1), n = 1000: the percentile bootstrap of
    latent rows puts its interval above the estimate; the cross-fitted interval holds it."""
    x1, x2, y = null_system(20, 28, 1).sampler(1000, 0)
    kw = {"flow": False, "n_bootstrap": 30, "max_dims": 32, "pca_variance": 1.0}
    old = pid_flow(x1, x2, y, scheme="bootstrap", **kw)
    new = pid_flow(x1, x2, y, scheme="crossfit", **kw)
    assert old.ci["total"][0] > old.total  # the defect, reproduced
    assert _inside(new) and new.ci["total"][0] == 0.0


@pytest.mark.parametrize("flow", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_point_estimate_inside_every_interval(flow):
    for name in ("nl_synergy", "nl_unique"):
        x1, x2, y = canonical.get(name).sampler(400, 3)
        est = pid_flow(x1, x2, y, flow=flow, n_bootstrap=8, n_seeds=2, measure=("mmi", "broja"))
        assert all(_inside(e) for e in est.values()), name


def test_coverage_of_gaussian_systems_at_nominal_level():
    """50 replicates of two Gaussian systems and the null system at n = 500 (plug-in, full PCA):
    the 95% intervals hold the truth of I(X1,X2;Y) in at least 88% of them."""
    runs = coverage(["synergy", "unique", null_system(6, 6, 1)], n=500, reps=50, flow=False,
                    n_bootstrap=20, pca_variance=1.0)  # fmt: skip
    table = coverage_table(runs)
    assert runs["point_inside"].all()
    total = table[table["quantity"] == "total"].set_index("system")["coverage"]
    assert (total >= 0.88).all(), total


def test_folds_and_subsamples_keep_every_class():
    y = np.r_[np.zeros(90), np.ones(10)].reshape(-1, 1)
    labels = strata(y, 2)
    folds = fold_indices(100, 2, np.random.default_rng(0), labels)
    assert sorted(np.concatenate(folds).tolist()) == list(range(100))
    assert all(labels[f].sum() == 5 for f in folds)
    for idx in half_subsamples(100, 5, np.random.default_rng(1), labels):
        assert len(set(idx)) == len(idx) == 50 and labels[idx].sum() == 5


def test_a_rare_class_gives_a_clear_error_not_a_crash():
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(500, 3)), rng.normal(size=(500, 3))
    y = np.zeros(500)
    y[:3] = 1
    with pytest.raises(ValueError, match=r"class counts \[3, 497\]"):
        pid_flow(x1, x2, y, flow=False, n_bootstrap=5)
    y[:40] = 1  # enough of each class: every fold and half-subsample keeps both
    est = pid_flow(x1, x2, y, flow=False, n_bootstrap=5)
    assert _inside(est)


@pytest.mark.parametrize("discrete", [False, True])
def test_too_few_rows_for_an_interval_give_the_estimate_without_one(discrete):
    """16 rows: the folds hold 8, their half-subsamples 4, too few for 2 + 2 + 1 latent
    dimensions (or, for a discrete Y of class counts 6 and 10, too few of a class for halves):
    the same cross-fitted estimate as without half-subsamples, no interval, and a reason."""
    rng = np.random.default_rng(3)
    x1, x2 = rng.normal(size=(16, 6)), rng.normal(size=(16, 6))
    y = x1[:, 0] + rng.normal(size=16)
    if discrete:
        y = (np.arange(16) < 6).astype(float)
    kw = {"flow": False, "max_dims": 2, "seed": 1}
    with pytest.warns(UserWarning, match="no interval: "):
        est = pid_flow(x1, x2, y, n_bootstrap=10, **kw)
    bare = pid_flow(x1, x2, y, n_bootstrap=0, **kw)
    assert est.ci is None and est.total == bare.total and est.synergy == bare.synergy
    why = "class counts \\[6, 10\\]" if discrete else "half-subsamples of 4 rows cannot support 5"
    assert re.search(why, est.info["interval"]), est.info["interval"]
    with pytest.warns(UserWarning, match="no interval: "):
        diff = pid_flow_difference((x1, x2, y), (x1 * 0.5, x2, y), n_bootstrap=10, **kw)
    assert diff["refit"]["mmi"].ci is None and "interval" in diff["refit"]["mmi"].info


@pytest.fixture(scope="module")
def mixed_sample():
    x1, x2, y = canonical.get("nl_mixed").sampler(300, 1)
    return (x1, x2, y), pid_flow(x1, x2, y, n_bootstrap=0, seed=0)


@pytest.mark.parametrize(("scale", "shift"), [(1e-6, 0.0), (1e6, 0.0), (1e-6, 1e5), (1.0, 1e5)])
def test_rescaling_or_shifting_a_source_leaves_the_estimate(mixed_sample, scale, shift):
    """PID Flow (flows trained) on 1e-6 .. 1e6 rescaled or 1e5-shifted X1: the same bits."""
    (x1, x2, y), base = mixed_sample
    moved = pid_flow(x1 * scale + shift, x2, y, n_bootstrap=0, seed=0)
    for k in CI_KEYS:
        assert abs(getattr(moved, k) - getattr(base, k)) < 1e-4, k


def test_layerwise_rows_hold_their_estimates_and_a_violation_is_named():
    """Every row of a layer-wise table (here: no information at any layer, the case that failed
    in the book) holds its estimate; a table where one does not is refused, naming the row."""
    import pandas as pd

    from pidlib.analysis.layerwise import check_intervals, layerwise_pid
    from pidlib.config.profiles import ParallelSpec, PIDSpec
    from pidlib.extract.features import Features

    rng = np.random.default_rng(0)
    n, layers, d = 300, 3, 12
    feats = Features(
        "m", "ChooseAttr", V=rng.normal(size=(n, layers, d)).astype(np.float32),
        L=rng.normal(size=(n, layers, d)).astype(np.float32),
        option_logits=rng.normal(size=(n, 2)).astype(np.float32),
        last_hidden=np.zeros((n, d), np.float32), prob=np.full(n, 0.5, np.float32),
        answer=np.array(["a"] * n), correct=np.ones(n, bool), choice=np.zeros(n, int),
        gold=np.zeros(n, int), qid=np.array([str(i) for i in range(n)]),
        options=np.array([["a", "b"]] * n),
    )  # fmt: skip
    spec = PIDSpec(measures=("mmi",), max_dims=6, flow=False, n_bootstrap=20, n_seeds=1)
    table = layerwise_pid(feats, pid_spec=spec, cache=False, progress=False,
                          parallel=ParallelSpec(backend="sequential"))  # fmt: skip
    assert ((table["lo"] <= table["value"]) & (table["value"] <= table["hi"])).all()
    broken = table.copy()
    broken.loc[0, "lo"] = broken.loc[0, "value"] + 0.1
    broken.loc[0, "hi"] = broken.loc[0, "value"] + 0.2
    with pytest.raises(ValueError, match="outside their own interval"):
        check_intervals(pd.DataFrame(broken))


def test_validation_jobs_do_not_depend_on_the_number_of_workers():
    """The Methods chapter's error-vs-n table is the same on one process and on two."""
    from pidlib.pid import validation

    names = [n for n in canonical.names() if n.startswith("nl_")][:2]
    kw = {"flows": (False,), "n_bootstrap": 0}
    one = validation.error_vs_n(names, [400], [0, 1], n_jobs=1, **kw).drop(columns="seconds")
    two = validation.error_vs_n(names, [400], [0, 1], n_jobs=2, **kw).drop(columns="seconds")
    pd.testing.assert_frame_equal(one, two)
    assert len(one) == 2 * 2 * 4  # systems x seeds x atoms


def test_layerwise_jobs_without_an_interval_are_reported_once(tmp_path):
    """Every job of a tiny sample lacks an interval: one warning with the count, NaN bounds,
    and the same warning again when the jobs come from the cache."""
    from pidlib.analysis.layerwise import layerwise_pid
    from pidlib.config.profiles import ParallelSpec, PIDSpec
    from pidlib.core.cache import ArrayCache
    from tests.test_layerwise import make_features

    rng = np.random.default_rng(0)
    feats = [make_features("m", t, rng.normal(size=(16, 3, 4)), rng.normal(size=(16, 3, 4)),
                           rng.normal(size=16)) for t in ("a", "b")]  # fmt: skip
    spec = PIDSpec(measures=("mmi",), flow=False, n_bootstrap=10, n_seeds=1, max_dims=2)
    kw = {"pid_spec": spec, "parallel": ParallelSpec(backend="sequential", n_jobs=1),
          "cache": ArrayCache(tmp_path), "progress": False}  # fmt: skip
    for _ in range(2):  # computed, then cached
        with pytest.warns(UserWarning) as got:
            table = layerwise_pid(feats, **kw)
        said = [str(w.message) for w in got if "no interval" in str(w.message)]
        assert len(said) == 1 and said[0].startswith("layer-wise PID: 6 of 6 jobs: "), said
        assert table["lo"].isna().all() and table["value"].notna().all()


def test_an_estimate_without_its_interval_passes_no_floor(tmp_path):
    """16 rows with information (0.58 bits at layer 0, floor 0.05): but no interval could be given,
    so no (model, task) is measurable and no share is reported; with n_bootstrap = 0 (no
    interval asked for) the values are read as before."""
    from pidlib.analysis.layerwise import layerwise_pid
    from pidlib.analysis.summaries import last_layer_shares, peak_layers, shares
    from pidlib.config.profiles import ParallelSpec, PIDSpec
    from tests.test_layerwise import make_features

    rng = np.random.default_rng(1)
    v = rng.normal(size=(16, 3, 4))
    feats = [make_features("m", "a", v, rng.normal(size=(16, 3, 4)),
                           v[:, 0, 0] + 0.1 * rng.normal(size=16))]  # fmt: skip
    for n_bootstrap, passes in ((10, False), (0, True)):
        spec = PIDSpec(measures=("mmi",), flow=False, n_bootstrap=n_bootstrap, max_dims=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            serial = ParallelSpec(backend="sequential", n_jobs=1)
            table = layerwise_pid(feats, pid_spec=spec, cache=False, progress=False,
                                  parallel=serial)  # fmt: skip
        total = table[(table["atom"] == "total") & (table["layer"] == 0)]["value"].item()
        assert total > 0.3 and table["no_interval"].all() != passes
        assert shares(table, floor=0.05)["measurable"].all() == passes
        assert bool(last_layer_shares(table, floor=0.05)["measurable"].item()) == passes
        assert bool(peak_layers(table, floor=0.05)["measurable"].item()) == passes


def test_fingerprints_with_no_share_above_the_floor_are_not_tested():
    """No task passes the floor: every share is NaN, and "fingerprints differ" is untested
    (None), not "does not hold"; with shares it is decided as before."""
    from pidlib.analysis.claims import fingerprint_claims

    contrast = pd.DataFrame(columns=["task", "difference", "se", "measurable"])
    nan = pd.Series([np.nan, np.nan], index=["redundancy", "synergy"])
    claims, _ = fingerprint_claims(nan, nan, contrast)
    assert claims[0].holds is None and claims[1].holds is None  # no task: nothing to test
    spread = pd.Series([0.2, 0.1], index=["redundancy", "synergy"])
    claims, _ = fingerprint_claims(spread, spread / 4, contrast)
    assert claims[0].holds is True
