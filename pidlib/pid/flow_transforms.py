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


_MIN_BIN, _MIN_SLOPE = 1e-3, 1e-3


def _spline_knots(
    widths: torch.Tensor, heights: torch.Tensor, slopes: torch.Tensor, tail_bound: float
) -> torch.Tensor:
    """Knots of rational-quadratic splines from their raw parameters ``(..., d, K)`` (slopes
    ``(..., d, K - 1)``): ``(..., 6, d, K)`` holding, per bin, its left and right x, left and
    right y, and the derivatives at both ends (the six quantities :func:`_spline_apply`
    gathers per input)."""

    def knots(raw: torch.Tensor) -> torch.Tensor:
        k, b = raw.shape[-1], tail_bound
        frac = _MIN_BIN + (1 - _MIN_BIN * k) * F.softmax(raw, -1)
        edges = F.pad(torch.cumsum(frac, -1), (1, 0)) * (2 * b) - b
        return torch.cat([edges[..., :-1], edges.new_full((*edges.shape[:-1], 1), b)], -1)

    xk, yk = knots(widths), knots(heights)
    one = slopes.new_ones((*slopes.shape[:-1], 1))
    dk = torch.cat([one, _MIN_SLOPE + F.softplus(slopes), one], -1)
    ends = [(t[..., :-1], t[..., 1:]) for t in (xk, yk, dk)]
    return torch.stack([e for pair in ends for e in pair], -3)


def _spline_apply(
    inputs: torch.Tensor, knots: torch.Tensor, tail_bound: float, inverse: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The splines of ``knots`` ``(6, d, K)`` (:func:`_spline_knots`) on ``inputs`` ``(n, d)``,
    the identity outside ``[-tail_bound, tail_bound]``: outputs and log-derivatives, ``(n, d)``."""
    # written with few scalar operands (each costs a conversion as large as the operation at
    # these sizes): s + s for 2 s, one 1 - xi; the same numbers as the textbook form
    b = tail_bound
    u = inputs.T  # (d, n): one row of bins per coordinate
    inside = u.abs() < b
    u_in = u.clamp(-b, b).contiguous()
    lefts = knots[2 if inverse else 0, :, 1:].contiguous()  # inner knots of the searched axis
    idx = torch.searchsorted(lefts, u_in)
    x0, x1, y0, y1, d0, d1 = knots.gather(2, idx.expand(6, *idx.shape)).unbind(0)
    w, h = x1 - x0, y1 - y0
    s = h / w
    s2 = s + s
    curve = d1 + d0 - s2
    if inverse:  # solve the quadratic for the position xi in the bin
        dy = u_in - y0
        a = h * (s - d0) + dy * curve
        bq = h * d0 - dy * curve
        xi = (-s2 * dy) / (-bq - torch.sqrt((bq * bq + 4 * a * s * dy).clamp_min(0)))
        out = x0 + xi * w
    else:
        xi = (u_in - x0) / w
    rest = 1 - xi
    t = xi * rest
    den = s + curve * t
    if not inverse:
        out = y0 + h * (s * xi * xi + d0 * t) / den
    num = s * s * (d1 * xi * xi + s2 * t + d0 * rest**2)
    log_den = torch.log(den)
    logd = torch.log(num) - (log_den + log_den)  # log dy/dx of the forward map
    out = torch.where(inside, out, u)
    logd = torch.where(inside, -logd if inverse else logd, torch.zeros_like(logd))
    return out.T, logd.T


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
        self.widths = torch.nn.Parameter(torch.zeros(features, num_bins))
        self.heights = torch.nn.Parameter(torch.zeros(features, num_bins))
        slope0 = math.log(math.expm1(1.0 - _MIN_SLOPE))  # softplus^-1: unit slope at start
        self.slopes = torch.nn.Parameter(torch.full((features, num_bins - 1), slope0))

    def _spline(self, inputs: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        knots = _spline_knots(self.widths, self.heights, self.slopes, self.tail_bound)
        return _spline_apply(inputs, knots, self.tail_bound, inverse)

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
    variables' diagonal blocks), its spline covers all coordinates (it is elementwise anyway),
    its masked autoregressive layer is one MADE whose masks keep each variable's hidden units
    and outputs to that variable's coordinates (with nflows' degrees: inputs ``1..d``, hidden
    units ``arange(h) % (d - 1) + 1``), and the reversal reverses each variable's coordinates.
    A variable of dimension 1 gets no autoregressive layer (its scale and shift are held at 1
    and 0), as in :func:`_variable_flow`. The parameters are initialised as nflows initialises
    the per-variable maps (identity start; MADE layers uniform with each variable's fan-in).

    Every parameter is one tensor stacked over the ``n_blocks`` blocks (leading axis), and
    what depends on the parameters alone (LU products, spline knots, masked MADE weights) is
    computed for all blocks at once. At the book's sizes a fit's time is the number of small
    tensor operations, not their size: one call runs about a third of the operations of the
    per-variable flows, and about two thirds of those of one tensor per block.
    """

    def __init__(self, dims: tuple[int, int, int], cfg: MapSettings) -> None:
        super().__init__()
        if cfg.transform not in ("maf", "spline"):
            raise ValueError(f"_FusedFlow: transform {cfg.transform!r} is not 'maf' or 'spline'")
        self.dims, self.n_blocks, self.tail_bound = dims, cfg.n_blocks, float(cfg.tail_bound)
        var = torch.repeat_interleave(torch.arange(3), torch.tensor(dims))
        degree = torch.cat([torch.arange(1, d + 1) for d in dims])
        same = var[:, None] == var[None, :]
        total, eps, nb, bins = sum(dims), 1e-3, cfg.n_blocks, cfg.num_bins
        self.register_buffer("lower_mask", torch.tril(same, -1).float())
        self.register_buffer("upper_mask", torch.triu(same, 1).float())
        self.register_buffer("eye", torch.eye(total))
        self.register_buffer("member", F.one_hot(var, 3).float())  # (D, 3): column -> variable
        ends = np.cumsum(dims)
        perm = torch.cat(
            [torch.arange(e - 1, e - d - 1, -1) for d, e in zip(dims, ends, strict=True)]
        )
        self.register_buffer("perm", perm)
        diag0 = math.log(math.expm1(1 - eps))  # softplus^-1: unit diagonal, unit MAF scale
        slope0 = math.log(math.expm1(1.0 - _MIN_SLOPE))  # unit spline slopes
        param = torch.nn.Parameter
        self.lu_lower = param(torch.zeros(nb, total, total))
        self.lu_upper = param(torch.zeros(nb, total, total))
        self.lu_diag = param(torch.full((nb, total), diag0))
        self.lu_bias = param(torch.zeros(nb, total))
        self.widths = param(torch.zeros(nb, total, bins))
        self.heights = param(torch.zeros(nb, total, bins))
        self.slopes = param(torch.full((nb, total, bins - 1), slope0))
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
        self.register_buffer("maf_shift", is_multi.float())
        # nn.Linear's initialisation, uniform with each variable's fan-in (d in, h hidden); the
        # residual branch's last layer near zero and the output layer at the identity, as nflows.
        # Drawn block by block in nflows' order, then stacked.
        k = len(hvar)
        bound = 1 / torch.tensor([float(dims[v]) for v in multi]).repeat_interleave(h).sqrt()

        def uniform(scale: torch.Tensor | float, *shape: int) -> torch.Tensor:
            return (torch.rand(*shape) * 2 - 1) * scale

        draws: dict[str, list[torch.Tensor]] = {}
        for _ in range(nb):
            for name, (scale, shape) in {
                "w_in": (bound[:, None], (k, total)), "b_in": (bound, (k,)),
                "w_0": (h**-0.5, (k, k)), "b_0": (h**-0.5, (k,)),
                "w_1": (1e-3, (k, k)), "b_1": (1e-3, (k,)),
            }.items():  # fmt: skip
                draws.setdefault(name, []).append(uniform(scale, *shape))
        self.made = torch.nn.ParameterDict(
            {name: param(torch.stack(v)) for name, v in draws.items()}
        )
        self.made["w_scale"] = param(torch.zeros(nb, total, k))
        self.made["b_scale"] = param(torch.full((nb, total), diag0))
        self.made["w_shift"] = param(torch.zeros(nb, total, k))
        self.made["b_shift"] = param(torch.zeros(nb, total))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents ``(n, d1 + d2 + dy)`` and log|det J| of each variable ``(n, 3)`` (nats)."""
        diag = F.softplus(self.lu_diag) + 1e-3  # what the parameters alone determine, all blocks
        lower = self.lu_lower * self.lower_mask + self.eye
        upper = self.lu_upper * self.upper_mask + torch.diag_embed(diag)
        log_diag = torch.log(diag)
        knots = _spline_knots(self.widths, self.heights, self.slopes, self.tail_bound)
        if self.has_maf:
            p = self.made
            w_in, w_0 = p["w_in"] * self.mask_in, p["w_0"] * self.mask_h
            w_1, w_scale = p["w_1"] * self.mask_h, p["w_scale"] * self.mask_out
            w_shift, b_shift = p["w_shift"] * self.mask_out, p["b_shift"] * self.maf_shift
        const = x.new_zeros(x.shape[1])
        logd = x.new_zeros(x.shape)
        for b in range(self.n_blocks):
            x = F.linear(x, lower[b] @ upper[b], self.lu_bias[b])  # 2-D: bmm rounds otherwise
            const = const + log_diag[b]
            x, ld = _spline_apply(x, knots[b], self.tail_bound, inverse=False)
            logd = logd + ld
            if self.has_maf:  # the masked affine autoregressive layer
                t = F.linear(x, w_in[b], p["b_in"][b])
                r = F.linear(F.relu(t), w_0[b], p["b_0"][b])
                t = t + F.linear(F.relu(r), w_1[b], p["b_1"][b])
                raw = F.linear(t, w_scale[b], p["b_scale"][b])
                scale = torch.where(self.maf_cols, F.softplus(raw) + 1e-3, 1.0)
                x = x * scale + F.linear(t, w_shift[b], b_shift[b])
                logd = logd + torch.log(scale)
                x = x[:, self.perm]  # within variables: the columns' owners stay put
        return x, (logd + const) @ self.member
