"""Canonical systems: exact truths agree with the estimator, samplers draw what they claim."""

import dataclasses
import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from pidlib.pid import canonical
from pidlib.pid.gaussian import gaussian_pid

NAMES = canonical.names()
GAUSSIAN = [n for n in NAMES if canonical.get(n).gaussian]
LATENT = [n for n in NAMES if not canonical.get(n).gaussian]
ATOMS = ("redundancy", "unique_1", "unique_2", "synergy")


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Small matrices: threaded OpenBLAS only adds contention (and stalls) on shared cores."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def test_names_and_lookup():
    assert len(set(NAMES)) == len(NAMES) >= 12 and len(LATENT) >= 4
    assert canonical.get("synergy") is canonical.get("synergy")
    with pytest.raises(ValueError, match="unknown canonical system 'nope'.*redundant"):
        canonical.get("nope")


@pytest.mark.parametrize("name", NAMES)
def test_truth_matches_estimator(name):
    system = canonical.get(name)
    d1, d2, dy = system.dims
    assert system.cov.shape == (d1 + d2 + dy,) * 2 and not system.cov.flags.writeable
    assert set(system.truth) == {"mmi", "broja"}
    for measure, truth in system.truth.items():
        assert truth.measure == measure and min(getattr(truth, k) for k in ATOMS) >= -1e-12
        est = gaussian_pid(system.cov, system.dims, measure)
        for k in (*ATOMS, "total", "mi_1", "mi_2"):
            assert abs(getattr(est, k) - getattr(truth, k)) < 1e-9, (measure, k)


EXPECTED = {  # what each description promises, BROJA atoms (R, U1, U2, S): "+" > 0.01, "0" exact
    "redundant": "+00+",
    "redundant_mv": "+00+",
    "unique": "0+00",
    "independent_channels": "0++0",
    "synergy": "+00+",
    "markov": "++00",
    "mixed": "++++",
    "highdim": "++++",
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_atoms_are_as_described(name):
    truth = canonical.get(name).truth["broja"]
    for atom, sign in zip(ATOMS, EXPECTED[name], strict=True):
        value = getattr(truth, atom)
        assert value > 0.01 if sign == "+" else abs(value) < 1e-9, (atom, value)
    if name == "synergy":
        assert truth.synergy > 3 * truth.redundancy
    if name == "independent_channels":  # MMI's redundancy without any shared information
        mmi = canonical.get(name).truth["mmi"]
        assert abs(mmi.redundancy - 0.5) < 1e-12 and abs(mmi.synergy - 0.5) < 1e-12


@pytest.mark.parametrize("name", NAMES)
def test_sampler_shapes_and_seeding(name):
    system = canonical.get(name)
    a, b = system.sampler(7, 3), system.sampler(7, 3)
    for x, d in zip(a, system.dims, strict=True):
        assert x.shape == (7, d) and np.all(np.isfinite(x))
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert not np.array_equal(a[0], system.sampler(7, 4)[0])
    with pytest.raises(ValueError, match="positive integer"):
        system.sampler(0, 1)


@pytest.mark.parametrize("name", GAUSSIAN)
def test_gaussian_samples_have_the_covariance(name):
    system = canonical.get(name)
    n = 20000
    x = np.hstack(system.sampler(n, 0))
    cov = system.cov
    z = (np.cov(x, rowvar=False) - cov) / np.sqrt(
        (np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n
    )
    assert np.max(np.abs(z)) < 5.5


@pytest.mark.parametrize("name", LATENT)
def test_latent_maps_invert_exactly(name):
    system = canonical.get(name)
    n, seed = 2000, 5
    z = np.random.default_rng(seed).standard_normal((n, system.cov.shape[0]))
    z = z @ np.linalg.cholesky(system.cov).T
    back = np.hstack(system.to_latent(*system.sampler(n, seed)))
    assert np.max(np.abs(back - z)) < 1e-8


@pytest.mark.parametrize("name", LATENT)
def test_latent_marginals_are_strongly_non_gaussian(name):
    x1, x2, y = canonical.get(name).sampler(20000, 1)
    for x in (x1, x2, y):
        xc = (x - x.mean(0)) / x.std(0)
        skew, kurt = np.mean(xc**3, 0), np.mean(xc**4, 0) - 3
        assert np.max(np.abs(skew) + np.abs(kurt)) > 1.0


@pytest.mark.parametrize("name", list(canonical.MAPS))
def test_maps_are_bijections(name):
    forward, inverse = canonical.MAPS[name]
    z = np.linspace(-6, 6, 1001)
    x = forward(z)
    assert np.all(np.diff(x) > 0)
    assert np.max(np.abs(inverse(x) - z)) < 1e-9


def test_random_system():
    s = canonical.random_system(5, 3, 2, seed=4)
    assert s.dims == (5, 3, 2) and set(s.truth) == {"mmi"} and s.gaussian
    assert np.array_equal(s.cov, canonical.random_system(5, 3, 2, seed=4).cov)
    assert not np.array_equal(s.cov, canonical.random_system(5, 3, 2, seed=5).cov)
    est = gaussian_pid(s.cov, s.dims, "mmi")
    assert abs(est.synergy - s.truth["mmi"].synergy) < 1e-9
    scalar = canonical.random_system(64, 64, 1, seed=0)
    assert set(scalar.truth) == {"mmi", "broja"}
    assert (
        abs(
            gaussian_pid(scalar.cov, scalar.dims, "broja").redundancy
            - scalar.truth["broja"].redundancy
        )
        < 1e-9
    )
    big = canonical.random_system(64, 64, 64)
    assert math.isfinite(gaussian_pid(big.cov, big.dims, "broja").total)
    for bad in ((0, 1, 1), (1, 1.5, 1), (1, 1, True)):
        with pytest.raises(ValueError, match="positive integer"):
            canonical.random_system(*bad)


def test_system_is_frozen():
    s = canonical.get("markov")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "x"
    with pytest.raises(TypeError):
        s.truth["mmi"] = None
