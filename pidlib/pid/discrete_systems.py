"""Named discrete and mixed systems with exact PIDs (dit) that a Gaussian PID cannot see."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType

import numpy as np
from scipy import integrate
from scipy.stats import norm
from threadpoolctl import threadpool_limits

from pidlib.pid.result import PID

__all__ = [
    "DiscreteSystem",
    "dit_pid",
    "gaussian_mixture_mi",
    "get",
    "mixed",
    "names",
]

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]

_PI_KEYS = {  # dit's lattice nodes of the two-source PID -> our atom names
    "redundancy": ((0,), (1,)),
    "unique_1": ((0,),),
    "unique_2": ((1,),),
    "synergy": ((0, 1),),
}


@dataclass(frozen=True, eq=False)
class DiscreteSystem:
    """Sources (X1, X2) and a discrete target Y whose PID is exact.

    ``pmf[b1, b2, y]`` is the exact joint distribution of the discrete core: the source bits
    (or levels) ``b1``, ``b2`` and the target ``y``; ``truth`` maps "broja" and "mmi" to the PID
    (bits) that ``dit`` computes from it. ``sampler(n, seed)`` returns ``x1`` ``(n, d1)`` and
    ``x2`` ``(n, d2)`` (float64) and ``y`` ``(n,)`` (int64 labels 0..ky-1). For discrete systems
    (``continuous=False``) ``x_i`` is the level ``b_i`` itself (``d_i = 1``); for mixed systems
    the sources are continuous and ``b_i`` is a function of ``x_i`` (see :func:`mixed`), so the
    PID of (X1, X2, Y) equals that of the core; ``to_core(x1, x2)`` returns ``(b1, b2)`` (int64
    ``(n,)``). ``pairwise_independent``: every source is
    independent of Y and of the other source, so any PID computed from pairwise second moments
    (after any per-variable transform) reports zero information.
    """

    name: str
    description: str
    pmf: np.ndarray = field(repr=False)
    truth: Mapping[str, PID]
    sampler: Callable[[int, int], Arrays] = field(repr=False)
    dims: tuple[int, int] = (1, 1)
    continuous: bool = False
    pairwise_independent: bool = False
    to_core: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] = field(
        repr=False, default=lambda x1, x2: (x1[:, 0].astype(np.int64), x2[:, 0].astype(np.int64))
    )


# ------------------------------------------------------------------ exact PIDs with dit


def dit_pid(pmf: np.ndarray, measure: str = "broja") -> PID:
    """PID (bits) of the exact pmf ``pmf[b1, b2, y]`` ``(k1, k2, ky)`` with ``dit`` 2.3.

    "broja": :class:`dit.pid.PID_BROJA` (seeded); "mmi": :class:`dit.pid.PID_MMI`. The record
    is assembled from dit's four atoms (``info["dit_atoms"]``): ``total`` and ``mi_i`` are their
    sums, so the record is consistent by construction; atoms below 1e-9 bits in magnitude (dit's
    optimiser noise, e.g. 6e-9 for XOR's unique atoms) are set to 0 and the remainder kept.
    """
    import dit  # noqa: PLC0415 - dit takes ~3 s to import; only truths need it
    from dit.pid import PID_BROJA, PID_MMI  # noqa: PLC0415

    pmf = np.asarray(pmf, dtype=float)
    cells = np.argwhere(pmf > 0)
    outcomes = [tuple(int(v) for v in c) for c in cells]
    dist = dit.Distribution(outcomes, [float(pmf[tuple(c)]) for c in cells])
    if measure == "broja":
        result = PID_BROJA(dist, [[0], [1]], [2], rng=np.random.default_rng(0))
    elif measure == "mmi":
        result = PID_MMI(dist, [[0], [1]], [2])
    else:
        raise ValueError(f"unknown measure {measure!r}; expected 'broja' or 'mmi'")
    raw = {k: float(result.get_pi(node)) for k, node in _PI_KEYS.items()}
    atoms = {k: (0.0 if abs(v) < 1e-9 else v) for k, v in raw.items()}
    r, u1, u2, s = (atoms[k] for k in PID.ATOMS)
    info = {"source": f"dit {dit.__version__}", "dit_atoms": raw}
    return PID(r, u1, u2, s, r + u1 + u2 + s, r + u1, r + u2, measure, info=info)


# ------------------------------------------------------------------ the discrete cores


def _table(rule: Callable[[int, int], int], ky: int) -> np.ndarray:
    """pmf of independent uniform bits (b1, b2) and the deterministic target ``rule(b1, b2)``."""
    p = np.zeros((2, 2, ky))
    for b1 in (0, 1):
        for b2 in (0, 1):
            p[b1, b2, rule(b1, b2)] = 0.25
    return p


def _noisy_xor(flip: float) -> np.ndarray:
    p = np.zeros((2, 2, 2))
    for b1 in (0, 1):
        for b2 in (0, 1):
            p[b1, b2, b1 ^ b2] += 0.25 * (1 - flip)
            p[b1, b2, 1 - (b1 ^ b2)] += 0.25 * flip
    return p


def _rdn() -> np.ndarray:
    p = np.zeros((2, 2, 2))
    p[0, 0, 0] = p[1, 1, 1] = 0.5
    return p


#: name -> (pmf builder, description). Targets are labels; COPY's label is 2 b1 + b2.
_CORES: dict[str, tuple[Callable[[], np.ndarray], str]] = {
    "xor": (lambda: _table(lambda a, b: a ^ b, 2), "Y = X1 xor X2, uniform bits: 1 bit synergy"),
    "and": (
        lambda: _table(lambda a, b: a & b, 2),
        "Y = X1 and X2, uniform bits: BROJA R = 0.311, S = 0.5, no unique information",
    ),
    "copy": (
        lambda: _table(lambda a, b: 2 * a + b, 4),
        "Y = (X1, X2) as the label 2 X1 + X2: BROJA U1 = U2 = 1 bit (MMI: R = S = 1 bit)",
    ),
    "unique": (
        lambda: _table(lambda a, b: a, 2),
        "Y = X1, X2 an independent uniform bit: U1 = 1 bit, all else 0",
    ),
    "rdn": (_rdn, "X1 = X2 = Y, one uniform bit: R = 1 bit, all else 0"),
    "noisy_xor": (
        lambda: _noisy_xor(0.1),
        "Y = X1 xor X2 flipped with probability 0.1: S = 1 - h(0.1) = 0.531 bits",
    ),
}


def _draw_core(pmf: np.ndarray, n: int, rng: np.random.Generator) -> Arrays:
    """``n`` iid draws ``(b1, b2, y)`` (int64 arrays ``(n,)``) from ``pmf[b1, b2, y]``."""
    flat = rng.choice(pmf.size, size=n, p=pmf.ravel())
    return np.unravel_index(flat, pmf.shape)  # type: ignore[return-value]


def _discrete_sampler(pmf: np.ndarray) -> Callable[[int, int], Arrays]:
    def sample(n: int, seed: int) -> Arrays:
        b1, b2, y = _draw_core(pmf, n, np.random.default_rng(seed))
        return b1[:, None].astype(float), b2[:, None].astype(float), y.astype(np.int64)

    return sample


def _rotation(d: int, seed: int) -> np.ndarray:
    """A fixed random orthogonal ``d x d`` matrix."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _truths(pmf: np.ndarray) -> Mapping[str, PID]:
    # one BLAS thread: dit's numerical BROJA ends ~1e-8 bits apart with 1 or 2 threads, and a
    # system built in a worker (one thread) must equal the one built here
    with threadpool_limits(limits=1):
        return MappingProxyType({m: dit_pid(pmf, m) for m in ("broja", "mmi")})


def mixed(
    core: str, *, d: int = 3, gap: float = 1.0, seed: int = 0, name: str = ""
) -> DiscreteSystem:
    """The binary core ``core`` with continuous ``d``-dimensional sources (``d >= 1``).

    Each source is ``x_i = R_i [s_i (gap + |g_i|), e_i]`` with the sign ``s_i = 2 b_i - 1`` of
    the core's bit ``b_i``, ``g_i ~ N(0, 1)``, ``d - 1`` noise coordinates ``e_i ~ N(0, I)``
    and a fixed random rotation ``R_i``. The bit is recovered exactly as the sign of the first
    rotated coordinate, and the rest (``|g_i|``, ``e_i``) is independent of everything, so
    the PID of (X1, X2, Y) is exactly the core's, under BROJA and MMI alike (both are unchanged
    when a source gains a component independent of all other variables). ``gap > 0`` makes the
    two bit values two clusters separated by ``2 gap``; with ``gap = 0`` each source is exactly
    ``N(0, I_d)`` (every core's bits are uniform): no cluster structure at all.
    """
    build, what = _CORES[core]
    pmf = build()
    if pmf.shape[:2] != (2, 2):
        raise ValueError(f"mixed() needs binary sources; {core!r} has {pmf.shape[:2]} levels")
    if d < 1 or gap < 0:
        raise ValueError(f"need d >= 1 and gap >= 0, got d={d}, gap={gap}")
    rot = [_rotation(d, seed + 17 * i) for i in (1, 2)]

    def sample(n: int, seed_: int) -> Arrays:
        rng = np.random.default_rng(seed_)
        b1, b2, y = _draw_core(pmf, n, rng)
        xs = []
        for b, r in zip((b1, b2), rot, strict=True):
            z = rng.standard_normal((n, d))
            z[:, 0] = (2 * b - 1) * (gap + np.abs(z[:, 0]))
            xs.append(z @ r.T)
        return xs[0], xs[1], y.astype(np.int64)

    def to_core(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return tuple((x @ r[:, 0] > 0).astype(np.int64) for x, r in zip((x1, x2), rot, strict=True))

    shape = f"two clusters {2 * gap:g} apart" if gap > 0 else "exactly N(0, I), no clusters"
    return DiscreteSystem(
        name=name or f"mixed_{core}",
        description=f"{what}; continuous {d}-d sources whose sign bit is the core bit ({shape})",
        pmf=pmf,
        truth=_truths(pmf),
        sampler=sample,
        dims=(d, d),
        continuous=True,
        pairwise_independent=core in ("xor", "noisy_xor"),
        to_core=to_core,  # type: ignore[arg-type]
    )


#: Mixed systems: name -> (core, gap). ``gauss_xor`` has Gaussian sources, pairwise independent
#: of each other and of Y.
_MIXED: dict[str, tuple[str, float]] = {
    "mixed_xor": ("xor", 1.0),
    "mixed_and": ("and", 1.0),
    "mixed_copy": ("copy", 1.0),
    "mixed_unique": ("unique", 1.0),
    "gauss_xor": ("xor", 0.0),
}


def names() -> tuple[str, ...]:
    """Names of every system: the discrete cores, then the mixed systems."""
    return (*_CORES, *_MIXED)


@cache
def get(name: str) -> DiscreteSystem:
    """The named system (built once; the first call imports ``dit`` for the truths, ~3 s)."""
    if name in _MIXED:
        core, gap = _MIXED[name]
        return mixed(core, gap=gap, name=name)
    if name not in _CORES:
        raise KeyError(f"unknown discrete system {name!r}; expected one of {names()}")
    build, what = _CORES[name]
    pmf = build()
    return DiscreteSystem(
        name=name,
        description=what,
        pmf=pmf,
        truth=_truths(pmf),
        sampler=_discrete_sampler(pmf),
        pairwise_independent=name in ("xor", "noisy_xor"),
    )


# ------------------------------------------------------------------ a mixture with exact MI


def gaussian_mixture_mi(
    means: Sequence[float], sd: float = 1.0, weights: Sequence[float] | None = None
) -> float:
    """``I(X; Y)`` in bits for ``Y ~ weights`` and ``X | Y = k ~ N(means[k], sd^2)`` (scalar X).

    ``H(X) - H(X | Y)`` with ``H(X | Y)`` the Gaussian entropy and ``H(X)`` by adaptive
    quadrature of the mixture density (absolute error ~1e-10 bits).
    """
    mu = np.asarray(means, dtype=float)
    w = np.full(len(mu), 1 / len(mu)) if weights is None else np.asarray(weights, dtype=float)
    w = w / w.sum()

    def integrand(x: float) -> float:
        f = float(np.sum(w * norm.pdf(x, mu, sd)))
        return -f * math.log(f) if f > 0 else 0.0

    lo, hi = mu.min() - 12 * sd, mu.max() + 12 * sd
    breaks = sorted(set(mu.tolist()))
    hx = integrate.quad(integrand, lo, hi, points=breaks, limit=500, epsabs=1e-12)[0]
    hxy = 0.5 * math.log(2 * math.pi * math.e * sd**2)
    return (hx - hxy) / math.log(2)
