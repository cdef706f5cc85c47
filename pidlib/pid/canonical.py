"""Named Gaussian and latent-Gaussian systems whose PIDs are known exactly (like dit's zoo)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType

import numpy as np

from pidlib.pid.result import PID

__all__ = ["MAPS", "System", "get", "names", "random_system"]

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)
class System:
    """A system (X1, X2, Y) with exact PIDs.

    ``cov`` is the joint covariance ordered ``[X1, X2, Y]`` (``dims = (d1, d2, dy)``) of the
    Gaussian variables; for a latent-Gaussian system (``gaussian=False``) it is the covariance of
    the latent Gaussian z, and each variable is observed as ``x_i = M_i f_i(z_i / sd(z_i))`` with
    an elementwise bijection ``f_i`` from :data:`MAPS` and an invertible matrix ``M_i``: every
    mutual information, hence every PID, equals the latent one. ``truth`` maps a measure
    to its exact PID (bits); BROJA is present only where it is known in closed form.
    ``sampler(n, seed)`` returns ``(x1, x2, y)`` of shapes ``(n, d1)``, ``(n, d2)``, ``(n, dy)``;
    ``to_latent(x1, x2, y)`` inverts the maps.
    """

    name: str
    cov: np.ndarray
    dims: tuple[int, int, int]
    truth: Mapping[str, PID]
    description: str
    sampler: Callable[[int, int], Arrays] = field(repr=False)
    gaussian: bool = True
    to_latent: Callable[[np.ndarray, np.ndarray, np.ndarray], Arrays] | None = field(
        repr=False, default=None
    )


# ------------------------------------------------------------------ invertible elementwise maps


def _cubic_inv(y: np.ndarray) -> np.ndarray:
    """Real root of t^3 + t = y (Cardano, written to avoid cancellation)."""
    a = np.abs(y)
    u = np.cbrt(a / 2 + np.sqrt(a * a / 4 + 1 / 27))
    return np.sign(y) * (u - 1 / (3 * u))


def _bimodal_inv(y: np.ndarray, a: float = 2.5, b: float = 4.0) -> np.ndarray:
    """Inverse of t + a tanh(b t) by bisection on [y - a, y + a] (the map is increasing)."""
    lo, hi = y - a, y + a
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        above = mid + a * np.tanh(b * mid) > y
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    return 0.5 * (lo + hi)


#: Elementwise bijections of the real line used by the latent-Gaussian systems: name ->
#: (forward, inverse). ``exp`` maps onto (0, inf); the others onto R.
MAPS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
    "identity": (lambda z: z, lambda x: x),
    "sinh": (np.sinh, np.arcsinh),  # heavy tails
    "cubic": (lambda z: z**3 + z, _cubic_inv),  # very heavy tails, peaked
    "exp": (np.exp, np.log),  # log-normal: strongly skewed
    "bimodal": (lambda z: z + 2.5 * np.tanh(4 * z), _bimodal_inv),  # two modes
}


# ------------------------------------------------------------------ construction helpers


def _mixing(d: int, rng: np.random.Generator) -> np.ndarray:
    """Random invertible d x d matrix with condition number <= e."""
    q1, _ = np.linalg.qr(rng.standard_normal((d, d)))
    q2, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (q1 * np.exp(rng.uniform(-0.5, 0.5, d))) @ q2


def _mi_bits(cov: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """I(A;B) = 1/2 log2(|S_A||S_B|/|S_AB|) by LU log-determinants."""
    ab = np.concatenate([a, b])
    ld = [np.linalg.slogdet(cov[np.ix_(i, i)])[1] for i in (a, b, ab)]
    return (ld[0] + ld[1] - ld[2]) / (2 * math.log(2))


def _index(dims: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d1, d2, dy = dims
    return np.arange(d1), np.arange(d1, d1 + d2), np.arange(d1 + d2, d1 + d2 + dy)


def _truths(cov: np.ndarray, dims: tuple[int, int, int], union: float | str | None) -> dict:
    """Exact PIDs: MMI from log-determinants; BROJA when its union information is known."""
    x1, x2, y = _index(dims)
    i1, i2 = _mi_bits(cov, x1, y), _mi_bits(cov, x2, y)
    i12 = _mi_bits(cov, np.concatenate([x1, x2]), y)
    if union == "mi_1":  # X2 degraded w.r.t. X1, independent of Y, or an equivalent channel
        union = i1
    if dims[2] == 1:  # Barrett (2015): for a scalar Gaussian target BROJA = MMI
        union = max(i1, i2)
    out = {"mmi": PID.from_terms(i1, i2, i12, "mmi")}
    if union is not None:
        out["broja"] = PID.from_terms(i1, i2, i12, "broja", union=union)
    return out


def _channel(a1: np.ndarray, a2: np.ndarray, noise: np.ndarray, cov_y: np.ndarray) -> np.ndarray:
    """Joint covariance of X_i = A_i Y + N_i with Cov(N1, N2) = ``noise`` and Cov(Y) = ``cov_y``."""
    a = np.vstack([a1, a2])
    top = np.hstack([a @ cov_y @ a.T + noise, a @ cov_y])
    return np.vstack([top, np.hstack([cov_y @ a.T, cov_y])])


def _mix(cov: np.ndarray, dims: tuple[int, int, int], seed: int) -> np.ndarray:
    """Apply a random invertible linear map to each variable (the PID does not change)."""
    rng = np.random.default_rng(seed)
    m = np.zeros_like(cov)
    for idx in _index(dims):
        m[np.ix_(idx, idx)] = _mixing(len(idx), rng)
    return m @ cov @ m.T


def _mixed(system: tuple, seed: int) -> tuple:
    """``_mix`` applied to a (cov, dims, union) recipe result."""
    cov, dims, union = system
    return _mix(cov, dims, seed), dims, union


def _product(
    subs: list[tuple[np.ndarray, tuple[int, int, int]]],
) -> tuple[np.ndarray, tuple, float]:
    """Independent scalar-target subsystems side by side, with the exact BROJA union information.

    A subsystem may give a source 0 coordinates. Its BROJA union information is
    max(I(X1;Y), I(X2;Y)) (scalar target), and the union information of independent subsystems
    adds up (Bertschinger et al. 2014).
    """
    dims = tuple(sum(s[1][k] for s in subs) for k in range(3))
    cov = np.zeros((sum(dims), sum(dims)))
    starts, union = [0, dims[0], dims[0] + dims[1]], 0.0
    for sub_cov, sub_dims in subs:
        idx = []
        for k in range(3):
            idx.append(np.arange(starts[k], starts[k] + sub_dims[k]))
            starts[k] += sub_dims[k]
        full = np.concatenate(idx)
        cov[np.ix_(full, full)] = sub_cov
        sx1, sx2, sy = _index(sub_dims)
        parts = [_mi_bits(sub_cov, sx, sy) if len(sx) else 0.0 for sx in (sx1, sx2)]
        union += max(parts)
    return cov, dims, union


def _scalar_channel(g1: list[float], g2: list[float], rho: float = 0.0) -> tuple:
    """Y ~ N(0, 1), X_i = g_i Y + unit white noise; coordinate j of X1 and of X2 have noises
    correlated by ``rho``. Returns (cov, dims)."""
    k1, k2 = len(g1), len(g2)
    noise = np.eye(k1 + k2)
    for j in range(min(k1, k2)):
        noise[j, k1 + j] = noise[k1 + j, j] = rho
    a1, a2 = np.reshape(g1, (k1, 1)), np.reshape(g2, (k2, 1))
    return _channel(a1, a2, noise, np.eye(1)), (k1, k2, 1)


def _sum_target(w1: list[float], w2: list[float], noise_var: float) -> tuple:
    """X1 ~ N(0, I), X2 ~ N(0, I) independent, Y = w1.X1 + w2.X2 + noise. Returns (cov, dims)."""
    w = np.array(w1 + w2, dtype=float)
    cov = np.eye(len(w) + 1)
    cov[:-1, -1] = cov[-1, :-1] = w
    cov[-1, -1] = w @ w + noise_var
    return cov, (len(w1), len(w2), 1)


def _markov(a: np.ndarray, b: np.ndarray, n1: np.ndarray, n2: np.ndarray) -> tuple:
    """Y ~ N(0, I) -> X1 = A Y + N1 -> X2 = B X1 + N2: I(X1,X2;Y) = I(X1;Y) = the BROJA union."""
    cx1, dy = a @ a.T + n1, a.shape[1]
    rows = [[cx1, cx1 @ b.T, a], [b @ cx1, b @ cx1 @ b.T + n2, b @ a], [a.T, a.T @ b.T, np.eye(dy)]]
    return np.block(rows), (a.shape[0], b.shape[0], dy), "mi_1"


# ------------------------------------------------------------------ the named systems
# A recipe returns (cov, dims, union): BROJA's union information where it is known in closed
# form ("mi_1" means I(X1;Y)); None leaves it to the scalar-target rule (or unknown).

_A3 = np.array([[1.0, 0.5], [0.2, 1.2], [0.7, -0.4]])
_NOISE_33 = 0.5 * np.block([[np.eye(3), 0.7 * np.eye(3)], [0.7 * np.eye(3), np.eye(3)]])
_NOISE_UNIQUE = np.block(
    [[np.eye(2), np.zeros((2, 2))], [np.zeros((2, 2)), np.array([[1, 0.6], [0.6, 1]])]]
)


def _random_scalar_channels(seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    scales = ((0.5, 0.2), (0.2, 0.5), (0.35, 0.35), (0.4, 0.1))
    return _product(
        [
            _scalar_channel(list(rng.normal(0, s1, 8)), list(rng.normal(0, s2, 8)))
            for s1, s2 in scales
        ]
    )


def _random_markov(seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 0.6, (4, 1)), rng.normal(0, 0.5, (3, 4))
    return _markov(a, b, np.eye(4), 0.5 * np.eye(3))


_RECIPES: dict[str, tuple[Callable[[], tuple], tuple[str, str, str] | None, str]] = {
    # name: (recipe, elementwise maps of (X1, X2, Y) or None for a Gaussian system, description)
    "redundant": (
        lambda: (*_scalar_channel([2.0], [2.0], rho=0.8), None),
        None,
        "Two equally noisy copies of a scalar Y (SNR 4, noise correlation 0.8): no unique "
        "information, R = I(X1;Y); the small synergy is the gain from averaging the noises. A "
        "tie: the least-favourable BROJA coupling makes X1 = X2.",
    ),
    "redundant_mv": (
        lambda: (_mix(_channel(_A3, _A3, _NOISE_33, np.eye(2)), (3, 3, 2), 11), (3, 3, 2), "mi_1"),
        None,
        "Both sources see a 2-D Y through the same channel (each variable then mixed by its own "
        "invertible map): identical posteriors, so BROJA's union is I(X1;Y) = I(X2;Y).",
    ),
    "unique": (
        lambda: (_channel(_A3[:2], np.zeros((2, 2)), _NOISE_UNIQUE, np.eye(2)), (2, 2, 2), "mi_1"),
        None,
        "X1 is a noisy 2-D view of Y, X2 is independent of (X1, Y): everything is unique to X1 "
        "(R = U2 = S = 0 under both measures).",
    ),
    "independent_channels": (
        lambda: _product([_scalar_channel([3**0.5], []), _scalar_channel([], [1.0])]),
        None,
        "Y = (Y1, Y2) independent; X1 sees only Y1 (1 bit), X2 only Y2 (0.5 bit). BROJA: two "
        "unique atoms and nothing else; MMI reports R = S = 0.5 bit (its known flaw).",
    ),
    "synergy": (
        lambda: (*_sum_target([1.0], [1.0], 0.1), None),
        None,
        "Y = X1 + X2 + noise (variance 0.1) with independent unit sources: synergy-dominated "
        "(each source alone carries 0.47 bit, both 2.2 bits).",
    ),
    "markov": (
        lambda: _markov(
            _A3,
            np.array([[0.9, 0.1, 0.4], [-0.3, 0.7, 0.2]]),
            np.diag([0.5, 0.8, 0.6]),
            np.diag([0.4, 0.3]),
        ),
        None,
        "Markov chain Y -> X1 -> X2 (2-D Y): X2 is a degraded copy of X1, so I(X1,X2;Y) = "
        "I(X1;Y) is the BROJA union: R = I(X2;Y), U2 = S = 0.",
    ),
    "mixed": (
        lambda: _mixed(
            _product(
                [_scalar_channel([1.2, 0.8], [0.5, 0.4]), _scalar_channel([0.3, 0.4], [1.0, 0.9])]
            ),
            5,
        ),
        None,
        "Two independent target components, one read better by X1 and one by X2 (4-D sources, "
        "every variable mixed): all four BROJA atoms are positive.",
    ),
    "highdim": (
        lambda: _mixed(_random_scalar_channels(7), 8),
        None,
        "High-dimensional random channels: 32-D sources and a 4-D target built from four "
        "independent scalar-target channels, every variable then mixed.",
    ),
    "nl_redundant": (
        lambda: (*_scalar_channel([1.0, 0.6], [1.0, 0.6], rho=0.5), None),
        ("sinh",) * 3,
        "sinh of a redundancy-dominated system (2-D sources, scalar Y)",
    ),
    "nl_synergy": (
        lambda: (*_sum_target([0.8, 0.5], [0.6, -0.7], 0.2), None),
        ("cubic", "cubic", "exp"),
        "cubic sources and a log-normal Y carrying mostly synergy",
    ),
    "nl_unique": (
        lambda: _product([_scalar_channel([1.4, 0.9], [0.3]), _scalar_channel([0.0], [1.0])]),
        ("exp", "bimodal", "sinh"),
        "unequal unique atoms (0.9 and 0.5 bit) about a 2-D Y",
    ),
    "nl_mixed": (
        lambda: _product(
            [_scalar_channel([0.6] * 4, [0.3] * 4), _scalar_channel([0.2] * 4, [0.5] * 4)]
        ),
        ("bimodal", "sinh", "cubic"),
        "all four atoms positive, 8-D sources, 2-D Y",
    ),
    "nl_markov": (
        lambda: _random_markov(3),
        ("cubic", "exp", "sinh"),
        "Markov chain Y -> X1 -> X2 with a scalar Y",
    ),
    "nl_synergy2": (
        lambda: _product(
            [_sum_target([1.0, 0.5], [0.8, 0.0], 0.3), _sum_target([0.0, 0.6], [0.0, 1.0], 0.3)]
        ),
        ("sinh", "bimodal", "exp"),
        "synergy about each of two independent Y components",
    ),
}


def _sampler(
    cov: np.ndarray, dims: tuple, maps: tuple[str, str, str], mix: list[np.ndarray]
) -> tuple[Callable[[int, int], Arrays], Callable[..., Arrays]]:
    """Sampler of x_i = M_i f_i(z_i / sd(z_i)), z ~ N(0, cov) (x = z if Gaussian); inverse."""
    chol = np.linalg.cholesky(cov)
    idx = _index(dims)
    sd = [
        np.sqrt(np.diag(cov)[i]) if f != "identity" else 1.0 for i, f in zip(idx, maps, strict=True)
    ]

    def sample(n: int, seed: int) -> Arrays:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        z = np.random.default_rng(seed).standard_normal((int(n), cov.shape[0])) @ chol.T
        return tuple(
            MAPS[f][0](z[:, i] / s) @ m.T for i, f, m, s in zip(idx, maps, mix, sd, strict=True)
        )

    def to_latent(x1: np.ndarray, x2: np.ndarray, y: np.ndarray) -> Arrays:
        out = []
        for x, f, m, s in zip((x1, x2, y), maps, mix, sd, strict=True):
            u = np.linalg.solve(m, np.asarray(x, dtype=float).T).T
            out.append(MAPS[f][1](u) * s)
        return tuple(out)

    return sample, to_latent


def _unit_lower(d: int, rng: np.random.Generator) -> np.ndarray:
    """Unit lower-triangular mixing (determinant 1): mixes coordinates, keeps marginals skewed."""
    return np.eye(d) + np.tril(rng.normal(0.0, 0.5 / math.sqrt(d), (d, d)), -1)


def _make(name, cov, dims, union, description, maps=("identity",) * 3, mix_seed=None) -> System:
    """Assemble a System: read-only covariance, exact truths, sampler and inverse maps."""
    cov = np.array(cov, dtype=float)
    cov.setflags(write=False)
    dims = tuple(int(d) for d in dims)
    rng = np.random.default_rng(mix_seed)
    mix = [_unit_lower(d, rng) if mix_seed is not None else np.eye(d) for d in dims]
    sample, to_latent = _sampler(cov, dims, maps, mix)
    truth = MappingProxyType(_truths(cov, dims, union))
    gaussian = all(m == "identity" for m in maps)
    return System(name, cov, dims, truth, description, sample, gaussian, to_latent)


@cache
def _build(name: str) -> System:
    recipe, maps, text = _RECIPES[name]
    cov, dims, union = recipe()
    if maps is None:
        return _make(name, cov, dims, union, text)
    text = (
        f"Latent-Gaussian: {text}. Each variable is standardised, mapped elementwise by "
        f"{maps} (X1, X2, Y) and mixed by a unit lower-triangular matrix."
    )
    return _make(name, cov, dims, union, text, maps=maps, mix_seed=sum(map(ord, name)))


def names() -> tuple[str, ...]:
    """Names of every canonical system: Gaussian ones first, then latent-Gaussian ones."""
    return tuple(_RECIPES)


def get(name: str) -> System:
    """The canonical system called ``name`` (see :func:`names`)."""
    if name not in names():
        raise ValueError(f"unknown canonical system {name!r}; known: {', '.join(names())}")
    return _build(name)


def random_system(d1: int, d2: int, dy: int, seed: int = 0) -> System:
    """A random Gaussian system ``X_i = A_i Y + N_i`` with correlated noise between the sources.

    Gains are N(0, 1/dy), the noise and target covariances random and well conditioned. ``truth``
    holds MMI always and BROJA only for ``dy == 1`` (where it equals MMI).
    """
    for label, d in (("d1", d1), ("d2", d2), ("dy", dy)):
        if isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 1:
            raise ValueError(f"{label} must be a positive integer, got {d!r}")
    rng = np.random.default_rng(seed)
    a1, a2 = (rng.normal(0, dy**-0.5, (d, dy)) for d in (d1, d2))
    w = rng.standard_normal((d1 + d2, d1 + d2)) / math.sqrt(d1 + d2)
    noise, wy = w @ w.T + 0.5 * np.eye(d1 + d2), rng.standard_normal((dy, dy)) / math.sqrt(dy)
    cov = _channel(a1, a2, noise, wy @ wy.T + 0.5 * np.eye(dy))
    text = f"Random Gaussian channels, dims ({d1}, {d2}, {dy}), seed {seed}."
    return _make(f"random_{d1}_{d2}_{dy}_{seed}", cov, (d1, d2, dy), None, text)
