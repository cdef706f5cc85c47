"""The product flow's invertible maps (no training here: see :mod:`pidlib.pid.flow_nets`): the
rational-quadratic spline, the per-variable nflows flows (the reference, and the ``realnvp``
flow) and the same product flow fused into one network (``maf`` and ``spline``)."""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from nflows.nn.nets import ResidualNet
from nflows.transforms import (
    AffineCouplingTransform,
    CompositeTransform,
    LULinear,
    MaskedAffineAutoregressiveTransform,
    ReversePermutation,
)
from nflows.transforms.base import Transform

__all__ = ["MapSettings", "RQSpline"]


class MapSettings(Protocol):
    """What the maps read of a :class:`~pidlib.pid.flow_nets.FlowConfig`."""

    transform: str
    n_blocks: int
    hidden_features: int
    num_bins: int
    tail_bound: float


class RQSpline(Transform):
    """Elementwise monotone rational-quadratic spline (Durkan et al., NeurIPS 2019), ``(n, d)``.

    Each coordinate has its own ``num_bins``-bin spline on ``[-tail_bound, tail_bound]`` with unit
    slope at the ends and the identity outside; it starts as the identity. Same function as
    nflows' ``PiecewiseRationalQuadraticCDF(tails="linear", identity_init=True)``, but the bin
    parameters are normalised once per call instead of once per sample (about 6x faster).
    """

    def __init__(self, features: int, num_bins: int = 8, tail_bound: float = 4.0) -> None:
        super().__init__()
        self.num_bins, self.tail_bound = num_bins, float(tail_bound)
        self.min_bin, self.min_slope = 1e-3, 1e-3
        self.widths = torch.nn.Parameter(torch.zeros(features, num_bins))
        self.heights = torch.nn.Parameter(torch.zeros(features, num_bins))
        slope0 = math.log(math.expm1(1.0 - self.min_slope))  # softplus^-1: unit slope at start
        self.slopes = torch.nn.Parameter(torch.full((features, num_bins - 1), slope0))

    def _knots(self, raw: torch.Tensor) -> torch.Tensor:
        k, b = self.num_bins, self.tail_bound
        frac = self.min_bin + (1 - self.min_bin * k) * F.softmax(raw, -1)
        knots = F.pad(torch.cumsum(frac, -1), (1, 0)) * (2 * b) - b
        return torch.cat([knots[:, :-1], knots.new_full((knots.shape[0], 1), b)], 1)

    def _spline(self, inputs: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.tail_bound
        u = inputs.T  # (d, n): one row of bins per coordinate
        inside = (u > -b) & (u < b)
        u_in = u.clamp(-b, b).contiguous()
        xk, yk = self._knots(self.widths), self._knots(self.heights)
        one = self.slopes.new_ones(self.slopes.shape[0], 1)
        dk = torch.cat([one, self.min_slope + F.softplus(self.slopes), one], 1)
        idx = torch.searchsorted((yk if inverse else xk)[:, 1:-1].contiguous(), u_in)

        def at(t: torch.Tensor, shift: int = 0) -> torch.Tensor:
            return t[:, shift : t.shape[1] - 1 + shift].gather(1, idx)

        x0, y0, d0, d1 = at(xk), at(yk), at(dk), at(dk, 1)
        w, h = at(xk, 1) - x0, at(yk, 1) - y0
        s = h / w
        if inverse:  # solve the quadratic for the position xi in the bin
            dy = u_in - y0
            a = h * (s - d0) + dy * (d1 + d0 - 2 * s)
            bq = h * d0 - dy * (d1 + d0 - 2 * s)
            xi = (-2 * s * dy) / (-bq - torch.sqrt((bq * bq + 4 * a * s * dy).clamp_min(0)))
            out = x0 + xi * w
        else:
            xi = (u_in - x0) / w
        t = xi * (1 - xi)
        den = s + (d1 + d0 - 2 * s) * t
        if not inverse:
            out = y0 + h * (s * xi * xi + d0 * t) / den
        num = s * s * (d1 * xi * xi + 2 * s * t + d0 * (1 - xi) ** 2)
        logd = torch.log(num) - 2 * torch.log(den)  # log dy/dx of the forward map
        out = torch.where(inside, out, u)
        logd = torch.where(inside, -logd if inverse else logd, torch.zeros_like(logd))
        return out.T, logd.T

    def elementwise(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs and the log-derivative of each coordinate, both ``(n, d)``."""
        return self._spline(inputs, inverse=False)

    def forward(self, inputs: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, ...]:
        out, logd = self._spline(inputs, inverse=False)
        return out, logd.sum(1)

    def inverse(self, inputs: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, ...]:
        out, logd = self._spline(inputs, inverse=True)
        return out, logd.sum(1)


def _identity_init(layer: torch.nn.Linear, scale_rows: slice | None, scale_bias: float) -> None:
    """Zero the output layer of a conditioner so that its affine layer starts as the identity."""
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
        layer.bias[scale_rows] = scale_bias


def _variable_flow(d: int, cfg: MapSettings) -> CompositeTransform:
    """The invertible map of one variable of dimension ``d`` (see
    :class:`~pidlib.pid.flow_nets.FlowConfig`)."""
    parts: list[Transform] = []
    for block in range(cfg.n_blocks):
        parts += [LULinear(d, identity_init=True), RQSpline(d, cfg.num_bins, cfg.tail_bound)]
        if d == 1 or cfg.transform == "spline":
            continue
        if cfg.transform == "maf":
            maf = MaskedAffineAutoregressiveTransform(d, cfg.hidden_features, num_blocks=1)
            # outputs interleave (unconstrained scale, shift); softplus(c) + 1e-3 = 1
            _identity_init(
                maf.autoregressive_net.final_layer,
                slice(0, None, 2),
                math.log(math.expm1(1 - 1e-3)),
            )
            parts += [maf, ReversePermutation(d)]
        else:
            net = lambda i, o: ResidualNet(i, o, cfg.hidden_features, num_blocks=1)  # noqa: E731
            coupling = AffineCouplingTransform((torch.arange(d) + block) % 2, net)
            n_t = coupling.num_transform_features  # outputs: (shift, unconstrained scale)
            _identity_init(
                coupling.transform_net.final_layer, slice(n_t, None), math.log(999.0) - 2
            )
            parts.append(coupling)
    return CompositeTransform(parts)


class _ProductFlow(torch.nn.Module):
    """``f1 x f2 x fY`` on the concatenation ``[x1, x2, y]``: one transform per variable."""

    def __init__(self, dims: tuple[int, int, int], cfg: MapSettings) -> None:
        super().__init__()
        self.dims = dims
        self.parts = torch.nn.ModuleList(_variable_flow(d, cfg) for d in dims)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents ``(n, d1 + d2 + dy)`` and log|det J| of each variable ``(n, 3)`` (nats)."""
        outs = [f(xi) for f, xi in zip(self.parts, x.split(self.dims, 1), strict=True)]
        return torch.cat([z for z, _ in outs], 1), torch.stack([ld for _, ld in outs], 1)


class _FusedFlow(torch.nn.Module):
    """The same product flow as :class:`_ProductFlow` for ``transform`` "maf" or "spline", with
    the three variables' maps computed together on the concatenation ``[x1, x2, y]``.

    Each block's LU linear map is block-diagonal (a lower and an upper triangle masked to the
    variables' diagonal blocks), its spline is one :class:`RQSpline` over all coordinates (it is
    elementwise anyway), its masked autoregressive layer is one MADE whose masks keep each
    variable's hidden units and outputs to that variable's coordinates (with nflows' degrees:
    inputs ``1..d``, hidden units ``arange(h) % (d - 1) + 1``), and the reversal reverses each
    variable's coordinates. A variable of dimension 1 gets no autoregressive layer (its scale
    and shift are held at 1 and 0), as in :func:`_variable_flow`. The parameters are initialised
    as nflows initialises the per-variable maps (identity start; MADE layers uniform with each
    variable's fan-in). One call runs about a third of the small tensor operations of the
    per-variable flows, which dominate a fit's time at the book's sizes.
    """

    def __init__(self, dims: tuple[int, int, int], cfg: MapSettings) -> None:
        super().__init__()
        if cfg.transform not in ("maf", "spline"):
            raise ValueError(f"_FusedFlow: transform {cfg.transform!r} is not 'maf' or 'spline'")
        self.dims, self.n_blocks = dims, cfg.n_blocks
        var = torch.repeat_interleave(torch.arange(3), torch.tensor(dims))
        degree = torch.cat([torch.arange(1, d + 1) for d in dims])
        same = var[:, None] == var[None, :]
        self.register_buffer("lower_mask", torch.tril(same, -1).float())
        self.register_buffer("upper_mask", torch.triu(same, 1).float())
        self.register_buffer("member", F.one_hot(var, 3).float())  # (D, 3): column -> variable
        ends = np.cumsum(dims)
        perm = torch.cat(
            [torch.arange(e - 1, e - d - 1, -1) for d, e in zip(dims, ends, strict=True)]
        )
        self.register_buffer("perm", perm)
        total, eps = sum(dims), 1e-3
        diag0 = math.log(math.expm1(1 - eps))  # softplus^-1: unit diagonal, unit MAF scale
        self.lu_lower = torch.nn.ParameterList()
        self.lu_upper = torch.nn.ParameterList()
        self.lu_diag = torch.nn.ParameterList()
        self.lu_bias = torch.nn.ParameterList()
        self.splines = torch.nn.ModuleList()
        for _ in range(cfg.n_blocks):
            self.lu_lower.append(torch.nn.Parameter(torch.zeros(total, total)))
            self.lu_upper.append(torch.nn.Parameter(torch.zeros(total, total)))
            self.lu_diag.append(torch.nn.Parameter(torch.full((total,), diag0)))
            self.lu_bias.append(torch.nn.Parameter(torch.zeros(total)))
            self.splines.append(RQSpline(total, cfg.num_bins, cfg.tail_bound))
        multi = [v for v in range(3) if dims[v] > 1] if cfg.transform == "maf" else []
        self.has_maf = bool(multi)
        if not self.has_maf:
            return
        h = cfg.hidden_features
        hvar = torch.repeat_interleave(torch.tensor(multi), h)
        hdeg = torch.cat([torch.arange(h) % (dims[v] - 1) + 1 for v in multi])
        same_in = hvar[:, None] == var[None, :]
        same_h = hvar[:, None] == hvar[None, :]
        self.register_buffer("mask_in", (same_in & (hdeg[:, None] >= degree[None, :])).float())
        self.register_buffer("mask_h", (same_h & (hdeg[:, None] >= hdeg[None, :])).float())
        self.register_buffer("mask_out", (same_in.T & (degree[:, None] > hdeg[None, :])).float())
        is_multi = torch.isin(var, torch.tensor(multi))
        self.register_buffer("maf_cols", is_multi)
        # nn.Linear's initialisation, uniform with each variable's fan-in (d in, h hidden); the
        # residual branch's last layer near zero and the output layer at the identity, as nflows
        k = len(hvar)
        bound = 1 / torch.tensor([float(dims[v]) for v in multi]).repeat_interleave(h).sqrt()

        def uniform(scale: torch.Tensor | float, *shape: int) -> torch.nn.Parameter:
            return torch.nn.Parameter((torch.rand(*shape) * 2 - 1) * scale)

        self.made = torch.nn.ModuleList()
        for _ in range(cfg.n_blocks):
            made = torch.nn.ParameterDict()
            made["w_in"], made["b_in"] = uniform(bound[:, None], k, total), uniform(bound, k)
            made["w_0"], made["b_0"] = uniform(h**-0.5, k, k), uniform(h**-0.5, k)
            made["w_1"], made["b_1"] = uniform(1e-3, k, k), uniform(1e-3, k)
            made["w_scale"] = torch.nn.Parameter(torch.zeros(total, k))
            made["b_scale"] = torch.nn.Parameter(torch.full((total,), diag0))
            made["w_shift"] = torch.nn.Parameter(torch.zeros(total, k))
            made["b_shift"] = torch.nn.Parameter(torch.zeros(total))
            self.made.append(made)

    def _maf(self, x: torch.Tensor, p: torch.nn.ParameterDict) -> tuple[torch.Tensor, ...]:
        """The masked affine autoregressive layer; a variable of dimension 1 passes unchanged."""
        t = F.linear(x, p["w_in"] * self.mask_in, p["b_in"])
        r = F.linear(F.relu(t), p["w_0"] * self.mask_h, p["b_0"])
        t = t + F.linear(F.relu(r), p["w_1"] * self.mask_h, p["b_1"])
        raw = F.linear(t, p["w_scale"] * self.mask_out, p["b_scale"])
        shift = F.linear(t, p["w_shift"] * self.mask_out, p["b_shift"] * self.maf_cols)
        scale = torch.where(self.maf_cols, F.softplus(raw) + 1e-3, 1.0)
        return x * scale + shift, torch.log(scale)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents ``(n, d1 + d2 + dy)`` and log|det J| of each variable ``(n, 3)`` (nats)."""
        eye = torch.eye(x.shape[1], dtype=x.dtype)
        const = x.new_zeros(x.shape[1])
        logd = x.new_zeros(x.shape)
        for b in range(self.n_blocks):
            diag = F.softplus(self.lu_diag[b]) + 1e-3
            lower = self.lu_lower[b] * self.lower_mask + eye
            upper = self.lu_upper[b] * self.upper_mask + torch.diag(diag)
            x = F.linear(x, lower @ upper, self.lu_bias[b])
            const = const + torch.log(diag)
            x, ld = self.splines[b].elementwise(x)
            logd = logd + ld
            if self.has_maf:
                x, ld = self._maf(x, self.made[b])
                logd = logd + ld
                x = x[:, self.perm]  # within variables: the columns' owners stay put
        return x, (logd + const) @ self.member
