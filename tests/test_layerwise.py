"""Layer-wise PID pipeline: plumbing, closed-form check, parallel = serial, cache, summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pidlib.analysis.layerwise import COLUMNS, job_seed, layerwise_pid
from pidlib.analysis.summaries import last_layer_shares, peak_layers, shares, trajectory_correlation
from pidlib.config.profiles import ParallelSpec, PIDSpec
from pidlib.core.cache import ArrayCache
from pidlib.extract.features import Features
from pidlib.pid.flow_nets import FlowConfig
from pidlib.pid.gaussian import gaussian_mi, gaussian_pid
from pidlib.pid.result import ATOMS, PID

SERIAL = ParallelSpec(backend="sequential", n_jobs=1)
GAUSS = PIDSpec(measures=("mmi", "broja"), flow=False, n_bootstrap=0, n_seeds=1)


def make_features(model: str, task: str, V: np.ndarray, L: np.ndarray, y: np.ndarray) -> Features:
    """Features whose logits target Y is ``y`` (n,): option logits (y, 0)."""
    n = len(y)
    return Features(
        model, task, V=V.astype(np.float32), L=L.astype(np.float32),
        option_logits=np.stack([y, np.zeros(n)], 1).astype(np.float32),
        last_hidden=np.zeros((n, 2), np.float32), prob=np.full(n, 0.5, np.float32),
        answer=np.array(["a"] * n), correct=np.ones(n, bool), choice=np.zeros(n, np.int64),
        gold=np.zeros(n, np.int64), qid=np.array([f"q{i}" for i in range(n)]),
        options=np.array([["a", "b"]] * n),
    )  # fmt: skip


def gaussian_estimator(x1, x2, y, *, measure, seed, **_):
    """Closed-form Gaussian PID of the sample covariance (no PCA, no flow): a test estimator."""
    z = np.hstack([x1, x2, y]).astype(np.float64)
    cov = np.cov(z.T)
    dims = (x1.shape[1], x2.shape[1], y.shape[1])
    out = {}
    for m in measure:
        p = gaussian_pid(cov, dims, m)
        d = p.as_dict() | {"info": {"dims": dims, "seed": seed}}
        out[m] = PID(**d)
    return out


# Three layers with known structure (d = 2 per source, Y scalar, unit variances):
# layer 0 only V carries Y, layer 1 only L, layer 2 both carry the same copy of Y.
_RHO = 0.8


def _true_cov(layer: int) -> np.ndarray:
    c = np.eye(5)
    for i in {0: [0], 1: [2], 2: [0, 2]}[layer]:
        c[i, 4] = c[4, i] = _RHO
    if layer == 2:
        c[0, 2] = c[2, 0] = _RHO**2  # V_0 and L_0 are both Y + independent noise
    return c


@pytest.fixture(scope="module")
def synthetic() -> Features:
    """n = 4000 draws of Y and, per layer, (V, L) = c Y + Gaussian noise with the covariance
    that makes (V, L, Y) jointly distributed as :func:`_true_cov`."""
    rng = np.random.default_rng(0)
    n = 4000
    y = rng.standard_normal(n)
    V, L = np.zeros((n, 3, 2)), np.zeros((n, 3, 2))
    for layer in range(3):
        cov = _true_cov(layer)
        c = cov[:4, 4]
        x = np.outer(y, c) + rng.multivariate_normal(np.zeros(4), cov[:4, :4] - np.outer(c, c), n)
        V[:, layer], L[:, layer] = x[:, :2], x[:, 2:]
    return make_features("toy", "ChooseAttr", V, L, y)


def test_estimator_gets_v_l_y_of_each_layer(synthetic):
    seen = []

    def recording(x1, x2, y, **kw):
        seen.append((x1, x2, y, kw))
        return gaussian_estimator(x1, x2, y, **kw)

    layerwise_pid(synthetic, pid_spec=GAUSS, layers=[2, 0, -2], parallel=SERIAL, cache=False,
                  estimator=recording, progress=False)  # fmt: skip
    assert len(seen) == 3
    for (x1, x2, y, kw), layer in zip(seen, [2, 0, 1], strict=True):
        np.testing.assert_array_equal(x1, synthetic.V[:, layer])
        np.testing.assert_array_equal(x2, synthetic.L[:, layer])
        np.testing.assert_array_equal(y, synthetic.Y)
        assert kw["seed"] == job_seed(0, "toy", "ChooseAttr", layer)
        assert kw["measure"] == ("mmi", "broja") and kw["flow"] is False
        assert {"pca_variance", "max_dims", "n_bootstrap", "n_seeds", "bias_correction"} <= set(kw)


def test_atoms_match_the_closed_form_of_each_layer(synthetic):
    df = layerwise_pid(synthetic, pid_spec=GAUSS, parallel=SERIAL, cache=False,
                       estimator=gaussian_estimator, progress=False)  # fmt: skip
    mmi = df[df["measure"] == "mmi"].set_index(["layer", "atom"])["value"]
    i_one = -0.5 * np.log2(1 - _RHO**2)  # I(V;Y) of one informative unit
    for layer in range(3):
        truth = gaussian_pid(_true_cov(layer), (2, 2, 1), "mmi")
        for atom in ATOMS:
            assert mmi[layer, atom] == pytest.approx(getattr(truth, atom), abs=0.03)
    assert mmi[0, "unique_1"] == pytest.approx(i_one, abs=0.03) and mmi[0, "unique_2"] < 0.01
    assert mmi[1, "unique_2"] == pytest.approx(i_one, abs=0.03) and mmi[1, "unique_1"] < 0.01
    assert mmi[2, "redundancy"] == pytest.approx(i_one, abs=0.03)
    assert gaussian_mi(_true_cov(0)[np.ix_([0, 1, 4], [0, 1, 4])], (2, 1)) == pytest.approx(i_one)


def test_table_has_the_documented_columns(synthetic):
    df = layerwise_pid(synthetic, pid_spec=GAUSS, parallel=SERIAL, cache=False,
                       estimator=gaussian_estimator, progress=False)  # fmt: skip
    assert tuple(df.columns) == COLUMNS
    assert len(df) == 3 * 2 * len(ATOMS)
    assert set(df["atom"]) == set(ATOMS) and set(df["measure"]) == {"mmi", "broja"}
    assert list(df["depth"].unique()) == [0.0, 0.5, 1.0] and (df["n_layers"] == 2).all()
    assert (df["n"] == 4000).all() and (df[["dims_1", "dims_2", "dims_y"]] == [2, 2, 1]).all().all()
    assert df["lo"].isna().all()  # no bootstrap: no interval
    wide = df.pivot_table(index=["layer", "measure"], columns="atom", values="value")
    four = wide[["redundancy", "unique_1", "unique_2", "synergy"]].sum(axis=1)
    np.testing.assert_allclose(four, wide["total"], atol=1e-9)
    np.testing.assert_allclose(wide["redundancy"] + wide["unique_1"], wide["mi_1"], atol=1e-9)


def test_fit_features_pass_the_same_layer_of_other_activations(synthetic):
    seen = []

    def recording(x1, x2, y, *, fit_on=None, **kw):
        seen.append(fit_on)
        return gaussian_estimator(x1, x2, y, **kw)

    shifted = make_features(
        "toy", "ChooseAttr", synthetic.V + 1.0, synthetic.L, synthetic.option_logits[:, 0]
    )
    layerwise_pid(synthetic, pid_spec=GAUSS, layers=[2, 0], parallel=SERIAL, cache=False,
                  estimator=recording, progress=False, fit_features=[shifted])  # fmt: skip
    for (v, lang, y), layer in zip(seen, [2, 0], strict=True):
        np.testing.assert_array_equal(v, shifted.V[:, layer])
        np.testing.assert_array_equal(lang, shifted.L[:, layer])
        np.testing.assert_array_equal(y, shifted.Y)
    other = make_features(
        "toy", "QueryAttr", synthetic.V, synthetic.L, synthetic.option_logits[:, 0]
    )
    with pytest.raises(ValueError, match="fit_features lack"):
        layerwise_pid(synthetic, pid_spec=GAUSS, parallel=SERIAL, cache=False,
                      estimator=recording, progress=False, fit_features=[other])  # fmt: skip


def test_fit_features_enter_the_cache_key(synthetic, tmp_path):
    store = ArrayCache(tmp_path)
    kw = dict(pid_spec=GAUSS, layers=[1], parallel=SERIAL, cache=store, progress=False)
    shifted = make_features(
        "toy", "ChooseAttr", synthetic.V * 2.0, synthetic.L, synthetic.option_logits[:, 0]
    )
    layerwise_pid(synthetic, **kw)
    layerwise_pid(synthetic, fit_features=[shifted], **kw)
    assert len(list(tmp_path.rglob("*.npz"))) == 2


@pytest.mark.slow
def test_parallel_and_serial_runs_are_identical():
    """PID Flow (flows trained) on a random embedded-size model's Mini-GQA features, two layers:
    loky with 2 workers gives exactly the numbers of a serial run."""
    from pidlib.data.minigqa.questions import generate
    from pidlib.extract.features import extract_features
    from pidlib.models.loaded import LoadedModel
    from pidlib.models.tiny import build_untrained

    untrained = build_untrained("tiny-llava-1.5")
    loaded = LoadedModel.from_parts(untrained.model, untrained.processor, name="rand")
    samples = generate(["ChooseAttr"], 160, split="test", seed=5)  # folds of 80 rows
    feats = extract_features(loaded, samples, correct_only=False, cache=False, progress=False)
    spec = PIDSpec(measures=("mmi", "broja"), max_dims=3, flow=True, n_bootstrap=4, n_seeds=2)
    fast = {"flow_config": FlowConfig(max_epochs=25, patience=5)}
    kw = {"pid_spec": spec, "layers": [1, -1], "cache": False, "progress": False, "seed": 7,
          "estimator_kwargs": fast}  # fmt: skip
    par = layerwise_pid(feats, parallel=ParallelSpec(backend="loky", n_jobs=2), **kw)
    ser = layerwise_pid(feats, parallel=SERIAL, **kw)
    pd.testing.assert_frame_equal(par, ser, check_exact=True)
    assert (ser["dims_1"] >= 1).all() and ser["lo"].notna().all()
    want = [job_seed(7, "rand", "ChooseAttr", layer) for layer in (1, loaded.num_layers)]
    assert list(ser.drop_duplicates("layer")["seed"]) == want


def test_cache_hits_and_resume(synthetic, tmp_path):
    store = ArrayCache(tmp_path)
    calls = []

    def counting(x1, x2, y, **kw):
        if len(calls) == 2 and counting.fail:
            raise KeyboardInterrupt("simulated interruption")
        calls.append(1)
        return gaussian_estimator(x1, x2, y, **kw)

    counting.fail = True
    kw = {"pid_spec": GAUSS, "parallel": SERIAL, "cache": store, "estimator": counting,
          "progress": False}  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        layerwise_pid(synthetic, **kw)
    assert len(calls) == 2 and len(list(tmp_path.glob("layerwise-pid/*/manifest.json"))) == 2
    counting.fail = False
    resumed = layerwise_pid(synthetic, **kw)
    assert len(calls) == 3
    again = layerwise_pid(synthetic, **kw)
    assert len(calls) == 3
    fresh = layerwise_pid(synthetic, **{**kw, "cache": False})
    assert len(calls) == 6
    pd.testing.assert_frame_equal(resumed, fresh)
    pd.testing.assert_frame_equal(again, fresh)
    # Other inputs are other entries, never a stale hit: V changed at layer 1 only.
    V = synthetic.V.copy()
    V[:, 1] *= 2
    layerwise_pid(make_features("toy", "ChooseAttr", V, synthetic.L, synthetic.Y[:, 0]), **kw)
    assert len(calls) == 7


def test_job_seed_is_stable_and_distinct():
    a = job_seed(0, "m", "ChooseAttr", 3)
    assert a == job_seed(0, "m", "ChooseAttr", 3) and 0 <= a < 2**31
    others = {job_seed(0, "m", "ChooseAttr", 4), job_seed(1, "m", "ChooseAttr", 3),
              job_seed(0, "m2", "ChooseAttr", 3), job_seed(0, "m", "ChooseCat", 3)}  # fmt: skip
    assert a not in others and len(others) == 4


def test_bad_input_raises_clear_errors(synthetic):
    kw = {"pid_spec": GAUSS, "parallel": SERIAL, "cache": False, "estimator": gaussian_estimator,
          "progress": False}  # fmt: skip
    with pytest.raises(ValueError, match="outside"):
        layerwise_pid(synthetic, layers=[3], **kw)
    with pytest.raises(ValueError, match="integers"):
        layerwise_pid(synthetic, layers=[0.5], **kw)
    with pytest.raises(ValueError, match="expected Features"):
        layerwise_pid([np.zeros(3)], **kw)
    with pytest.raises(ValueError, match="given twice"):
        layerwise_pid([synthetic, synthetic], **kw)
    with pytest.raises(ValueError, match="pid.measures"):
        layerwise_pid(synthetic, **{**kw, "pid_spec": PIDSpec(measures=("iccs",))})

    def failing(*args, **kwargs):
        raise ValueError("x2 is constant")

    with pytest.raises(ValueError, match="toy ChooseAttr layer 0: x2 is constant"):
        layerwise_pid(synthetic, **{**kw, "estimator": failing})
    with pytest.raises(ValueError, match="set by pid_spec"):
        layerwise_pid(synthetic, **{**kw, "estimator_kwargs": {"max_dims": 3}})
    with pytest.raises(ValueError, match="unknown backend"):
        layerwise_pid(synthetic, **{**kw, "parallel": ParallelSpec(backend="mpi")})
    for backend, package in (("dask", "dask"), ("ray", "ray")):
        try:
            __import__(package)
        except ImportError:
            with pytest.raises(ValueError, match="pip install"):
                layerwise_pid(synthetic, **{**kw, "parallel": ParallelSpec(backend=backend)})


# --------------------------------------------------------------------------- summaries


def _table(model: str, values: dict[str, list[float]], task: str = "ChooseAttr") -> pd.DataFrame:
    """A layerwise_pid-shaped table with given trajectories (one list per atom)."""
    n_layers = len(next(iter(values.values()))) - 1
    rows = []
    for atom, traj in values.items():
        for layer, v in enumerate(traj):
            rows.append((model, task, layer, n_layers, layer / n_layers, "mmi", atom, v,
                         np.nan, np.nan, 100, 2, 2, 1, 0, False))  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_shares_peaks_and_last_layer():
    df = _table("m", {"redundancy": [0.1, 0.2, 0.1], "unique_1": [0.2, 0.5, 0.1],
                      "unique_2": [0.0, 0.1, 0.8], "synergy": [0.1, 0.0, 0.0],
                      "total": [0.4, 0.8, 1.0]})  # fmt: skip
    sh = shares(df)
    np.testing.assert_allclose(sh.groupby("layer")["share"].sum(), 1.0)
    assert sh.set_index(["layer", "atom"]).loc[(1, "unique_1"), "share"] == pytest.approx(0.625)
    peak = peak_layers(df)
    assert peak.loc[0, "layer"] == 1 and peak.loc[0, "value"] == pytest.approx(0.5)
    last = last_layer_shares(df)
    assert last.loc[0, "unique_2"] == pytest.approx(0.8) and list(last.columns)[:2] == [
        "model",
        "task",
    ]
    zero = _table("m", {a: [0.0, 0.0] for a in ("redundancy", "unique_1", "unique_2", "synergy",
                                                 "total")})  # fmt: skip
    assert shares(zero)["share"].isna().all()
    with pytest.raises(ValueError, match="measure"):
        peak_layers(df, measure="broja")
    with pytest.raises(ValueError, match="atom"):
        peak_layers(df, atom="U_V")


def test_trajectory_correlation_aligns_on_relative_depth():
    f = lambda d: 0.3 + 2.0 * d  # noqa: E731 - linear in depth: interpolation is exact
    a = _table("a", {"unique_1": [f(d) for d in np.linspace(0, 1, 5)]})
    b = _table("b", {"unique_1": [f(d) ** 2 for d in np.linspace(0, 1, 9)]})
    r = trajectory_correlation(pd.concat([a, b]), atoms=["unique_1"])
    # By hand: b (8 layers) interpolated at a's depths (4 layers).
    b_at_a = np.interp(
        np.linspace(0, 1, 5), np.linspace(0, 1, 9), [f(d) ** 2 for d in np.linspace(0, 1, 9)]
    )
    want = np.corrcoef([f(d) for d in np.linspace(0, 1, 5)], b_at_a)[0, 1]
    assert r.loc[0, "r"] == pytest.approx(want) and r.loc[0, "n_points"] == 5
    c = _table("c", {"unique_1": [f(d) for d in np.linspace(0, 1, 9)]})
    assert trajectory_correlation(pd.concat([a, c]), atoms=["unique_1"]).loc[
        0, "r"
    ] == pytest.approx(1.0)
    same = _table("d", {"unique_1": [1.0, 3.0, 2.0, 5.0, 4.0]})
    got = trajectory_correlation(pd.concat([a, same]), atoms=["unique_1"]).loc[0, "r"]
    assert got == pytest.approx(
        np.corrcoef([f(d) for d in np.linspace(0, 1, 5)], [1, 3, 2, 5, 4])[0, 1]
    )
    with pytest.raises(ValueError, match="two models"):
        trajectory_correlation(pd.concat([a, b]), ["a", "zzz"], atoms=["unique_1"])


def _worker_pid(i):
    import os

    from joblib.externals.loky import process_executor

    return os.getpid(), getattr(process_executor, "_MAX_MEMORY_LEAK_SIZE", None)


def test_warm_workers_returns_at_once_and_later_jobs_reuse_the_workers():
    """A chapter's warm-up starts its loky workers in the background; the PID jobs that follow
    run on those same processes (none started anew)."""
    import os
    import time

    import joblib

    from pidlib.analysis import parallel
    from pidlib.config.profiles import ParallelSpec

    spec = ParallelSpec(backend="loky", n_jobs=2)
    t0 = time.perf_counter()
    parallel.warm_workers(spec)
    assert time.perf_counter() - t0 < 5.0  # the imports happen in the workers, not here
    deadline = time.perf_counter() + 60
    while len(parallel._WARMING[-1]) < 2 and time.perf_counter() < deadline:
        time.sleep(0.1)  # the warm-up calls end in the background
    warmed = set(parallel._WARMING[-1])
    assert len(warmed) >= 1 and os.getpid() not in warmed
    with parallel.backend(spec):
        seen = set(joblib.Parallel()(joblib.delayed(_worker_pid)(i) for i in range(8)))
    used = {pid for pid, _ in seen}
    assert used & warmed  # the same processes, warm
    # every worker keeps its models: loky's leak restart is moved out of their way
    from pidlib.core.watchdog import LEAK_BYTES

    assert all(limit >= LEAK_BYTES for _, limit in seen)
    parallel.warm_workers(ParallelSpec(backend="sequential"))  # nothing to warm: no error
