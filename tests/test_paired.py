"""Paired intervals for knockout-minus-clean differences (issue 15): same questions, one
resampling for both runs."""

import dataclasses
import warnings

import numpy as np
import pytest

from pidlib.pid import canonical
from pidlib.pid.flow import pid_flow
from pidlib.pid.flow_nets import FlowConfig
from pidlib.pid.gaussian import gaussian_pid
from pidlib.pid.paired import MAPS, pid_flow_difference
from pidlib.pid.uncertainty import CI_KEYS

QUICK = FlowConfig(max_epochs=3, patience=1, hidden_features=8, n_blocks=1)


@pytest.mark.parametrize("flow", [False, True])
def test_identical_runs_give_a_zero_width_interval_at_zero(flow):
    x1, x2, y = canonical.get("nl_synergy").sampler(300, 1)
    kw = {"flow": flow, "flow_config": QUICK, "n_bootstrap": 6, "n_seeds": 2, "max_dims": 4}
    out = pid_flow_difference((x1, x2, y), (x1, x2, y), measure=("mmi", "broja"), **kw)
    assert set(out) == set(MAPS)
    for by_measure in out.values():
        for d in by_measure.values():
            assert all(d.delta[k] == 0.0 and d.ci[k] == (0.0, 0.0) for k in CI_KEYS)
            assert d.ci_independent["total"][1] > 0  # the independent interval does not shrink


def test_the_clean_estimate_is_pid_flows():
    x1, x2, y = canonical.get("nl_unique").sampler(300, 2)
    kw = {"flow": False, "n_bootstrap": 5, "n_seeds": 2, "seed": 11}
    d = pid_flow_difference((x1, x2, y), (x1[:, ::-1], x2, y), maps="refit", **kw)["refit"]
    ref = pid_flow(x1, x2, y, **kw)
    assert d["mmi"].clean == {k: getattr(ref, k) for k in CI_KEYS}


def test_runs_on_different_rows_are_refused():
    x1, x2, y = canonical.get("nl_unique").sampler(200, 2)
    with pytest.raises(ValueError, match="same rows"):
        pid_flow_difference((x1, x2, y), (x1[:100], x2[:100], y[:100]), flow=False)


#: Rows: X1, X2, Y, X1 after the "knockout", as linear maps of independent standard normals
#: (x1, x2, noise, e): the knockout adds noise e to X1 on the same rows.
_MIX = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0.6, 1, 0], [1, 0, 0, 0.8]])


def _truth(rows: list[int]) -> np.ndarray:
    cov = _MIX @ _MIX.T
    pid = gaussian_pid(cov[np.ix_(rows, rows)], (1, 1, 1), "mmi")
    return np.array([getattr(pid, k) for k in CI_KEYS])


def test_paired_intervals_cover_a_known_change_and_are_narrower():
    """60 replicates, n = 400, Gaussian plug-in: the knockout adds noise to X1, so the true
    change (closed form) is -0.18 bits of U_V and -0.24 bits of I(X1,X2;Y). Measured with these
    60 replicates: paired coverage 0.93 (U_V), 0.98 (S), 0.92 (I(X1,X2;Y)), 0.93 (I(X1;Y)) at
    about half the independent width (I(X1,X2;Y): 0.154 vs 0.283 bits; U_V: 0.145 vs 0.276);
    the independent interval covers every time: too wide (100 replicates: the same picture)."""
    true = _truth([3, 1, 2]) - _truth([0, 1, 2])
    hit, width = {"paired": 0, "independent": 0}, {"paired": [], "independent": []}
    keys = [CI_KEYS.index(k) for k in ("unique_1", "synergy", "total", "mi_1")]
    reps = 60
    for r in range(reps):
        z = np.random.default_rng(r).normal(size=(400, 4)) @ _MIX.T
        d = pid_flow_difference((z[:, 0], z[:, 1], z[:, 2]), (z[:, 3], z[:, 1], z[:, 2]),
                                maps="refit", flow=False, n_bootstrap=20, pca_variance=1.0,
                                seed=r)["refit"]["mmi"]  # fmt: skip
        for name, ci in (("paired", d.ci), ("independent", d.ci_independent)):
            lo, hi = (np.array([ci[k][i] for k in CI_KEYS]) for i in (0, 1))
            hit[name] += ((lo <= true) & (true <= hi))[keys]
            width[name].append((hi - lo)[keys])
    assert np.all(hit["paired"] / reps >= 0.85), hit["paired"] / reps
    ratio = np.mean(width["paired"], 0) / np.mean(width["independent"], 0)
    assert np.all(ratio < 0.8), ratio


def test_layerwise_difference_matches_the_clean_table_and_caches(tmp_path):
    """The layer-wise job: its clean values are the clean layer-wise table's (same job seeds),
    an identical "knockout" gives zero-width intervals at zero, a changed one a paired interval
    narrower than the independent one; a second call reads the cache."""
    from pidlib.analysis.layerwise import layerwise_pid
    from pidlib.analysis.paired import DELTA_COLUMNS, layerwise_difference
    from pidlib.config.profiles import ParallelSpec, PIDSpec
    from pidlib.core.cache import ArrayCache
    from tests.test_layerwise import make_features

    rng = np.random.default_rng(0)
    n, spec = 240, PIDSpec(measures=("mmi",), flow=False, n_bootstrap=8, n_seeds=2)
    V, L = rng.normal(size=(n, 3, 2)), rng.normal(size=(n, 3, 2))
    y = V[:, -1, 0] + L[:, -1, 0] + rng.normal(size=n)
    clean = make_features("m", "t", V, L, y)
    noisy = make_features("m", "t", V + rng.normal(size=V.shape), L, y)
    kw = {"pid_spec": spec, "parallel": ParallelSpec(backend="sequential", n_jobs=1), "seed": 3}
    store = ArrayCache(tmp_path)
    same = layerwise_difference([clean], [clean], cache=store, **kw)
    assert list(same.columns) == list(DELTA_COLUMNS) and len(same) == 2 * 3 * 7
    assert (same[["delta", "lo", "hi"]] == 0).all().all()
    table = layerwise_pid([clean], cache=False, progress=False, **kw)
    merged = same.merge(table, on=["layer", "measure", "atom"])
    assert np.array_equal(merged["value_clean"], merged["value"])
    diff = layerwise_difference([clean], [noisy], cache=store, **kw)
    v = diff[(diff["atom"] == "mi_1") & (diff["layer"] == 2)]
    assert ((v["hi"] - v["lo"]) < (v["hi_indep"] - v["lo_indep"])).all() and (v["delta"] < 0).all()
    n_entries = len(list(tmp_path.rglob("*.npz")))
    again = layerwise_difference([clean], [noisy], cache=store, **kw)
    assert again.equals(diff) and len(list(tmp_path.rglob("*.npz"))) == n_entries == 6


def test_several_runs_in_one_job_equal_one_call_per_run(tmp_path, monkeypatch):
    """Several knocked-out runs measured in one job per layer (the clean run's part made once)
    give each run's own call's numbers, bit for bit, with maps per run; each run is cached
    under its own call's key, so a one-run call reads it back and a job computes only the runs
    it lacks; a run on other questions or without maps is refused by name."""
    from pidlib.analysis import paired as P
    from pidlib.analysis.paired import layerwise_difference, layerwise_differences
    from pidlib.config.profiles import ParallelSpec, PIDSpec
    from pidlib.core.cache import ArrayCache
    from tests.test_layerwise import make_features

    rng = np.random.default_rng(4)
    n, spec = 240, PIDSpec(measures=("mmi",), flow=False, n_bootstrap=8, n_seeds=1)
    V, L = rng.normal(size=(n, 3, 2)), rng.normal(size=(n, 3, 2))
    y = V[:, -1, 0] + L[:, -1, 0] + rng.normal(size=n)
    clean = make_features("m", "t", V, L, y)
    runs = {"a": [make_features("m", "t", V + rng.normal(size=V.shape), L, y)],
            "b": [make_features("m", "t", V, L, y + rng.normal(size=n))]}  # fmt: skip
    maps = {"a": ("refit", "clean"), "b": ("clean",)}
    kw = {"pid_spec": spec, "parallel": ParallelSpec(backend="sequential", n_jobs=1), "seed": 3}
    store = ArrayCache(tmp_path)
    one = layerwise_difference([clean], runs["b"], maps=maps["b"], cache=store, **kw)
    assert len(list(tmp_path.rglob("*.npz"))) == 3  # one entry per layer
    jobs = []
    real = P._run_job
    monkeypatch.setattr(P, "_run_job", lambda *a, **k: jobs.append(sorted(a[1])) or real(*a, **k))
    both = layerwise_differences([clean], runs, maps=maps, cache=store, **kw)
    assert jobs == [["a"]] * 3 and len(list(tmp_path.rglob("*.npz"))) == 6  # "b" read back
    assert layerwise_differences([clean], runs, maps=maps, cache=store, **kw).equals(both)
    assert len(jobs) == 3
    for r, m in maps.items():
        alone = layerwise_difference([clean], runs[r], maps=m, cache=False, **kw)
        mine = both[both["run"] == r].drop(columns="run").reset_index(drop=True)
        assert mine.equals(alone), r
    assert one.equals(both[both["run"] == "b"].drop(columns="run").reset_index(drop=True))
    x = [(clean.V[:, 2], clean.L[:, 2], clean.Y)]
    changed = {r: (f[0].V[:, 2], f[0].L[:, 2], f[0].Y) for r, f in runs.items()}
    pair = pid_flow_difference(*x, changed, maps=maps, n_bootstrap=4, flow=False)
    for r, m in maps.items():
        assert pair[r] == pid_flow_difference(*x, changed[r], maps=m, n_bootstrap=4, flow=False)
    with pytest.raises(ValueError, match="maps of each changed run"):
        pid_flow_difference(*x, changed, maps={"a": "clean"}, flow=False)
    other = make_features("m", "t", V[::-1], L, y)
    other = dataclasses.replace(other, qid=other.qid[::-1])
    with pytest.raises(ValueError, match=r"\(b\) has other questions"):
        layerwise_differences([clean], {"a": runs["a"], "b": [other]}, cache=False, **kw)


def test_localisation_and_width_summaries():
    import pandas as pd

    from pidlib.analysis.summaries import knockout_localisation, paired_widths

    curves = pd.DataFrame({
        "model": "m", "flow": "question->last", "window": 1, "center": [0, 1, 2],
        "layers": ["0-0", "1-1", "2-2"], "accuracy": [0.99, 0.4, 0.97],
        "accuracy_lo": [0.95, 0.3, 0.9], "accuracy_hi": [1.0, 0.5, 0.99],
        "accuracy_clean": 1.0, "rel_change": [-1.0, -60.0, -3.0],
    })  # fmt: skip
    row = knockout_localisation(curves).iloc[0]
    assert row["layers"] == "1-1" and row["accuracy"] == 0.4
    assert row["windows_hurt"] == 2 and row["windows"] == 3
    deltas = pd.DataFrame({"measure": "mmi", "lo": [-0.1, 0.1], "hi": [0.1, 0.3],
                           "lo_indep": [-0.2, -0.1], "hi_indep": [0.2, 0.5]})  # fmt: skip
    w = paired_widths(deltas)
    assert w["ratio"] == pytest.approx(0.41666, rel=1e-3) and w["rows"] == 2
    assert w["paired_excludes_zero"] == 0.5 and w["independent_excludes_zero"] == 0.0


class _Store(dict):
    """A FitStore in memory that counts what it is asked."""

    gets = puts = 0

    def get(self, key):
        self.gets += 1
        return dict.get(self, key)

    def put(self, key, blob):
        self.puts += 1
        self[key] = blob


def test_a_fit_store_shares_the_clean_fits_without_changing_a_number():
    """The clean layer-wise job's fits serve the paired difference's clean run: with the store
    filled by ``pid_flow`` the difference trains only the changed run's flows, and every number
    equals the one computed without a store."""
    x1, x2, y = canonical.get("nl_unique").sampler(300, 4)
    kw = {"measure": ("mmi", "broja"), "flow_config": QUICK, "n_bootstrap": 4, "seed": 5,
          "max_dims": 4}  # fmt: skip
    store = _Store()
    ref = pid_flow(x1, x2, y, **kw)
    assert pid_flow(x1, x2, y, fit_store=store, **kw) == ref and store.puts == 2
    changed = (x1 + np.random.default_rng(1).normal(size=x1.shape), x2, y)
    with_store = pid_flow_difference((x1, x2, y), changed, fit_store=store, **kw)
    assert store.puts == 2 and store.gets == 4  # both clean folds loaded, nothing new kept
    assert with_store == pid_flow_difference((x1, x2, y), changed, **kw)
    assert with_store["refit"]["mmi"].clean == {k: getattr(ref["mmi"], k) for k in CI_KEYS}
    assert (
        pid_flow(x1, x2, y, fit_store=store, flow=False, n_bootstrap=4)
        == pid_flow(x1, x2, y, flow=False, n_bootstrap=4)
        and store.puts == 2
    )  # PCA-only fits are never stored


def test_stored_maps_transform_exactly_like_the_fit():
    """``to_bytes`` drops the marginal knots (the bulk of a wide source) and ``from_bytes``
    refits them from the same rows: the latents are bit-identical, and the bytes stay small."""
    from pidlib.pid.flow import PIDFlow

    rng = np.random.default_rng(2)
    x1, x2 = rng.standard_t(3, size=(400, 60)), rng.normal(size=(400, 50))
    y = x1[:, :1] + x2[:, :1]
    fit = PIDFlow(QUICK, max_dims=4, seed=1).fit(x1, x2, y)
    blob = fit.to_bytes()
    back = PIDFlow.from_bytes(blob, x1, x2, y)
    new = rng.normal(size=(50, 60)), rng.normal(size=(50, 50)), rng.normal(size=(50, 1))
    for a, b in zip(fit.transform(*new), back.transform(*new), strict=True):
        assert np.array_equal(a, b)
    assert fit.marginals and len(blob) < 0.5 * sum(m.knots.nbytes for m in fit.marginals)
    with pytest.raises(ValueError, match="call fit first"):
        PIDFlow().to_bytes()


def test_layerwise_jobs_keep_the_fits_the_knockout_jobs_reuse(tmp_path):
    """On disk: the clean layer-wise jobs keep their flow fits (kind ``pid-flow-fit``), the
    paired difference's clean run loads them, and its clean values stay the clean table's."""
    from pidlib.analysis.layerwise import layerwise_pid
    from pidlib.analysis.paired import layerwise_difference
    from pidlib.config.profiles import ParallelSpec, PIDSpec
    from pidlib.core.cache import ArrayCache
    from tests.test_layerwise import make_features

    rng = np.random.default_rng(0)
    n, spec = 240, PIDSpec(measures=("mmi",), flow=True, n_bootstrap=4, max_dims=3)
    V, L = rng.normal(size=(n, 2, 3)), rng.normal(size=(n, 2, 3))
    clean = make_features("m", "t", V, L, V[:, -1, 0] + L[:, -1, 0] + rng.normal(size=n))
    noisy = make_features("m", "t", V + rng.normal(size=V.shape), L, clean.Y[:, 0])
    kw = {"pid_spec": spec, "parallel": ParallelSpec(backend="sequential", n_jobs=1), "seed": 3,
          "cache": ArrayCache(tmp_path)}  # fmt: skip
    table = layerwise_pid([clean], progress=False, **kw)
    fits = sorted((tmp_path / "pid-flow-fit").iterdir())
    assert len(fits) == 2 * 2  # two layers, two folds
    stamps = [f.stat().st_mtime_ns for f in fits]
    diff = layerwise_difference([clean], [noisy], **kw)
    assert [f.stat().st_mtime_ns for f in sorted((tmp_path / "pid-flow-fit").iterdir())] == stamps
    merged = diff.merge(table, on=["layer", "measure", "atom"])
    assert np.array_equal(merged["value_clean"], merged["value"])


def test_an_unreadable_stored_fit_is_fitted_again_with_a_warning():
    x1, x2, y = canonical.get("nl_unique").sampler(300, 4)
    kw = {"flow_config": QUICK, "n_bootstrap": 4, "seed": 5, "max_dims": 4}
    store = _Store()
    ref = pid_flow(x1, x2, y, fit_store=store, **kw)
    for key in store:
        store[key] = b"not a pickle"
    with pytest.warns(UserWarning, match="unreadable"):
        assert pid_flow(x1, x2, y, fit_store=store, **kw) == ref
    assert all(v == b"not a pickle" for v in store.values())  # nothing overwritten


def test_a_run_too_small_for_halves_loses_its_interval_alone():
    """With several runs, a run whose refit latents are too many for half-subsamples has no
    interval (and says why), as in its own call; the other run keeps its interval, unchanged."""
    rng = np.random.default_rng(2)
    n = 80
    x1, x2 = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    y = x1[:, :1] + x2[:, :1] + rng.normal(size=(n, 1))
    runs = {"wide": (rng.normal(size=(n, 30)), x2, y), "same": (x1 + 0.1, x2, y)}
    kw = {"flow": False, "n_bootstrap": 6, "max_dims": 32, "pca_variance": 0.99}
    with pytest.warns(UserWarning, match="no interval"):
        both = pid_flow_difference((x1, x2, y), runs, maps="refit", **kw)
    assert both["wide"]["refit"]["mmi"].ci is None
    assert "interval" in both["wide"]["refit"]["mmi"].info
    assert both["same"]["refit"]["mmi"].ci is not None
    for r, run in runs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert both[r] == pid_flow_difference((x1, x2, y), run, maps="refit", **kw), r
