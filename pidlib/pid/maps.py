"""PID Flow's fitted maps: per-variable preprocessing (:mod:`pidlib.pid.preprocessing`), PCA, a
product normalizing flow (:mod:`pidlib.pid.flow_nets`) and the Gaussian PID of the latents,
as a reusable object; and a store that lets jobs on the same rows share a fit."""

from __future__ import annotations

import hashlib
import json
import pickle
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import torch

from pidlib.pid.flow_nets import OBJECTIVES, FlowConfig, _n_val, _ProductFlow, _train
from pidlib.pid.gaussian import gaussian_pid
from pidlib.pid.gaussian_batch import KEYS, pid_vectors
from pidlib.pid.preprocessing import MarginalGaussianizer, PCAFit, fit_pca
from pidlib.pid.result import PID, measures_of

__all__ = ["FitStore", "PIDFlow", "fit_maps"]


def _as_data(x1: Any, x2: Any, y: Any) -> list[np.ndarray]:
    """Validate the three variables; return them as float64 ``(n, d)`` arrays."""
    out = []
    for name, a in (("x1", x1), ("x2", x2), ("y", y)):
        try:
            arr = np.asarray(a, dtype=float)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} is not a numeric array: {err}") from None
        if arr.ndim not in (1, 2):
            raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, d), got shape {arr.shape}")
        arr = arr.reshape(len(arr), -1)
        if arr.size == 0:
            raise ValueError(f"{name} is empty (shape {arr.shape})")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains {int(np.sum(~np.isfinite(arr)))} NaN or inf values")
        if np.all(arr == arr[0]):
            raise ValueError(f"{name} is constant: every sample is identical")
        out.append(arr)
    if len({len(a) for a in out}) > 1:
        raise ValueError(f"x1, x2, y have different numbers of samples: {[len(a) for a in out]}")
    return out


class PIDFlow:
    """PID Flow as a reusable fitted object: PCA and product flow fitted once, applied anywhere.

    ``PIDFlow(config, pca_variance=0.95, max_dims=32, flow=True, seed=0).fit(x1, x2, y)`` fits,
    per variable: (``flow=True`` and ``config.marginal``) a :class:`MarginalGaussianizer` of the
    raw columns, standardisation, PCA (``pca_variance`` of the variance, at most ``max_dims``
    components) and re-standardisation, then (``flow=True``) the product flow ``f1 x f2 x fY``
    of :func:`~pidlib.pid.flow_nets._train`. ``transform`` maps any rows with the same columns to
    latents, so the fitted maps of a clean run can be applied to knocked-out activations; ``pid``
    is the Gaussian PID of the latents' covariance. After ``fit``: ``marginals``, ``pcas`` (three
    :class:`PCAFit`), ``dims`` (kept dimensions ``(d1, d2, dy)``) and ``log`` (training epochs,
    validation loss in nats, history).
    """

    def __init__(
        self,
        config: FlowConfig | None = None,
        *,
        pca_variance: float = 0.95,
        max_dims: int = 32,
        flow: bool = True,
        seed: int = 0,
    ) -> None:
        if not isinstance(pca_variance, int | float) or not 0.0 < pca_variance <= 1.0:
            raise ValueError(f"pca_variance must be in (0, 1], got {pca_variance!r}")
        if isinstance(max_dims, bool) or not isinstance(max_dims, int | np.integer) or max_dims < 1:
            raise ValueError(f"max_dims must be a positive integer, got {max_dims!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if config is not None and not isinstance(config, FlowConfig):
            raise ValueError(f"config must be a FlowConfig or None, got {type(config).__name__}")
        self.config = config or FlowConfig()
        self.pca_variance, self.max_dims, self.flow, self.seed = pca_variance, max_dims, flow, seed
        self.pcas: tuple[PCAFit, ...] = ()
        self.marginals: tuple[MarginalGaussianizer, ...] = ()
        self.dims: tuple[int, int, int] = (0, 0, 0)
        self.log: dict[str, Any] = {}
        self._flow: _ProductFlow | None = None

    def fit(self, x1: Any, x2: Any, y: Any) -> PIDFlow:
        """Fit PCA and (if ``flow``) the product flow to ``x1`` ``(n, d1)``, ``x2``, ``y``."""
        data = _as_data(x1, x2, y)
        if self.flow and self.config.marginal:
            self.marginals = tuple(MarginalGaussianizer.fit(a) for a in data)
            data = [m.transform(a) for m, a in zip(self.marginals, data, strict=True)]
        pcas = tuple(fit_pca(a, self.pca_variance, self.max_dims) for a in data)
        dims = tuple(p.dims for p in pcas)
        n, total = len(data[0]), sum(dims)
        if n <= total + 1:
            raise ValueError(
                f"n={n} samples are too few for the {total} kept dimensions {dims}: need "
                f"n > {total + 1}; lower max_dims or pca_variance"
            )
        if self.flow:
            n_val = _n_val(n, self.config)
            group = max(sum(dims[v] for v in g) for g in OBJECTIVES[self.config.objective])
            if n_val < 10 or n - n_val <= 2 * group:
                raise ValueError(
                    f"n={n} is too small for the flow's validation split ({n_val} held out, at "
                    f"least 10 needed; {n - n_val} for training, more than {2 * group} needed for "
                    f"the {group}-dimensional Gaussian of the objective {self.config.objective!r})"
                )
        self.pcas, self.dims = pcas, dims  # type: ignore[assignment]
        scores = np.concatenate([p.transform(a) for p, a in zip(pcas, data, strict=True)], 1)
        if self.flow:
            self._flow, self.log = _train(scores, self.dims, self.config, int(self.seed))
        return self

    def transform(self, x1: Any, x2: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Latents ``(z1, z2, zY)`` (float64, shapes ``(n, d1)``, ``(n, d2)``, ``(n, dy)``)."""
        if not self.pcas:
            raise ValueError("PIDFlow.transform: call fit first")
        data = _as_data(x1, x2, y)
        for name, a, p in zip(("x1", "x2", "y"), data, self.pcas, strict=True):
            if a.shape[1] != len(p.mean):
                raise ValueError(f"{name} has {a.shape[1]} columns; the fit had {len(p.mean)}")
        if self.marginals:
            data = [m.transform(a) for m, a in zip(self.marginals, data, strict=True)]
        z = np.concatenate([p.transform(a) for p, a in zip(self.pcas, data, strict=True)], 1)
        if self._flow is not None:
            with torch.no_grad():
                z = self._flow(torch.from_numpy(z).float())[0].double().numpy()
        if not np.isfinite(z).all():
            raise ValueError("PIDFlow.transform: the latents are not finite")
        return tuple(np.split(z, np.cumsum(self.dims)[:2], axis=1))  # type: ignore[return-value]

    def pid(
        self,
        x1: Any,
        x2: Any,
        y: Any,
        measure: str | Sequence[str] = "mmi",
        *,
        bias_correction: bool = True,
    ) -> PID | dict[str, PID]:
        """Gaussian PID (bits) of the latents of ``(x1, x2, y)``; a dict for several measures.

        ``bias_correction`` passes ``n`` to :func:`~pidlib.pid.gaussian.gaussian_pid`, which removes
        the Gaussian plug-in's log-determinant bias; it does not remove the flow's fitting error.
        """
        measures = measures_of(measure)
        z = np.concatenate(self.transform(x1, x2, y), 1)
        out = {
            m: self._attach(p) for m, p in _pids(z, self.dims, measures, bias_correction).items()
        }
        return out if not isinstance(measure, str) else out[measure]

    def settings(self) -> dict[str, Any]:
        """Everything but the rows that determines a fit (the identity of :func:`fit_maps`)."""
        return {"config": self.config.as_dict(), "pca_variance": self.pca_variance,
                "max_dims": self.max_dims, "flow": self.flow, "seed": int(self.seed)}  # fmt: skip

    def to_bytes(self) -> bytes:
        """The fitted maps, pickled without the marginal knots (up to ``512 x d`` per variable:
        16 MB for a 4096-wide source), which :meth:`from_bytes` refits from the same rows."""
        if not self.pcas:
            raise ValueError("PIDFlow.to_bytes: call fit first")
        marginals, self.marginals = self.marginals, ()
        try:
            return pickle.dumps((bool(marginals), self), protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            self.marginals = marginals

    @classmethod
    def from_bytes(cls, blob: bytes, x1: Any, x2: Any, y: Any) -> PIDFlow:
        """The maps :meth:`to_bytes` wrote, with the marginals refitted on their rows ``(x1,
        x2, y)`` (deterministic, so the result transforms exactly like the original fit)."""
        had_marginals, fit = pickle.loads(blob)  # noqa: S301 (our own checksummed cache)
        if not isinstance(fit, cls):
            raise ValueError("PIDFlow.from_bytes: the bytes hold no PIDFlow")
        if had_marginals:
            fit.marginals = tuple(MarginalGaussianizer.fit(a) for a in _as_data(x1, x2, y))
        return fit

    def _attach(self, pid: PID, extra: Mapping[str, Any] | None = None) -> PID:
        info = {
            **pid.info,
            "dims": self.dims,
            "explained_variance": tuple(p.explained for p in self.pcas),
            "flow": self.flow,
            "seed": self.seed,
            **({"flow_config": self.config.as_dict()} if self.flow else {}),
            **{k: v for k, v in self.log.items() if k != "history"},
            **(extra or {}),
        }
        return replace(pid, info=info)


def _pids(z: np.ndarray, dims: tuple, measures: Sequence[str], bias: bool) -> dict[str, PID]:
    """Gaussian PIDs of the sample covariance of latents ``z`` ``(n, d1 + d2 + dy)``."""
    z, dims = _drop_constant_directions(z, dims)
    cov = np.cov(z, rowvar=False)
    return {m: gaussian_pid(cov, dims, m, n=len(z) if bias else None) for m in measures}


def _pid_replicates(
    z: np.ndarray, dims: tuple, measures: Sequence[str], bias: bool, subsets: Sequence[np.ndarray]
) -> dict[str, np.ndarray]:
    """``{measure: (R, 7)}``: :func:`_pids` of ``z[idx]`` for each of the ``R`` row index arrays
    ``subsets`` (all of one size), as vectors in :data:`~pidlib.pid.gaussian_batch.KEYS` order,
    their covariances and PIDs computed stacked (the half-subsamples of an interval). A subset
    with a constant latent direction goes through :func:`_pids` (which drops it)."""
    if not len(subsets):
        return {m: np.zeros((0, len(KEYS))) for m in measures}
    rows = z[np.stack(subsets)]
    centred = rows - rows.mean(1, keepdims=True)
    covs = centred.transpose(0, 2, 1) @ centred / (rows.shape[1] - 1)
    edges = np.cumsum((0, *dims))
    full = np.ones(len(covs), bool)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        w = np.linalg.eigvalsh(covs[:, a:b, a:b])
        full &= (w > _CONSTANT_TOL * np.maximum(w.max(1), 1e-300)[:, None]).all(1)
    out = {m: np.zeros((len(covs), len(KEYS))) for m in measures}
    if full.any():
        got = pid_vectors(covs[full], dims, measures, rows.shape[1] if bias else None)
        for m in measures:
            out[m][full] = got[m]
    for r in np.flatnonzero(~full):
        for m, pid in _pids(rows[r], dims, measures, bias).items():
            out[m][r] = [getattr(pid, k) for k in KEYS]
    return out


#: Relative variance below which a latent direction counts as constant.
_CONSTANT_TOL = 1e-9


def _drop_constant_directions(z: np.ndarray, dims: tuple, tol: float = _CONSTANT_TOL) -> tuple:
    """Project each variable's latent block onto its directions of non-zero sample variance.

    A direction with (numerically) zero variance is constant on these rows and carries no
    information, so dropping it leaves every mutual information unchanged. Maps fitted on the
    same rows never produce one; maps fitted on other rows (``fit_on``) can, e.g. a knocked-out
    run whose question states take a few distinct values seen through the clean run's PCA.
    Full-rank blocks are returned untouched.
    """
    blocks, out = np.split(z, np.cumsum(dims)[:2], axis=1), []
    for name, b in zip(("x1", "x2", "y"), blocks, strict=True):
        w, v = np.linalg.eigh(np.atleast_2d(np.cov(b, rowvar=False)))
        keep = w > tol * max(float(w.max()), 1e-300)
        if keep.all():
            out.append(b)
        elif not keep.any():
            raise ValueError(f"the {name} latents are constant on these rows: no information")
        else:
            out.append(b @ v[:, keep])
    if all(o is b for o, b in zip(out, blocks, strict=True)):
        return z, dims
    return np.concatenate(out, 1), tuple(o.shape[1] for o in out)


class FitStore(Protocol):
    """Where fitted maps are kept between jobs (e.g. :class:`pidlib.analysis.fits.CachedFits`):
    ``get(key)`` the bytes :meth:`PIDFlow.to_bytes` wrote under ``key``, or ``None``;
    ``put(key, blob)`` keeps them."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, blob: bytes) -> None: ...


def fit_maps(template: PIDFlow, rows: Sequence[np.ndarray], store: FitStore | None) -> PIDFlow:
    """``template`` (an unfitted :class:`PIDFlow`) fitted to ``rows = (x1, x2, y)``, or the same
    fit from ``store``, keyed by the settings and a hash of the rows.

    The clean run's fits of a knockout's paired difference are those of the clean layer-wise
    job (same rows, folds and seeds); a store lets the second job load them instead of training
    the flows again. Fits without a flow (PCA only) are cheap and never stored.
    """
    if store is None or not template.flow:
        return template.fit(*rows)
    h = hashlib.sha256(json.dumps(template.settings(), sort_keys=True, default=str).encode())
    for a in rows:
        a = np.ascontiguousarray(a, dtype=np.float64)
        h.update(str(a.shape).encode() + a.tobytes())
    key = h.hexdigest()[:32]
    blob = store.get(key)
    if blob is not None:
        try:
            return PIDFlow.from_bytes(blob, *rows)
        except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, EOFError) as err:
            warnings.warn(f"a stored PID Flow fit is unreadable ({err}); fitting again",
                          stacklevel=2)  # fmt: skip
    fit = template.fit(*rows)
    if blob is None:
        store.put(key, fit.to_bytes())
    return fit
