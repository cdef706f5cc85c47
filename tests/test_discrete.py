"""The discrete-target cross-check: exact systems (dit), the certified BROJA solver, the
discretised estimator, k-NN mutual information, and PID Flow's documented XOR blind spot."""

import math

import numpy as np
import pandas as pd
import pytest

from pidlib.pid import discrete_systems as ds
from pidlib.pid.broja import broja_union, pmf_mi, pmf_pid
from pidlib.pid.crosscheck import ESTIMATORS, crosscheck_experiment, target_matrix
from pidlib.pid.discrete import discrete_pid, discretise, empirical_pmf
from pidlib.pid.flow import pid_flow
from pidlib.pid.knn import knn_pid, ksg_mi, mixed_mi
from pidlib.pid.result import PID

ATOMS = PID.ATOMS
AND_R = 0.8112781244591328 - 0.5  # h(1/4) - h(1/2) / 2 = I(X1; Y) for Y = X1 and X2


def _max_error(est: PID, truth: PID) -> float:
    return max(abs(getattr(est, a) - getattr(truth, a)) for a in (*ATOMS, "total"))


def _atoms(pid: PID) -> tuple[float, ...]:
    return tuple(getattr(pid, a) for a in ATOMS)


# ------------------------------------------------------------------ exact systems


@pytest.mark.parametrize(
    "name, measure, expected",
    [
        ("xor", "broja", (0, 0, 0, 1)),
        ("and", "broja", (AND_R, 0, 0, 0.5)),
        ("copy", "broja", (0, 1, 1, 0)),
        ("copy", "mmi", (1, 0, 0, 1)),
        ("unique", "broja", (0, 1, 0, 0)),
        ("rdn", "broja", (1, 0, 0, 0)),
        ("noisy_xor", "broja", (0, 0, 0, 1 + 0.1 * math.log2(0.1) + 0.9 * math.log2(0.9))),
        ("mixed_and", "broja", (AND_R, 0, 0, 0.5)),
    ],
)
def test_dit_truths_are_the_textbook_values(name, measure, expected):
    truth = ds.get(name).truth[measure]
    assert truth.info["source"] == "dit 2.3"
    assert _atoms(truth) == pytest.approx(expected, abs=1e-7)


def test_every_system_samples_its_declared_shapes_and_levels():
    for name in ds.names():
        system = ds.get(name)
        x1, x2, y = system.sampler(200, 3)
        assert x1.shape == (200, system.dims[0]) and x2.shape == (200, system.dims[1])
        assert y.shape == (200,) and y.dtype == np.int64
        assert set(np.unique(y)) <= set(range(system.pmf.shape[2]))
        x1b, _, yb = system.sampler(200, 3)
        assert np.array_equal(x1, x1b) and np.array_equal(y, yb)


@pytest.mark.parametrize("name", ["mixed_xor", "mixed_and", "mixed_copy", "gauss_xor"])
def test_mixed_sources_carry_the_core_bits_exactly(name):
    """The core bit is a function of the source (a half-space), so the truth is the core's."""
    system = ds.get(name)
    x1, x2, y = system.sampler(4000, 0)
    b1, b2 = system.to_core(x1, x2)
    assert np.array_equal(b1, system.to_core(-x1, x2)[0] ^ 1)
    est = pmf_pid(empirical_pmf(b1, b2, y))
    assert _max_error(est, system.truth["broja"]) < 0.03
    # the bits are those the sampler drew: the empirical core matches the exact pmf
    assert np.abs(empirical_pmf(b1, b2, y, system.pmf.shape) - system.pmf).max() < 0.03


def test_gauss_xor_sources_are_standard_gaussian_and_pairwise_blind():
    x1, x2, y = ds.get("gauss_xor").sampler(20000, 1)
    assert ds.get("gauss_xor").pairwise_independent
    joint = np.hstack([x1, x2, y[:, None] - 0.5])
    cov = np.cov(joint, rowvar=False)
    assert np.abs(cov[:6, :6] - np.eye(6)).max() < 0.05  # N(0, I) sources, uncorrelated
    assert np.abs(cov[:6, 6]).max() < 0.02  # and uncorrelated with Y
    assert abs(float(np.mean(x1[:, 0] ** 4)) - 3) < 0.2  # Gaussian kurtosis


def test_gaussian_mixture_mi_limits():
    assert ds.gaussian_mixture_mi([0.0, 0.0]) == pytest.approx(0.0, abs=1e-9)
    assert ds.gaussian_mixture_mi([-30.0, 30.0]) == pytest.approx(1.0, abs=1e-9)
    assert ds.gaussian_mixture_mi([-1.0, 1.0]) == pytest.approx(0.4859, abs=1e-3)


# ------------------------------------------------------------------ the certified BROJA solver


@pytest.mark.parametrize("name", ["xor", "and", "copy", "unique", "rdn", "noisy_xor"])
def test_certified_broja_agrees_with_dit(name):
    system = ds.get(name)
    est = pmf_pid(system.pmf)
    assert est.info["broja_gap"] < 1e-8
    assert _atoms(est) == pytest.approx(_atoms(system.truth["broja"]), abs=1e-6)
    mmi = pmf_pid(system.pmf, "mmi")
    assert _atoms(mmi) == pytest.approx(_atoms(system.truth["mmi"]), abs=1e-7)


def test_certified_broja_matches_brute_force_on_binary_pmfs():
    """2x2x2: q[0, 0, y] = t_y fixes each y's 2x2 table; a 401 x 401 grid brackets the min."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = rng.dirichlet(np.ones(8)).reshape(2, 2, 2)
        sol = broja_union(p)
        p1, p2 = p.sum(1), p.sum(0)
        t = [np.linspace(max(0, p1[0, y] - p2[1, y]), min(p1[0, y], p2[0, y]), 401) for y in (0, 1)]
        t0, t1 = np.meshgrid(*t, indexing="ij")
        q = np.zeros((*t0.shape, 2, 2, 2))
        for y, ty in ((0, t0), (1, t1)):
            q[..., 0, 0, y], q[..., 0, 1, y] = ty, p1[0, y] - ty
            q[..., 1, 0, y] = p2[0, y] - ty
            q[..., 1, 1, y] = p1[1, y] - p2[0, y] + ty
        q = np.clip(q, 0, None)
        qab = q.sum(-1, keepdims=True)
        py = p.sum((0, 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(q > 0, q * np.log2(q / (qab * py)), 0.0)
        best = float(terms.sum((-3, -2, -1)).min())
        assert sol.gap < 1e-8
        assert sol.lower - 1e-9 <= best <= sol.union + 1e-4  # grid resolution


def test_certified_broja_is_never_beaten_by_dit():
    """dit's SLSQP answer is a feasible coupling (to its constraint tolerance): it cannot go
    below our certified bound, and our coupling is at least as good."""
    from dit import Distribution
    from dit.pid import PID_BROJA

    rng = np.random.default_rng(1)
    for shape in [(2, 2, 2), (3, 2, 2)]:
        p = rng.dirichlet(np.full(math.prod(shape), 0.7)).reshape(shape)
        sol = broja_union(p)
        cells = np.argwhere(p > 0)
        dist = Distribution([tuple(map(int, c)) for c in cells], [p[tuple(c)] for c in cells])
        r = PID_BROJA(dist, [[0], [1]], [2], method="scipy", rng=np.random.default_rng(0))
        dit_union = pmf_mi(p)[2] - r.get_pi(((0, 1),))
        assert sol.gap < 1e-8
        assert sol.lower <= dit_union + 1e-6  # dit's SLSQP meets constraints to ~1e-7
        assert sol.union <= dit_union + 1e-6


def test_certified_broja_on_sparse_pmfs_with_empty_cells():
    """Small-sample pmfs leave (x1, x2) cells that no coupling can charge; they once made the
    Newton system 0 / 0 (a NaN certificate and a union above the truth). Certified, and no
    better than dit's feasible coupling, on 40 pmfs of 3 to 11 samples."""
    from dit import Distribution
    from dit.pid import PID_BROJA

    rng = np.random.default_rng(0)
    for _ in range(40):
        shape = tuple(int(k) for k in rng.integers(2, 4, 3))
        c = np.zeros(shape)
        for _ in range(int(rng.integers(3, 12))):
            c[tuple(int(rng.integers(k)) for k in shape)] += 1
        p = c / c.sum()
        sol = broja_union(p)
        assert np.isfinite(sol.gap) and sol.gap < 1e-8, (c.tolist(), sol)
        cells = np.argwhere(p > 0)
        dist = Distribution([tuple(map(int, x)) for x in cells], [p[tuple(x)] for x in cells])
        r = PID_BROJA(dist, [[0], [1]], [2], method="scipy", rng=np.random.default_rng(0))
        # dit's SLSQP meets the marginals to ~1e-7, worth up to ~1e-5 bits on these tiny pmfs
        assert sol.union <= pmf_mi(p)[2] - r.get_pi(((0, 1),)) + 1e-5


def test_certified_broja_on_wider_alphabets_is_fast_and_consistent():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.full(8 * 8 * 2, 0.5)).reshape(8, 8, 2)
    sol = broja_union(p)
    i1, i2, i12 = pmf_mi(p)
    assert sol.gap < 1e-7
    assert max(i1, i2) - 1e-9 <= sol.union <= min(i1 + i2, i12) + 1e-9
    assert np.allclose(sol.q.sum(1), p.sum(1)) and np.allclose(sol.q.sum(0), p.sum(0))


# ------------------------------------------------------------------ the cross-check


@pytest.mark.parametrize("name", ["xor", "and", "copy", "unique", "rdn"])
@pytest.mark.parametrize("seed", range(5))
def test_crosscheck_recovers_binary_systems_within_005_bits(name, seed):
    """The issue's criterion: XOR, AND, COPY (and unique, redundant) at n = 1000."""
    system = ds.get(name)
    x1, x2, y = system.sampler(1000, seed)
    est = discrete_pid(x1, x2, y, measure=("broja", "mmi"), seed=seed)
    assert est["broja"].info["discretisation"][0]["method"] == "levels"
    for measure in ("broja", "mmi"):
        assert _max_error(est[measure], system.truth[measure]) < 0.05


@pytest.mark.parametrize(
    "name, discretiser",
    [
        ("mixed_xor", "kmeans"),
        ("mixed_and", "kmeans"),
        ("mixed_copy", "kmeans"),
        ("mixed_unique", "kmeans"),
        ("mixed_and", "probe"),
        ("mixed_copy", "probe"),
        ("mixed_unique", "probe"),
    ],
)
def test_crosscheck_recovers_mixed_systems_within_006_bits(name, discretiser):
    """Continuous 3-d sources, n = 1000, 3 seeds: every atom within 0.06 bits (AND's unique
    atoms alone have a sampling sd of ~0.013 bits at this n)."""
    system = ds.get(name)
    for seed in range(3):
        x1, x2, y = system.sampler(1000, seed)
        est = discrete_pid(x1, x2, y, discretiser=discretiser, seed=seed)
        assert _max_error(est, system.truth["broja"]) < 0.06, (seed, est)


def test_documented_blind_spots_of_the_discretisers():
    """A probe of Y on one source cannot keep XOR's synergy; k-means cannot when the sign bit
    is no cluster (gauss_xor). Both report far less than the 1 bit of synergy."""
    x1, x2, y = ds.get("mixed_xor").sampler(1000, 0)
    assert discrete_pid(x1, x2, y, discretiser="probe").synergy < 0.1
    x1, x2, y = ds.get("gauss_xor").sampler(1000, 0)
    assert discrete_pid(x1, x2, y, discretiser="kmeans").synergy < 0.5


def test_crosscheck_is_invariant_to_relabelling_and_swaps_sources():
    x1, x2, y = ds.get("mixed_and").sampler(1000, 4)
    base = discrete_pid(x1, x2, y, discretiser="kmeans")
    relabelled = discrete_pid(3.0 * x1 - 7.0, x2, np.array(["no", "yes"])[y], discretiser="kmeans")
    assert _atoms(relabelled) == pytest.approx(_atoms(base), abs=1e-9)
    swapped = discrete_pid(x2, x1, y, discretiser="kmeans")
    assert swapped.unique_1 == pytest.approx(base.unique_2, abs=1e-9)
    assert swapped.redundancy == pytest.approx(base.redundancy, abs=1e-9)


def test_probe_is_cross_fitted_so_noise_gives_no_information():
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal((300, 20)), rng.standard_normal((300, 20))
    y = rng.integers(0, 2, 300)
    est = discrete_pid(x1, x2, y, discretiser="probe", measure="mmi")
    assert est.info["discretisation"][0]["probe_accuracy"] < 0.6
    assert max(est.mi_1, est.mi_2) < 0.03  # Miller-Madow scale here: 0.007 bits
    assert est.total < 0.06


def test_rare_class_gives_a_message_with_the_counts():
    rng = np.random.default_rng(6)
    x1, x2 = rng.standard_normal((100, 3)), rng.standard_normal((100, 3))
    y = np.zeros(100, dtype=int)
    y[:2] = 1
    with pytest.raises(ValueError, match=r"class counts are \[98, 2\]"):
        discrete_pid(x1, x2, y, discretiser="probe")
    assert discrete_pid(x1, x2, y, discretiser="kmeans").total >= 0  # no probe: an estimate


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    x1, x2, y = ds.get("and").sampler(1000, 0)
    a = discrete_pid(x1, x2, y, n_bootstrap=40, seed=3)
    b = discrete_pid(x1, x2, y, n_bootstrap=40, seed=3)
    assert a.ci == b.ci
    for atom in ("redundancy", "synergy", "total"):
        lo, hi = a.ci[atom]
        assert lo <= getattr(a, atom) <= hi and hi - lo > 0.005
    assert set(a.info["bootstrap_mean"]) == {*ATOMS, "total", "mi_1", "mi_2"}


def test_bad_inputs_are_refused():
    x = np.zeros((10, 1))
    with pytest.raises(ValueError, match="distinct values"):
        discrete_pid(np.zeros((100, 1)), np.zeros((100, 1)), np.arange(100.0) / 7)
    with pytest.raises(ValueError, match="unknown discretiser"):
        discrete_pid(x, x, np.arange(10) % 2, discretiser="histogram")
    with pytest.raises(ValueError, match="max_levels"):
        discretise(np.arange(40.0), np.arange(40) % 2, method="levels")


# ------------------------------------------------------------------ PID Flow's blind spot


@pytest.mark.parametrize("flow", [False, True])
@pytest.mark.parametrize("name", ["xor", "mixed_xor"])
def test_pid_flow_misses_xor_synergy(flow, name):
    """The documented failure: every source is independent of Y and of the other source, so
    any per-variable Gaussianization has zero cross-covariances; PID Flow reports ~0 bits
    where the truth is 1 bit of synergy, while the cross-check finds it."""
    system = ds.get(name)
    x1, x2, y = system.sampler(1000, 0)
    flowed = pid_flow(x1, x2, target_matrix(y), measure="broja", flow=flow, seed=0)
    assert system.truth["broja"].synergy == pytest.approx(1.0, abs=1e-6)
    assert flowed.synergy < 0.05 and flowed.total < 0.05
    disc = "kmeans" if system.continuous else "auto"
    assert discrete_pid(x1, x2, y, discretiser=disc).synergy > 0.95


# ------------------------------------------------------------------ k-NN mutual information


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_ksg_matches_the_bivariate_gaussian(rho):
    truth = -0.5 * math.log2(1 - rho**2)
    ests = []
    for seed in range(8):
        z = np.random.default_rng(seed).multivariate_normal([0, 0], [[1, rho], [rho, 1]], 1000)
        ests.append(ksg_mi(z[:, 0], 4.0 * z[:, 1] + 2.0, seed=seed))
    se = np.std(ests) / math.sqrt(len(ests))
    assert abs(np.mean(ests) - truth) < 3 * se + 0.01


def test_ksg_matches_a_two_by_two_gaussian():
    cov = np.eye(4)
    cov[0, 2] = cov[2, 0] = 0.6
    cov[1, 3] = cov[3, 1] = 0.4
    truth = -0.5 * (math.log2(1 - 0.36) + math.log2(1 - 0.16))
    ests = []
    for seed in range(8):
        z = np.random.default_rng(seed).multivariate_normal(np.zeros(4), cov, 1000)
        ests.append(ksg_mi(z[:, :2], z[:, 2:], seed=seed))
    assert abs(np.mean(ests) - truth) < 3 * np.std(ests) / math.sqrt(8) + 0.015


@pytest.mark.parametrize("means", [(-1.0, 1.0), (-2.0, 0.0, 2.0), (0.0, 0.5)])
def test_mixed_mi_matches_gaussian_mixtures(means):
    truth = ds.gaussian_mixture_mi(means)
    ests = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, len(means), 1000)
        ests.append(mixed_mi(np.asarray(means)[y] + rng.standard_normal(1000), y, seed=seed))
    assert abs(np.mean(ests) - truth) < 3 * np.std(ests) / math.sqrt(8) + 0.01


def test_knn_pid_sees_the_synergy_of_mixed_xor():
    system = ds.get("mixed_xor")
    x1, x2, y = system.sampler(1000, 0)
    est = knn_pid(x1, x2, y)
    assert est.measure == "mmi" and min(_atoms(est)) >= 0
    assert _max_error(est, system.truth["mmi"]) < 0.1


# ------------------------------------------------------------------ the Methods experiment


def test_crosscheck_experiment_table():
    df = crosscheck_experiment(("xor", "mixed_copy"), n=500, seeds=(0,), flows=(False,))
    assert set(df.estimator) <= set(ESTIMATORS)
    assert {"system", "estimator", "measure", "seed", "atom", "truth", "estimate", "error"} <= set(
        df.columns
    )
    assert (df.status == "ok").all()
    xor = df[(df.system == "xor") & (df.measure == "broja") & (df.atom == "synergy")]
    errors = xor.set_index("estimator").error
    assert errors["gaussian"] < -0.95 and abs(errors["crosscheck_levels"]) < 0.05
    copy = df[(df.system == "mixed_copy") & (df.estimator == "crosscheck_kmeans")]
    assert copy[copy.measure == "broja"].error.abs().max() < 0.05


def test_crosscheck_experiment_is_the_same_on_two_workers():
    kw = dict(n=400, seeds=(0, 1), flows=(False, True))
    one = crosscheck_experiment(("and", "mixed_xor"), **kw)
    two = crosscheck_experiment(("and", "mixed_xor"), n_jobs=2, **kw)
    pd.testing.assert_frame_equal(one.drop(columns="seconds"), two.drop(columns="seconds"))


def test_crosscheck_experiment_records_a_singular_gaussian_as_a_status():
    df = crosscheck_experiment(("unique",), n=300, seeds=(0,), flows=(False,))
    gauss = df[df.estimator == "gaussian"]
    assert gauss.status.str.startswith("error:").all() and gauss.estimate.isna().all()


@pytest.mark.slow
def test_the_default_methods_experiment():
    """The Methods chapter's table (n = 1000, 3 seeds, PID Flow with and without the flow)."""
    df = crosscheck_experiment()
    broja = df[df.measure == "broja"].set_index(["system", "estimator", "seed", "atom"]).error
    broja = broja.sort_index()
    for name in ("xor", "and", "copy"):
        assert broja.loc[name, "crosscheck_levels"].abs().max() < 0.05
    assert (broja.loc["xor", "pid_flow", :, "synergy"] < -0.95).all()


def test_chapter_crosscheck_is_cached_exactly(tmp_path, monkeypatch):
    """The chapters' cross-check table: the same values from the cache as computed (no solve on
    a warm read), PID Flow's column read from the layer-wise table, NaN where it has no row."""
    import pandas as pd

    from pidlib.analysis import crosscheck as cc
    from pidlib.core.cache import ArrayCache
    from pidlib.extract.features import Features

    rng = np.random.default_rng(0)
    n, layers = 200, 3
    v, lang = rng.standard_normal((n, layers, 2)), rng.standard_normal((n, layers, 2))
    choice = ((v[:, :, 0] > 0) ^ (lang[:, :, 0] > 0))[:, -1].astype(int)

    def feats(info):
        z = np.zeros(n)
        return Features("m", "ChooseAttr", V=v, L=lang, option_logits=np.zeros((n, 2)),
                        last_hidden=np.zeros((n, 2)), prob=z, answer=z.astype(str),
                        correct=np.ones(n, bool), choice=choice, gold=choice,
                        qid=np.arange(n).astype(str), options=np.array(["a", "b"]),
                        info=info)  # fmt: skip

    pid = pd.DataFrame([{"model": "m", "task": "ChooseAttr", "layer": 0, "atom": "synergy",
                         "measure": "broja", "value": 0.25}])  # fmt: skip
    store = ArrayCache(tmp_path)
    plain = cc.crosscheck_table({("m", "ChooseAttr"): feats({})}, pid, cache=store)
    assert not (tmp_path / "crosscheck").exists()  # features without cache keys: not cached
    keyed = {("m", "ChooseAttr"): feats({"cache_keys": ["k1"]})}
    first = cc.crosscheck_table(keyed, pid, cache=store)
    monkeypatch.setattr(cc, "discrete_pid", lambda *a, **k: pytest.fail("solved again"))
    warm = cc.crosscheck_table(keyed, pid, cache=store)
    pd.testing.assert_frame_equal(first, plain)
    pd.testing.assert_frame_equal(warm, plain)
    assert list(plain["layer"].unique()) == cc.probe_layers(layers - 1)
    row = plain.query("layer == 0 and atom == 'synergy'")
    assert row["PID Flow"].item() == 0.25 and plain["PID Flow"].isna().sum() == len(plain) - 1
    last = plain.query(f"layer == {layers - 1} and atom == 'synergy'")["cross-check"].item()
    assert last > 0.5  # the XOR choice: the cross-check sees its synergy
