"""The product normalizing flow of PID Flow: its configuration and its training on a Gaussian
likelihood (the maps are in :mod:`pidlib.pid.flow_transforms`; no PCA, no PID here: see
:mod:`pidlib.pid.maps`)."""

from __future__ import annotations

import copy
import math
import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from pidlib.pid.flow_transforms import RQSpline, _FusedFlow, _ProductFlow

__all__ = ["OBJECTIVES", "TRANSFORMS", "FlowConfig", "RQSpline"]

#: Block types of the per-variable flows (see :class:`FlowConfig`).
TRANSFORMS: tuple[str, ...] = ("maf", "realnvp", "spline")
#: Variable groups (0 = X1, 1 = X2, 2 = Y) whose Gaussian likelihoods make the training objective.
OBJECTIVES: dict[str, tuple[tuple[int, ...], ...]] = {
    "pairs": ((0, 2), (1, 2)),
    "joint": ((0, 1, 2),),
    "both": ((0, 2), (1, 2), (0, 1, 2)),
}

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class FlowConfig:
    """Every knob of the product flow and its training (frozen; ``as_dict`` serialises it).

    Input: the standardised PCA scores of each variable. When ``marginal``, every raw coordinate
    is first mapped to a normal marginal by a fixed
    :class:`~pidlib.pid.preprocessing.MarginalGaussianizer`, before PCA: it tames heavy tails
    and multimodality, which a spline with a bounded range
    cannot, in the coordinates where they arise (PCA's rotation would mix them). On the canonical
    latent-Gaussian systems at n = 5000 this cut the largest atom error from 0.011-0.225 bits
    (marginals Gaussianized after PCA) to 0.007-0.047. Each variable then gets ``n_blocks``
    blocks of: an LU-parameterised linear map, an elementwise rational-quadratic spline
    (:class:`RQSpline`, ``num_bins`` bins on ``[-tail_bound, tail_bound]``) and, for variables
    of dimension > 1, ``transform="maf"``: a masked affine autoregressive layer
    (``hidden_features`` units) and a reversal; ``"realnvp"``: an affine coupling layer with
    alternating masks; ``"spline"``: nothing more (a Gaussianization flow). Every block starts
    as the identity.

    ``objective`` (see :data:`OBJECTIVES`): ``"joint"`` maximises the Gaussian likelihood of
    ``(f1(X1), f2(X2), fY(Y))``; ``"pairs"`` that of ``(f1(X1), fY(Y))`` plus ``(f2(X2), fY(Y))``
    (Flow-PID's choice, enough for BROJA, which depends on the pairwise marginals only);
    ``"both"`` the sum. The default is ``"joint"`` because the MMI decomposition also needs
    ``I(X1, X2; Y)``, a property of the joint: on the canonical latent-Gaussian systems it halved
    the synergy error of ``"pairs"`` (e.g. 0.14 -> 0.06 bits on ``nl_synergy`` at n = 5000).

    Training: Adam (learning rate ``lr``), minibatches of ``batch_size`` rows, fewer where
    needed for at least ``min_steps`` steps per epoch (with one step per epoch, early stopping
    ends a small sample's training before it starts), at most ``max_epochs``
    epochs, early stopping after ``patience`` epochs without a validation improvement larger
    than ``min_delta`` (nats per sample) on a held-out ``val_fraction`` of the samples. Large
    batches with a large rate were as accurate as ``batch_size=256, lr=3e-3`` on the canonical
    systems and 3x faster (per-step overhead dominates at these sizes).
    """

    transform: str = "maf"
    n_blocks: int = 3
    hidden_features: int = 32
    num_bins: int = 8
    tail_bound: float = 4.0
    lr: float = 1e-2
    batch_size: int = 1024
    min_steps: int = 8
    max_epochs: int = 200
    # 3, not 5 (or 10 before that): the last epochs of a fit almost never find a better state.
    # Measured 2026-12-07 on the cpu book's 108 clean layer-wise jobs (n = 1000, one thread):
    # CPU 110 -> 85 s; 13 jobs change, RMS change per atom 0.0006-0.009 bits against
    # 0.006-0.028 between two job seeds at patience 5. On nl_synergy / nl_unique (50
    # replicates, n = 1000): 58 -> 33 s, total bias -0.119 -> -0.125 / -0.119 -> -0.121 bits
    # (estimate SD 0.05), coverage within 4 points.
    patience: int = 3
    min_delta: float = 1e-3
    val_fraction: float = 0.2
    marginal: bool = True
    objective: str = "joint"

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"FlowConfig.transform: {self.transform!r} is not one of {TRANSFORMS}")
        for name, low in (
            ("n_blocks", 1),
            ("hidden_features", 1),
            ("num_bins", 2),
            ("batch_size", 2),
            ("min_steps", 1),
            ("max_epochs", 1),
            ("patience", 1),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < low:
                raise ValueError(f"FlowConfig.{name}: must be an integer >= {low}, got {v!r}")
        for name in ("tail_bound", "lr"):
            if not getattr(self, name) > 0 or not math.isfinite(getattr(self, name)):
                raise ValueError(f"FlowConfig.{name}: must be > 0, got {getattr(self, name)!r}")
        if not self.min_delta >= 0:
            raise ValueError(f"FlowConfig.min_delta: must be >= 0, got {self.min_delta!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"FlowConfig.objective: {self.objective!r} is not in {tuple(OBJECTIVES)}"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"FlowConfig.val_fraction: {self.val_fraction!r} is outside (0, 1)")

    def as_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of the settings (``FlowConfig(**d)`` rebuilds it)."""
        return asdict(self)


class _GroupGaussians:
    """Maximum-likelihood Gaussians (mean, full covariance) of groups of variables of latents."""

    def __init__(self, z: torch.Tensor, dims: tuple[int, int, int], objective: str) -> None:
        edges = np.concatenate([[0], np.cumsum(dims)])
        groups = OBJECTIVES[objective]
        self.weights = torch.tensor([sum(v in g for g in groups) for v in range(3)], dtype=z.dtype)
        self.groups, self.stats = [], []
        for g in groups:
            idx = torch.cat([torch.arange(edges[v], edges[v + 1]) for v in g])
            p = z[:, idx].double()
            mean = p.mean(0)
            cov = (p - mean).T @ (p - mean) / p.shape[0]
            chol = torch.linalg.cholesky(cov + 1e-9 * cov.diagonal().mean() * torch.eye(len(idx)))
            inv = torch.linalg.inv(chol).T.to(z.dtype)  # whitening: (p - mean) @ inv
            const = chol.diagonal().log().sum().item() + 0.5 * len(idx) * _LOG_2PI
            self.groups.append(idx)
            self.stats.append((mean.to(z.dtype), inv, const))

    def nll(self, z: torch.Tensor, logdet: torch.Tensor) -> torch.Tensor:
        """Per-sample negative log-likelihood ``(n,)`` (nats) of all groups, Jacobians included."""
        out = -(logdet @ self.weights)
        for idx, (mean, inv, const) in zip(self.groups, self.stats, strict=True):
            out = out + const + 0.5 * ((z[:, idx] - mean) @ inv).square().sum(1)
        return out


_INIT_LOCK = threading.Lock()


def _seeded_flow(
    dims: tuple[int, int, int], cfg: FlowConfig, seed: int
) -> _ProductFlow | _FusedFlow:
    """Build the product flow from torch's global RNG seeded with ``seed`` (nflows initialises
    from it), restoring the caller's RNG state afterwards; under a lock, so that fits running in
    parallel threads stay deterministic. Training uses only its own ``torch.Generator`` and
    deterministic CPU kernels, so a fit is reproducible bit for bit at a fixed thread count."""
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _ProductFlow(dims, cfg) if cfg.transform == "realnvp" else _FusedFlow(dims, cfg)


def _train(
    x: np.ndarray, dims: tuple[int, int, int], cfg: FlowConfig, seed: int
) -> tuple[_ProductFlow, dict[str, Any]]:
    """Fit the product flow to the scores ``x`` ``(n, d1 + d2 + dy)``; return it and a log.

    Objective (``cfg.objective``): the Gaussian negative log-likelihood of the latent groups,
    log-Jacobians included, each group's mean and full covariance at their closed-form maximum-
    likelihood values on the whole training split. Those are refreshed once per epoch and held
    fixed (no gradient) in between: at the optimum over the covariance, the gradient of the
    profile likelihood equals the gradient at fixed covariance (envelope theorem), so minibatch
    gradients are unbiased for any batch size. A covariance re-estimated on each minibatch (the
    alternative) has a log-determinant biased downward by an amount that grows with the group's
    dimension over the batch size and with the latents' tails, which the flow can exploit; learned
    covariance parameters would lag the flow and add ``d (d + 1) / 2`` parameters per group.
    The validation loss is measured before training and after every epoch; the best state is
    kept (so a flow that only overfits returns its identity start).
    """
    n = x.shape[0]
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    n_val = _n_val(n, cfg)
    val, train = perm[:n_val], perm[n_val:]
    data = torch.from_numpy(x).float()
    x_train = data[train]
    objective = cfg.objective
    batch = min(cfg.batch_size, max(16, math.ceil(len(train) / cfg.min_steps)))

    def evaluate(flow: _ProductFlow) -> tuple[_GroupGaussians | None, float]:
        """Refit the groups' Gaussians on the training latents; validation loss (nats)."""
        with torch.no_grad():
            z, logdet = flow(data)
            if not (torch.isfinite(z).all() and torch.isfinite(logdet).all()):
                return None, math.nan
            gauss = _GroupGaussians(z[train], dims, objective)
            return gauss, gauss.nll(z[val], logdet[val]).mean().item()

    flow = _seeded_flow(dims, cfg, seed)
    # fused: one kernel per step for all parameters; 11-15% less CPU per flow fit than the
    # multi-tensor (foreach) update, itself 11% below torch's per-tensor default on CPU; the
    # estimates agree to 1e-7 bits (3 book-sized fits: I(V,L;Y) 0.45344673 both ways)
    opt = torch.optim.Adam(flow.parameters(), lr=cfg.lr, fused=True)
    gauss, best = evaluate(flow)
    if gauss is None:
        raise RuntimeError("PID Flow: the scores give non-finite latents before training")
    best_epoch, state, history = 0, copy.deepcopy(flow.state_dict()), [(math.nan, best)]
    for epoch in range(1, cfg.max_epochs + 1):
        order, total = torch.randperm(len(train), generator=gen), 0.0
        for start in range(0, len(train), batch):
            rows = order[start : start + batch]
            loss = gauss.nll(*flow(x_train[rows])).mean()
            if not torch.isfinite(loss):
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(rows) / len(train)
        new, val_nll = evaluate(flow)
        if new is None:
            break  # diverged: keep the best state so far
        gauss = new
        history.append((total, val_nll))
        if val_nll < best - cfg.min_delta:
            best, best_epoch, state = val_nll, epoch, copy.deepcopy(flow.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            break
    flow.load_state_dict(state)
    log = {
        "epochs": len(history) - 1,
        "best_epoch": best_epoch,
        "val_nll": best,
        "n_train": len(train),
        "n_val": n_val,
        "batch_size": batch,
        "history": tuple(history),
    }
    return flow.eval(), log


def _n_val(n: int, cfg: FlowConfig) -> int:
    return int(math.ceil(cfg.val_fraction * n))
