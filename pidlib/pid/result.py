"""PID result types: the :class:`PID` record, the measures and the atom names (bits)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from numbers import Real
from types import MappingProxyType
from typing import Any, ClassVar

__all__ = ["MEASURES", "ATOMS", "ATOM_LABELS", "PID", "measures_of"]

#: The PID measures :func:`gaussian_pid` knows.
MEASURES: tuple[str, ...] = ("mmi", "broja")


def measures_of(measure: str | Sequence[str]) -> tuple[str, ...]:
    """``measure`` (one of :data:`MEASURES`, or a sequence of them) as a tuple; a
    ``ValueError`` naming any unknown measure."""
    ms = (measure,) if isinstance(measure, str) else tuple(measure)
    bad = [m for m in ms if m not in MEASURES]
    if bad or not ms:
        raise ValueError(f"unknown PID measure(s) {bad or ms!r}; expected some of {MEASURES}")
    return ms


#: The quantities of a layer-wise row, in bits: the four atoms, I(X1,X2;Y), I(X1;Y), I(X2;Y).
ATOMS: tuple[str, ...] = ("redundancy", "unique_1", "unique_2", "synergy", "total", "mi_1", "mi_2")

#: Display names with X1 = V (vision) and X2 = L (language).
ATOM_LABELS: dict[str, str] = {
    "redundancy": "R", "unique_1": "U_V", "unique_2": "U_L", "synergy": "S",
    "total": "I(V,L;Y)", "mi_1": "I(V;Y)", "mi_2": "I(L;Y)",
}  # fmt: skip


@dataclass(frozen=True)
class PID:
    """A two-source partial information decomposition of ``I(X1, X2; Y)``, every value in bits.

    The four atoms sum to ``total``; ``mi_1 = redundancy + unique_1`` and
    ``mi_2 = redundancy + unique_2``. ``ci`` holds optional 95% intervals per atom (name -> (lo,
    hi), bits) and ``info`` solver diagnostics; neither takes part in equality.
    """

    redundancy: float
    unique_1: float
    unique_2: float
    synergy: float
    total: float
    mi_1: float
    mi_2: float
    measure: str
    ci: Mapping[str, tuple[float, float]] | None = field(default=None, compare=False)
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)

    ATOMS: ClassVar[tuple[str, ...]] = ("redundancy", "unique_1", "unique_2", "synergy")

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)[:7]}
        for name, v in values.items():
            if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v):
                raise ValueError(f"PID.{name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        r, u1, u2, s, tot, m1, m2 = (float(v) for v in values.values())
        tol = 1e-8 * max(1.0, abs(tot), abs(m1), abs(m2))
        for label, lhs, rhs in (
            ("redundancy + unique_1 + unique_2 + synergy", r + u1 + u2 + s, tot),
            ("redundancy + unique_1", r + u1, m1),
            ("redundancy + unique_2", r + u2, m2),
        ):
            if abs(lhs - rhs) > tol:
                raise ValueError(f"inconsistent PID: {label} = {lhs!r} but should be {rhs!r}")
        object.__setattr__(self, "info", MappingProxyType(dict(self.info)))
        if self.ci is not None:
            unknown = set(self.ci) - set(self.ATOMS) - {"total", "mi_1", "mi_2"}
            if unknown:
                raise ValueError(f"PID.ci: unknown keys {sorted(unknown)}")
            ci = {k: (float(lo), float(hi)) for k, (lo, hi) in self.ci.items()}
            object.__setattr__(self, "ci", MappingProxyType(ci))

    @classmethod
    def from_terms(
        cls,
        mi_1: float,
        mi_2: float,
        total: float,
        measure: str,
        union: float | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> PID:
        """Atoms from ``I(X1;Y)``, ``I(X2;Y)``, ``I(X1,X2;Y)`` and (BROJA) the union information.

        MMI takes ``union = max(mi_1, mi_2)``. The union is clipped to its admissible range
        ``[max(mi_1, mi_2), min(mi_1 + mi_2, total)]`` so that every atom is >= 0.
        """
        if measure not in MEASURES:
            raise ValueError(f"unknown PID measure {measure!r}; expected one of {MEASURES}")
        if measure == "mmi" or union is None:
            union = max(mi_1, mi_2)
        u = min(max(union, mi_1, mi_2), mi_1 + mi_2, total)
        atoms = (mi_1 + mi_2 - u, u - mi_2, u - mi_1, total - u)
        return cls(*atoms, total, mi_1, mi_2, measure, info=info or {})

    def as_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of every field (``ci`` and ``info`` converted to plain dicts)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["ci"] = None if self.ci is None else dict(self.ci)
        out["info"] = dict(self.info)
        return out

    def shares(self) -> dict[str, float]:
        """Each atom as a fraction of ``total`` (NaN for every atom when ``total`` is 0)."""
        if self.total == 0.0:
            return {k: math.nan for k in self.ATOMS}
        return {k: getattr(self, k) / self.total for k in self.ATOMS}
