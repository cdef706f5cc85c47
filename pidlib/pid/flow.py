"""PID Flow: per-variable preprocessing (:mod:`pidlib.pid.preprocessing`), a product normalizing
flow (:mod:`pidlib.pid.flow_nets`) and the Gaussian PID of the latents (bits)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from pidlib.pid.flow_nets import (
    OBJECTIVES,
    TRANSFORMS,
    FlowConfig,
    RQSpline,
    _n_val,
    _ProductFlow,
    _train,
)
from pidlib.pid.gaussian import gaussian_pid
from pidlib.pid.preprocessing import MarginalGaussianizer, PCAFit, fit_pca
from pidlib.pid.result import MEASURES, PID
from pidlib.pid.uncertainty import (
    CI_KEYS,
    SCHEMES,
    fold_indices,
    half_subsamples,
    mean_pid,
    strata,
    wald_ci,
)

__all__ = ["OBJECTIVES", "SCHEMES", "TRANSFORMS", "FlowConfig", "PIDFlow", "RQSpline", "pid_flow"]


# --------------------------------------------------------------------------- the estimator


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
        measures = _measures(measure)
        z = np.concatenate(self.transform(x1, x2, y), 1)
        out = {
            m: self._attach(p) for m, p in _pids(z, self.dims, measures, bias_correction).items()
        }
        return out if not isinstance(measure, str) else out[measure]

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


def _measures(measure: str | Sequence[str]) -> tuple[str, ...]:
    ms = (measure,) if isinstance(measure, str) else tuple(measure)
    bad = [m for m in ms if m not in MEASURES]
    if bad or not ms:
        raise ValueError(f"unknown PID measure(s) {bad or ms!r}; expected some of {MEASURES}")
    return ms


def _pids(z: np.ndarray, dims: tuple, measures: Sequence[str], bias: bool) -> dict[str, PID]:
    """Gaussian PIDs of the sample covariance of latents ``z`` ``(n, d1 + d2 + dy)``."""
    z, dims = _drop_constant_directions(z, dims)
    cov = np.cov(z, rowvar=False)
    return {m: gaussian_pid(cov, dims, m, n=len(z) if bias else None) for m in measures}


def _drop_constant_directions(z: np.ndarray, dims: tuple, tol: float = 1e-9) -> tuple:
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


def _check_int(name: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    return int(v)


def pid_flow(
    x1: Any,
    x2: Any,
    y: Any,
    *,
    measure: str | Sequence[str] = "mmi",
    pca_variance: float = 0.95,
    max_dims: int = 32,
    seed: int = 0,
    flow: bool = True,
    n_bootstrap: int = 0,
    n_seeds: int = 1,
    bias_correction: bool = True,
    flow_config: FlowConfig | None = None,
    scheme: str = "crossfit",
    n_folds: int = 2,
    refit_bootstrap: bool = False,
    ci_level: float = 0.95,
    fit_on: tuple[Any, Any, Any] | None = None,
) -> PID | dict[str, PID]:
    """PID Flow estimate of the PID of ``I(X1, X2; Y)`` in bits (see :class:`PIDFlow`).

    ``x1`` ``(n, d1)``, ``x2`` ``(n, d2)``, ``y`` ``(n,)`` or ``(n, dy)``. Returns a
    :class:`~pidlib.pid.result.PID` for one ``measure`` ("mmi" or "broja") or, for a sequence of
    measures, a dict measure -> PID computed from the same latent covariance. ``flow=False`` is the
    plain Gaussian plug-in on the PCA scores.

    ``scheme="crossfit"`` (default): the rows are split into ``n_folds`` folds (within classes
    when ``y`` is discrete); the maps (marginals, PCA, flows) fitted on the other folds give each
    fold's latents, so no latent is measured by maps fitted on it. The estimate is the mean of
    the folds' Gaussian PIDs, averaged over ``n_seeds`` independent splits and flow seeds
    (repeated cross-fitting). Its interval (``PID.ci``, every atom, ``total``, ``mi_1``,
    ``mi_2``; level ``ci_level``) is ``estimate ± z · se`` clipped at 0, where ``se`` combines
    ``n_bootstrap`` half-subsamples of every fold's latents (without replacement, each bias
    corrected with its own size: :mod:`pidlib.pid.uncertainty`) and the spread over splits.

    ``scheme="bootstrap"``: the earlier estimator, kept to show why it was replaced: maps fitted
    on all rows, the estimate from the same rows, and a percentile interval over ``n_bootstrap``
    resamples of the latent rows (``refit_bootstrap=True``: maps refitted per resample) crossed
    with ``n_seeds`` flow seeds. Its resamples repeat rows, so their plug-in bias exceeds the
    correction for the nominal ``n`` and the interval can exclude its own estimate.

    ``bias_correction=True`` passes the rows' number to
    :func:`~pidlib.pid.gaussian.gaussian_pid`, which subtracts the finite-sample bias of the
    Gaussian plug-in's log-determinants (exact for Gaussian latents). ``info`` records the kept
    ``dims``, explained variances, training log and the resampling. Same arguments and thread
    count -> bit-identical results.

    ``fit_on=(x1_fit, x2_fit, y_fit)`` fits PCA and flows on those rows instead (same columns,
    any number of rows) and measures ``(x1, x2, y)`` through the fitted maps: e.g. a knocked-out
    run seen through the clean run's transforms. Those maps never saw ``(x1, x2, y)``, so the
    estimate uses all its rows (no folds) and half-subsamples of them give the interval.
    """
    measures = _measures(measure)
    n_bootstrap, n_seeds = (
        _check_int("n_bootstrap", n_bootstrap, 0),
        _check_int("n_seeds", n_seeds, 1),
    )
    _check_int("n_folds", n_folds, 2)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level!r}")
    data = _as_data(x1, x2, y)
    if fit_on is not None and (not isinstance(fit_on, tuple | list) or len(fit_on) != 3):
        raise ValueError("fit_on: expected a tuple (x1, x2, y) of arrays")
    if fit_on is not None and refit_bootstrap:
        raise ValueError("fit_on: maps are fitted once on fit_on; refit_bootstrap must be False")
    fit_data = data if fit_on is None else _as_data(*fit_on)

    def fitted(k: int, rows: list[np.ndarray]) -> PIDFlow:
        return PIDFlow(
            flow_config, pca_variance=pca_variance, max_dims=max_dims, flow=flow, seed=seed + k
        ).fit(*rows)

    if scheme == "bootstrap":
        return _bootstrap(data, fit_data, fitted, measures, measure, n_bootstrap,
                          n_seeds if flow else 1, bias_correction, refit_bootstrap, ci_level,
                          seed, fit_on is not None)  # fmt: skip
    return _crossfit(data, fit_data if fit_on is not None else None, fitted, measures, measure,
                     n_bootstrap, n_seeds, n_folds, bias_correction, ci_level, seed)  # fmt: skip


def _crossfit(data, fit_data, fitted, measures, measure, n_rep, n_seeds, n_folds, bias, level,
              seed):  # fmt: skip
    """The cross-fitted estimate and its subsampling interval (see :func:`pid_flow`)."""
    n = len(data[0])
    labels = strata(data[2], 1 if fit_data is not None else n_folds)
    # (fit, latents of the rows it never saw, their class labels) per split and fold
    parts: list[list[tuple[PIDFlow, np.ndarray, np.ndarray | None]]] = []
    for s in range(n_seeds):
        if fit_data is not None:
            f = fitted(s, fit_data)
            parts.append([(f, np.concatenate(f.transform(*data), 1), labels)])
            continue
        rng = np.random.default_rng([seed, s])
        split = []
        for k, held in enumerate(folds := fold_indices(n, n_folds, rng, labels)):
            train = np.sort(np.concatenate([f for j, f in enumerate(folds) if j != k]))
            f = fitted(s * n_folds + k, [a[train] for a in data])
            z = np.concatenate(f.transform(*[a[held] for a in data]), 1)
            split.append((f, z, None if labels is None else labels[held]))
        parts.append(split)
    per_split = [[_pids(z, f.dims, measures, bias) for f, z, _ in split] for split in parts]
    rng = np.random.default_rng([seed, 7919])
    reps: list[list[dict[str, PID]]] = [[] for _ in range(n_rep)]
    factors = []
    for split in parts:
        for f, z, lab in split:
            m = len(z) // 2 if lab is None else sum(int(c) // 2 for c in np.bincount(lab) if c)
            factors.append(m / (len(z) - m))
            for r, idx in enumerate(half_subsamples(len(z), n_rep, rng, lab)):
                reps[r].append(_pids(z[idx], f.dims, measures, bias))
    f0 = parts[0][0][0]
    extra = {"scheme": "crossfit", "n_folds": n_folds if fit_data is None else 0,
             "n_seeds": n_seeds, "n_bootstrap": n_rep, "bias_correction": bias,
             "ci_level": level, "fit_on": "the data" if fit_data is None else "given rows",
             "fold_dims": [list(f.dims) for split in parts for f, _, _ in split]}  # fmt: skip
    out = {}
    for m in measures:
        splits = [mean_pid([d[m] for d in split]) for split in per_split]
        point = mean_pid(splits)
        ci = None
        if n_rep >= 2 or n_seeds >= 2:
            rep = np.array(
                [[getattr(mean_pid([d[m] for d in r]), k) for k in CI_KEYS] for r in reps]
            )
            between = np.array([[getattr(p, k) for k in CI_KEYS] for p in splits])
            ci = wald_ci(
                point, rep.reshape(-1, len(CI_KEYS)), between, level, float(np.mean(factors))
            )
        out[m] = replace(f0._attach(point, extra), ci=ci)
    return out if not isinstance(measure, str) else out[measure]


def _bootstrap(data, fit_data, fitted, measures, measure, n_bootstrap, n_fits, bias,
               refit_bootstrap, level, seed, given):  # fmt: skip
    """The earlier scheme: maps fitted on all rows, a percentile bootstrap of the latents."""
    n = len(data[0])
    fits = [fitted(k, fit_data) for k in range(n_fits)]
    latents = [np.concatenate(f.transform(*data), 1) for f in fits]
    reps: list[dict[str, PID]] = []
    rng = np.random.default_rng(seed)
    for idx in (rng.integers(0, n, n) for _ in range(n_bootstrap)):
        for k, (f, z) in enumerate(zip(fits, latents, strict=True)):
            if refit_bootstrap:
                rows = [a[idx] for a in data]
                f = fitted(k, rows)
                z = np.concatenate(f.transform(*rows), 1)
            reps.append(_pids(z if refit_bootstrap else z[idx], f.dims, measures, bias))
    if n_bootstrap == 0 and len(fits) > 1:
        reps = [_pids(z, f.dims, measures, bias) for f, z in zip(fits, latents, strict=True)]
    extra = {"scheme": "bootstrap", "n_seeds": len(fits), "n_bootstrap": n_bootstrap,
             "refit_bootstrap": refit_bootstrap, "bias_correction": bias,
             "n_replicates": len(reps), "ci_level": level,
             "fit_on": "given rows" if given else "the data"}  # fmt: skip
    out = {}
    for m, pid in _pids(latents[0], fits[0].dims, measures, bias).items():
        ci = None
        if len(reps) >= 2:
            q = 100 * np.array([(1 - level) / 2, (1 + level) / 2])
            vals = np.array([[getattr(r[m], k) for k in CI_KEYS] for r in reps])
            lo, hi = np.percentile(vals, q, axis=0)
            ci = {k: (float(a), float(b)) for k, a, b in zip(CI_KEYS, lo, hi, strict=True)}
        out[m] = replace(fits[0]._attach(pid, extra), ci=ci)
    return out if not isinstance(measure, str) else out[measure]
