"""Gaussian MI and the MMI / BROJA PIDs against independent closed forms and a generic solver."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import scipy.optimize as so
from scipy.special import digamma
from threadpoolctl import threadpool_limits

from pidlib.pid.gaussian import gaussian_mi, gaussian_pid, logdet_bias, mi_bias
from pidlib.pid.result import PID

ATOMS = ("redundancy", "unique_1", "unique_2", "synergy")
LN2 = math.log(2)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Small matrices: threaded OpenBLAS only adds contention (and stalls) on shared cores."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ----------------------------------------------------------------------------- references


def wishart(rng, d, extra=None):
    a = rng.standard_normal((d, d + (extra if extra is not None else d)))
    return a @ a.T / a.shape[1]


def mixing(rng, d):
    q1, _ = np.linalg.qr(rng.standard_normal((d, d)))
    q2, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q1 * np.exp(rng.uniform(-1, 1, d))) @ q2


def mix(rng, cov, dims):
    """Apply an independent random invertible linear map to each block."""
    m = np.zeros_like(cov)
    start = 0
    for d in dims:
        m[start : start + d, start : start + d] = mixing(rng, d)
        start += d
    return m @ cov @ m.T


def mi_ref(cov, a, b):
    """I(A;B) in bits from LU log-determinants (numpy.linalg.slogdet)."""
    ld = [np.linalg.slogdet(cov[np.ix_(i, i)])[1] for i in (a, b, np.concatenate([a, b]))]
    return (ld[0] + ld[1] - ld[2]) / (2 * LN2)


def terms_ref(cov, dims):
    d1, d2, dy = dims
    x1, x2, y = np.arange(d1), np.arange(d1, d1 + d2), np.arange(d1 + d2, d1 + d2 + dy)
    return mi_ref(cov, x1, y), mi_ref(cov, x2, y), mi_ref(cov, np.concatenate([x1, x2]), y)


def atoms_from_union(i1, i2, i12, union):
    return {
        "redundancy": i1 + i2 - union,
        "unique_1": union - i2,
        "unique_2": union - i1,
        "synergy": i12 - union,
    }


def union_by_search(cov, dims, restarts=3):
    """BROJA union information (bits) by direct numerical minimisation over couplings.

    The free variable is the cross-covariance of (X1, X2) in the original coordinates,
    S12 = S1Y SY^-1 SY2 + G1 K G2' with G_i the Cholesky factor of Cov(X_i | Y) and
    K = Z (I + Z'Z)^-1/2 (spectral norm < 1: exactly the couplings with a PSD joint covariance);
    the objective is the plug-in I_q(X1, X2; Y) by slogdet; BFGS from several starts.
    """
    d1, d2, dy = dims
    x1, x2, y = slice(0, d1), slice(d1, d1 + d2), slice(d1 + d2, None)
    sy_inv = np.linalg.inv(cov[y, y])
    base = cov[x1, y] @ sy_inv @ cov[y, x2]
    g1 = np.linalg.cholesky(cov[x1, x1] - cov[x1, y] @ sy_inv @ cov[y, x1])
    g2 = np.linalg.cholesky(cov[x2, x2] - cov[x2, y] @ sy_inv @ cov[y, x2])

    def objective(z):
        z = z.reshape(d1, d2)
        w, v = np.linalg.eigh(np.eye(d2) + z.T @ z)
        q = cov.copy()
        q[x1, x2] = base + g1 @ (z @ (v / np.sqrt(w)) @ v.T) @ g2.T
        q[x2, x1] = q[x1, x2].T
        return mi_ref(q, np.arange(d1 + d2), np.arange(d1 + d2, d1 + d2 + dy))

    rng = np.random.default_rng(0)
    best = min(
        (
            so.minimize(
                objective,
                0.3 * rng.standard_normal(d1 * d2),
                method="BFGS",
                options={"gtol": 1e-11, "maxiter": 5000},
            )
            for _ in range(restarts)
        ),
        key=lambda r: r.fun,
    )
    return best.fun


def close(pid, expected, tol=1e-9):
    for k, v in expected.items():
        assert abs(getattr(pid, k) - v) <= tol, (k, getattr(pid, k), v)


# ----------------------------------------------------------------------------- MMI and MI


@pytest.mark.parametrize("dims", [(1, 1, 1), (2, 3, 1), (3, 2, 2), (5, 4, 3), (8, 8, 4), (1, 7, 5)])
def test_mmi_matches_closed_form(dims):
    rng = np.random.default_rng(sum(dims))
    for _ in range(5):
        cov = wishart(rng, sum(dims))
        i1, i2, i12 = terms_ref(cov, dims)
        r = min(i1, i2)
        pid = gaussian_pid(cov, dims, "mmi")
        close(
            pid,
            {
                "redundancy": r,
                "unique_1": i1 - r,
                "unique_2": i2 - r,
                "synergy": i12 - i1 - i2 + r,
                "total": i12,
                "mi_1": i1,
                "mi_2": i2,
            },
        )
        assert pid.measure == "mmi" and pid.info["converged"]


def test_gaussian_mi_two_and_three_blocks():
    rng = np.random.default_rng(1)
    cov = wishart(rng, 9)
    a, b = np.arange(5), np.arange(5, 9)
    assert abs(gaussian_mi(cov, (5, 4)) - mi_ref(cov, a, b)) < 1e-10
    assert abs(gaussian_mi(cov, (2, 3, 4)) - mi_ref(cov, a, b)) < 1e-10
    n = 50
    expected = mi_ref(cov, a, b) - mi_bias(5, 4, n)
    assert abs(gaussian_mi(cov, (5, 4), n=n) - expected) < 1e-10
    assert gaussian_mi(np.eye(4), (2, 2), n=10) == 0.0  # corrected below zero: clipped


# ----------------------------------------------------------------------------- BROJA


@pytest.mark.parametrize(
    "dims",
    [(1, 1, 2), (2, 1, 2), (2, 2, 2), (1, 2, 3), (3, 2, 3), (3, 3, 3)]
    + [pytest.param((6, 5, 4), marks=pytest.mark.slow)],
)
def test_broja_matches_generic_solver(dims):
    rng = np.random.default_rng(10 * sum(dims) + dims[2])
    for _ in range(2):
        cov = wishart(rng, sum(dims), extra=3)
        pid = gaussian_pid(cov, dims, "broja")
        assert abs(pid.info["union_information"] - union_by_search(cov, dims)) < 1e-9


@pytest.mark.parametrize("d1,d2", [(1, 1), (3, 7), (32, 16), (128, 128)])
def test_broja_equals_mmi_for_scalar_target(d1, d2):
    rng = np.random.default_rng(d1 + d2)
    cov = wishart(rng, d1 + d2 + 1)
    broja, mmi = gaussian_pid(cov, (d1, d2, 1), "broja"), gaussian_pid(cov, (d1, d2, 1), "mmi")
    close(broja, {k: getattr(mmi, k) for k in ATOMS})


def scalar_subsystems(rng, sizes):
    """Independent random scalar-target systems; their BROJA union is sum_k max(I1k, I2k)."""
    blocks, union = [], 0.0
    for a, b in sizes:
        cov = wishart(rng, a + b + 1)
        i1, i2, _ = terms_ref(cov, (a, b, 1))
        blocks.append((cov, a, b))
        union += max(i1, i2)
    dims = (sum(s[0] for s in sizes), sum(s[1] for s in sizes), len(sizes))
    cov = np.zeros((sum(dims), sum(dims)))
    starts = [0, dims[0], dims[0] + dims[1]]
    for sub, a, b in blocks:
        idx = np.concatenate(
            [np.arange(starts[0], starts[0] + a), np.arange(starts[1], starts[1] + b), [starts[2]]]
        )
        cov[np.ix_(idx, idx)] = sub
        starts = [starts[0] + a, starts[1] + b, starts[2] + 1]
    return cov, dims, union


@pytest.mark.parametrize(
    "sizes",
    [
        [(1, 1), (1, 1)],
        [(3, 2), (1, 4), (2, 2)],
        [(16, 16)] * 8,
        [(2, 30), (30, 2), (32, 32), (64, 64)],
    ],
)
def test_broja_additive_over_independent_scalar_targets(sizes):
    rng = np.random.default_rng(len(sizes))
    cov, dims, union = scalar_subsystems(rng, sizes)
    cov = mix(rng, cov, dims)  # hides the block structure; the PID is unchanged
    i1, i2, i12 = terms_ref(cov, dims)
    pid = gaussian_pid(cov, dims, "broja")
    close(pid, atoms_from_union(i1, i2, i12, union) | {"total": i12}, tol=1e-9 * max(1, i12))


@pytest.mark.parametrize("d1,d2,dy", [(3, 2, 2), (20, 10, 8), (128, 96, 8)])
def test_broja_degraded_source(d1, d2, dy):
    """Y -> X1 -> X2: the union is I(X1;Y) = I(X1,X2;Y), so R = I2, U1 = I1 - I2, U2 = S = 0."""
    rng = np.random.default_rng(d1)
    a, b = rng.normal(0, dy**-0.5, (d1, dy)), rng.normal(0, d1**-0.5, (d2, d1))
    sy, n1, n2 = wishart(rng, dy), wishart(rng, d1), wishart(rng, d2)
    c1 = a @ sy @ a.T + n1
    cov = np.block(
        [
            [c1, c1 @ b.T, a @ sy],
            [b @ c1, b @ c1 @ b.T + n2, b @ a @ sy],
            [sy @ a.T, sy @ a.T @ b.T, sy],
        ]
    )
    i1, i2, i12 = terms_ref(cov, (d1, d2, dy))
    assert abs(i12 - i1) < 1e-8
    pid = gaussian_pid(cov, (d1, d2, dy), "broja")
    close(pid, {"redundancy": i2, "unique_1": i1 - i2, "unique_2": 0.0, "synergy": 0.0}, 1e-9)


def test_broja_source_independent_of_target():
    rng = np.random.default_rng(5)
    c1y, c2 = wishart(rng, 6), wishart(rng, 4)
    cov = np.zeros((10, 10))
    idx1y = np.r_[0:3, 7:10]
    cov[np.ix_(idx1y, idx1y)], cov[3:7, 3:7] = c1y, c2
    i1 = mi_ref(cov, np.arange(3), np.arange(7, 10))
    for measure in ("mmi", "broja"):
        close(
            gaussian_pid(cov, (3, 4, 3), measure),
            {"redundancy": 0.0, "unique_1": i1, "unique_2": 0.0, "synergy": 0.0, "mi_2": 0.0},
        )


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize("measure", ["mmi", "broja"])
def test_atoms_nonnegative_sum_to_total(measure):
    rng = np.random.default_rng(7)
    for _ in range(40):
        dims = tuple(int(v) for v in rng.integers(1, 7, 3))
        pid = gaussian_pid(wishart(rng, sum(dims), extra=2), dims, measure)
        atoms = [getattr(pid, k) for k in ATOMS]
        assert min(atoms) >= -1e-12
        assert abs(sum(atoms) - pid.total) < 1e-12 * max(1, pid.total)
        assert abs(pid.redundancy + pid.unique_1 - pid.mi_1) < 1e-12 * max(1, pid.total)


@pytest.mark.parametrize("measure", ["mmi", "broja"])
def test_invariant_under_invertible_maps(measure):
    rng = np.random.default_rng(8)
    for dims in [(2, 3, 2), (5, 4, 3), (12, 9, 6)]:
        cov = wishart(rng, sum(dims))
        ref = gaussian_pid(cov, dims, measure)
        moved = gaussian_pid(mix(rng, cov, dims), dims, measure)
        close(moved, {k: getattr(ref, k) for k in (*ATOMS, "total")}, tol=1e-9)


@pytest.mark.parametrize("measure", ["mmi", "broja"])
def test_symmetric_under_swapping_sources(measure):
    rng = np.random.default_rng(9)
    d1, d2, dy = 4, 2, 3
    cov = wishart(rng, d1 + d2 + dy)
    perm = np.r_[d1 : d1 + d2, 0:d1, d1 + d2 : d1 + d2 + dy]
    a, b = (
        gaussian_pid(cov, (d1, d2, dy), measure),
        gaussian_pid(cov[np.ix_(perm, perm)], (d2, d1, dy), measure),
    )
    close(
        b,
        {
            "redundancy": a.redundancy,
            "unique_1": a.unique_2,
            "unique_2": a.unique_1,
            "synergy": a.synergy,
            "mi_1": a.mi_2,
            "mi_2": a.mi_1,
        },
    )


def channel_cov(h1, h2, rho=0.0):
    """Whitened channels X_i = H_i Y + N_i, noise of matching coordinates correlated by rho."""
    k1, k2, dy = h1.shape[0], h2.shape[0], h1.shape[1]
    h = np.vstack([h1, h2])
    noise = np.eye(k1 + k2)
    for j in range(min(k1, k2)):
        noise[j, k1 + j] = noise[k1 + j, j] = rho
    return np.block([[h @ h.T + noise, h], [h.T, np.eye(dy)]]), (k1, k2, dy)


def degenerate_cases():
    rng = np.random.default_rng(11)
    h = rng.standard_normal((3, 3))
    rank1 = np.outer(rng.standard_normal(3), rng.standard_normal(3))
    near = h * (1 + 1e-9)
    return {
        "equal gains": channel_cov(h, h, rho=0.3),
        "equal gains, scalar": channel_cov(np.ones((1, 1)), np.ones((1, 1))),
        "near tie": channel_cov(h, near),
        "rank-1 cross-covariance": channel_cov(rank1, h),
        "both rank-1": channel_cov(rank1, 2 * rank1, rho=0.5),
        "source independent of Y": channel_cov(h, np.zeros((2, 3))),
        "both independent of Y": channel_cov(np.zeros((2, 2)), np.zeros((1, 2))),
        "scalar target": channel_cov(rng.standard_normal((4, 1)), rng.standard_normal((2, 1))),
        "scalar sources": channel_cov(rng.standard_normal((1, 4)), rng.standard_normal((1, 4))),
    }


@pytest.mark.parametrize("case", list(degenerate_cases()))
@pytest.mark.parametrize("measure", ["mmi", "broja"])
def test_degenerate_systems(case, measure):
    cov, dims = degenerate_cases()[case]
    pid = gaussian_pid(cov, dims, measure)
    values = [getattr(pid, f.name) for f in dataclasses.fields(pid)[:7]]
    assert all(math.isfinite(v) for v in values)
    assert min(getattr(pid, k) for k in ATOMS) >= -1e-12
    assert pid.info["converged"] and pid.info["gap"] <= 1e-10
    i1, i2, i12 = terms_ref(cov, dims)
    assert abs(pid.total - i12) < 1e-9 and abs(pid.mi_1 - i1) < 1e-9


def test_equal_gains_union_is_single_source():
    h = np.random.default_rng(2).standard_normal((3, 2))
    cov, dims = channel_cov(h, h, rho=0.2)
    i1, _, i12 = terms_ref(cov, dims)
    close(
        gaussian_pid(cov, dims, "broja"),
        {"redundancy": i1, "unique_1": 0.0, "unique_2": 0.0, "synergy": i12 - i1},
    )


# ----------------------------------------------------------------------------- input errors


def bad_inputs():
    good = wishart(np.random.default_rng(0), 4)
    asym = good.copy()
    asym[0, 1] += 0.1
    not_psd = good.copy()
    not_psd[0, 0] = -1.0
    dup = good.copy()  # X2 an exact copy of X1
    dup[1, :], dup[:, 1] = dup[0, :], dup[:, 0]
    y_copy = good.copy()  # Y an exact copy of X1: infinite I(X1;Y)
    y_copy[3, :], y_copy[:, 3] = y_copy[0, :], y_copy[:, 0]
    indefinite = good.copy()
    indefinite[0, 3] = indefinite[3, 0] = 10.0
    nan = good.copy()
    nan[2, 2] = np.nan
    inf = good.copy()
    inf[1, 2] = inf[2, 1] = np.inf
    d = (1, 1, 2)
    return [
        (nan, d, "mmi", {}, "NaN or inf"),
        (inf, d, "mmi", {}, "NaN or inf"),
        (good[:3], d, "mmi", {}, "square"),
        (np.ones(4), d, "mmi", {}, "square"),
        (asym, d, "mmi", {}, "not symmetric"),
        (not_psd, d, "mmi", {}, "X1 block"),
        (dup, (1, 1, 2), "broja", {}, r"\(X1, X2\) block"),
        (y_copy, (1, 2, 1), "mmi", {}, r"\(X1, Y\) block"),
        (indefinite, d, "mmi", {}, r"\(X1, Y\) block of cov is not positive semi-definite"),
        (good, (1, 1, 1), "mmi", {}, "sum to 3"),
        (good, (2, 0, 2), "mmi", {}, ">= 1"),
        (good, (1.5, 0.5, 2), "mmi", {}, "integers"),
        (good, (2, 2), "mmi", {}, "3 entries"),
        (good, d, "wyner", {}, "unknown PID measure"),
        (good, d, "mmi", {"n": 4}, "cannot give"),
        (good, d, "broja", {"n": 10.5}, "integer"),
        (good, d, "broja", {"tol": 0.0}, "tol must be a positive"),
    ]


@pytest.mark.parametrize("cov,dims,measure,kw,msg", bad_inputs())
def test_bad_input_raises(cov, dims, measure, kw, msg):
    with pytest.raises(ValueError, match=msg):
        gaussian_pid(cov, dims, measure, **kw)


def test_gaussian_mi_names_the_bad_block():
    cov = np.eye(5)
    cov[3, 4] = cov[4, 3] = 1.0  # the two B coordinates are identical
    with pytest.raises(ValueError, match="the B block of cov is singular"):
        gaussian_mi(cov, (3, 2))
    with pytest.raises(ValueError, match="at least two blocks"):
        gaussian_mi(cov, (5,))


def test_failed_certificate_warns(monkeypatch):
    import pidlib.pid.gaussian as g

    real = g._union_information

    def broken(*args):
        union, info = real(*args)
        return union, info | {"converged": False}

    monkeypatch.setattr(g, "_union_information", broken)
    with pytest.warns(RuntimeWarning, match="certificate gap"):
        pid = gaussian_pid(wishart(np.random.default_rng(3), 6), (2, 2, 2), "broja")
    assert pid.info["converged"] is False


def test_zero_variance_names_block():
    cov = np.eye(4)
    cov[3, 3] = 0.0
    with pytest.raises(ValueError, match="Y block"):
        gaussian_pid(cov, (1, 1, 2))


# ----------------------------------------------------------------------------- bias correction


def test_logdet_bias_scalar_is_log_chi_square_mean():
    # (n-1) s^2 / sigma^2 ~ chi2(n-1): E ln s^2 - ln sigma^2 = psi((n-1)/2) + ln 2 - ln(n-1)
    for n in (3, 10, 1000):
        assert abs(logdet_bias(1, n) - (digamma((n - 1) / 2) + LN2 - math.log(n - 1))) < 1e-14


def test_bias_correction_is_unbiased_by_simulation():
    rng = np.random.default_rng(12)
    dims, n, reps = (2, 2, 2), 25, 4000
    cov = wishart(rng, 6, extra=6)
    true = terms_ref(cov, dims)[2]
    chol = np.linalg.cholesky(cov)
    x = rng.standard_normal((reps, n, 6)) @ chol.T
    xc = x - x.mean(axis=1, keepdims=True)
    covs = np.einsum("rni,rnj->rij", xc, xc) / (n - 1)
    ld = lambda idx: np.linalg.slogdet(covs[:, idx][:, :, idx])[1]  # noqa: E731
    plug = (ld(np.arange(4)) + ld(np.arange(4, 6)) - ld(np.arange(6))) / (2 * LN2)
    corrected = plug - mi_bias(4, 2, n)
    se = plug.std() / math.sqrt(reps)
    assert abs(corrected.mean() - true) < 4 * se
    assert plug.mean() - true > 10 * se  # the plug-in is visibly biased upward


@pytest.mark.parametrize("measure", ["mmi", "broja"])
@pytest.mark.parametrize("n", [12, 400])
def test_bias_corrected_atoms_consistent(measure, n):
    cov = wishart(np.random.default_rng(13), 9)
    plug, corr = gaussian_pid(cov, (2, 4, 3), measure), gaussian_pid(cov, (2, 4, 3), measure, n=n)
    assert corr.total < plug.total and corr.mi_1 < plug.mi_1
    assert abs(corr.total - max(plug.total - mi_bias(6, 3, n), corr.mi_1, corr.mi_2)) < 1e-12
    assert abs(corr.mi_1 - max(plug.mi_1 - mi_bias(2, 3, n), 0.0)) < 1e-12
    assert abs(corr.mi_2 - max(plug.mi_2 - mi_bias(4, 3, n), 0.0)) < 1e-12
    assert min(getattr(corr, k) for k in ATOMS) >= 0.0
    assert corr.info["bias"]["total"] == mi_bias(6, 3, n)
    if measure == "broja":  # union scaled like I(X1,X2;Y), then clipped into its range
        union = plug.info["union_information"] * corr.total / plug.total
        union = min(max(union, corr.mi_1, corr.mi_2), corr.mi_1 + corr.mi_2, corr.total)
        close(corr, atoms_from_union(corr.mi_1, corr.mi_2, corr.total, union), tol=1e-12)


# ----------------------------------------------------------------------------- the PID record


def test_pid_record():
    pid = PID.from_terms(1.0, 0.5, 2.0, "broja", union=1.25, info={"gap": 0.0})
    assert (pid.redundancy, pid.unique_1, pid.unique_2, pid.synergy) == (0.25, 0.75, 0.25, 0.75)
    assert pid.shares() == {
        "redundancy": 0.125,
        "unique_1": 0.375,
        "unique_2": 0.125,
        "synergy": 0.375,
    }
    d = pid.as_dict()
    assert d["measure"] == "broja" and d["info"] == {"gap": 0.0} and d["ci"] is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        pid.total = 3.0
    with pytest.raises(TypeError):
        pid.info["gap"] = 1.0
    assert pid == PID.from_terms(1.0, 0.5, 2.0, "broja", union=1.25) and hash(pid)
    zero = PID.from_terms(0.0, 0.0, 0.0, "mmi")
    assert all(math.isnan(v) for v in zero.shares().values())
    assert (
        PID.from_terms(1.0, 0.5, 2.0, "broja", union=9.0).synergy == 0.5
    )  # union clipped to I12 - ...


def test_pid_record_rejects_inconsistency():
    with pytest.raises(ValueError, match="inconsistent PID"):
        PID(0.1, 0.2, 0.3, 0.4, 2.0, 0.3, 0.4, "mmi")
    with pytest.raises(ValueError, match="finite"):
        PID(math.nan, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "mmi")
    with pytest.raises(ValueError, match="unknown keys"):
        PID(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "mmi", ci={"bogus": (0.0, 1.0)})
    pid = PID(0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, "mmi", ci={"unique_1": (0.9, 1.1)})
    assert pid.ci["unique_1"] == (0.9, 1.1)


# ------------------------------------------------------------------- stacked (replicates)


@pytest.mark.parametrize("dims", [(1, 1, 1), (3, 2, 1), (4, 3, 3), (12, 9, 2)])
@pytest.mark.parametrize("n", [None, 200])
def test_pid_vectors_equal_gaussian_pid_one_by_one(dims, n):
    """The stacked PIDs of half-subsample replicates are gaussian_pid's, matrix by matrix."""
    from pidlib.pid.gaussian_batch import KEYS, pid_vectors

    rng = np.random.default_rng(sum(dims) + (n or 0))
    covs = np.stack([wishart(rng, sum(dims)) for _ in range(12)])
    got = pid_vectors(covs, dims, ("mmi", "broja"), n)
    for m in ("mmi", "broja"):
        want = [[getattr(gaussian_pid(c, dims, m, n=n), k) for k in KEYS] for c in covs]
        np.testing.assert_allclose(got[m], want, rtol=0, atol=1e-10)


def test_pid_vectors_name_the_block_that_is_not_positive_definite():
    from pidlib.pid.gaussian_batch import pid_vectors

    rng = np.random.default_rng(0)
    covs = np.stack([wishart(rng, 4) for _ in range(3)])
    covs[1, :2, :2] = [[1.0, 1.0], [1.0, 1.0]]  # X1's two coordinates identical
    covs[1, :2, 2:] = 0.0
    covs[1, 2:, :2] = 0.0
    with pytest.raises(ValueError, match="X1 block"):
        pid_vectors(covs, (2, 1, 1), ("mmi",), None)
    with pytest.raises(ValueError, match="unknown PID measure 'idep'"):
        pid_vectors(covs, (2, 1, 1), ("idep",), None)


def test_pid_replicates_equal_the_pid_of_each_subsample():
    """PID Flow's interval replicates (stacked) equal the latents' PIDs subsample by subsample,
    also where a subsample has a constant latent direction (dropped, as _pids drops it)."""
    from pidlib.pid.gaussian_batch import KEYS
    from pidlib.pid.maps import _pid_replicates, _pids

    rng = np.random.default_rng(3)
    z = rng.standard_normal((120, 6)) @ rng.standard_normal((6, 6))
    z[:60, 1] = z[:60, 0]  # rows 0-59: the two X1 latents coincide
    subsets = [np.arange(60), *(np.sort(rng.choice(120, 60, replace=False)) for _ in range(5))]
    got = _pid_replicates(z, (2, 3, 1), ("mmi", "broja"), True, subsets)
    for m in ("mmi", "broja"):
        want = [[getattr(_pids(z[i], (2, 3, 1), (m,), True)[m], k) for k in KEYS] for i in subsets]
        np.testing.assert_allclose(got[m], want, rtol=0, atol=1e-10)
    assert got["mmi"][0, KEYS.index("total")] >= 0


def test_broja_numeric_check_agrees_with_the_closed_form_on_any_number_of_workers():
    """The Methods chapter's check: a generic barrier optimiser reaches the closed-form BROJA
    union information (from above, within its barrier's tolerance), and the table is the same
    on one or two workers."""
    from pidlib.pid.broja_check import broja_numeric_check

    one = broja_numeric_check(dys=(2, 3), seeds=range(2))
    two = broja_numeric_check(dys=(2, 3), seeds=range(2), n_jobs=2)
    pd.testing.assert_frame_equal(one, two)
    assert list(one["dy"]) == [2, 2, 3, 3]
    # a minimum over couplings: the optimiser approaches the closed form from above
    assert (one["difference"] > -1e-9).all() and one["difference"].max() < 1e-3
