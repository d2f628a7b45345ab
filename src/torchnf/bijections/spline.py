r"""An elementwise monotone spline with free knots and linear tails."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..transformers.splines import locate_bins, rational_quadratic, rational_quadratic_inverse
from .base import Bijection

__all__ = ["ElementwiseSpline"]


class ElementwiseSpline(Bijection):
    r"""A monotone rational-quadratic spline per dimension, with its own knots, and linear tails.

    Dimension :math:`i` has knots :math:`x_{i,0} < \dots < x_{i,M-1}`, :math:`y_{i,0} < \dots < y_{i,M-1}` and
    derivatives :math:`\delta_{i,j} > 0`. Between knots it is the rational-quadratic spline of Durkan et al. 2019,
    *Neural Spline Flows* (see :class:`~torchnf.transformers.RationalQuadraticSpline`); outside them it is linear,

    .. math::

        z_i = y_{i,0} + \delta_{i,0}\,(x_i - x_{i,0}) \quad (x_i < x_{i,0}), \qquad
        z_i = y_{i,M-1} + \delta_{i,M-1}\,(x_i - x_{i,M-1}) \quad (x_i > x_{i,M-1}),

    so the map is a :math:`C^1` bijection of the real line with :math:`\log|\det J| = \sum_i \log z_i'(x_i)`.

    The knots are free parameters, not a conditioner's output: :class:`~torchnf.architectures.SINF` sets them from
    data (:meth:`set_knots`), and gradient training moves them while keeping them ordered, since they are stored
    as a first knot plus log-spacings, and the derivatives as logs. A new spline is the identity.

    Args:
        features: the number of dimensions :math:`D`.
        knots: the number of knots :math:`M \ge 2` per dimension.
    """

    def __init__(self, features: int, knots: int = 32) -> None:
        super().__init__(features)
        if len(self.event_shape) != 1:
            raise ValueError(f"ElementwiseSpline acts on vectors; got {features!r} features")
        if isinstance(knots, bool) or not isinstance(knots, int) or knots < 2:
            raise ValueError(f"knots must be an integer >= 2, got {knots!r}")
        self.knots = knots
        grid = torch.linspace(-3.0, 3.0, knots).expand(self.event_shape[0], knots)
        self.x_start = nn.Parameter(torch.empty(self.event_shape[0]))
        self.x_log_widths = nn.Parameter(torch.empty(self.event_shape[0], knots - 1))
        self.y_start = nn.Parameter(torch.empty(self.event_shape[0]))
        self.y_log_heights = nn.Parameter(torch.empty(self.event_shape[0], knots - 1))
        self.log_derivatives = nn.Parameter(torch.empty(self.event_shape[0], knots))
        self.set_knots(grid, grid, torch.ones_like(grid))

    @torch.no_grad()
    def set_knots(self, knot_x: Tensor, knot_y: Tensor, derivatives: Tensor) -> None:
        """Set the knots ``(D, M)`` (strictly increasing along the last axis) and their positive derivatives."""
        shape = (self.event_shape[0], self.knots)
        for name, t in (("knot_x", knot_x), ("knot_y", knot_y), ("derivatives", derivatives)):
            if t.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} must be finite")
        widths, heights = knot_x.diff(dim=-1), knot_y.diff(dim=-1)
        if (widths <= 0).any() or (heights <= 0).any():
            raise ValueError("knot_x and knot_y must be strictly increasing along the last axis")
        if (derivatives <= 0).any():
            raise ValueError("derivatives must be positive")
        self.x_start.copy_(knot_x[:, 0])
        self.x_log_widths.copy_(widths.log())
        self.y_start.copy_(knot_y[:, 0])
        self.y_log_heights.copy_(heights.log())
        self.log_derivatives.copy_(derivatives.log())

    def knot_values(self) -> tuple[Tensor, Tensor, Tensor]:
        """The knots :math:`x`, :math:`y` and derivatives :math:`\\delta`, each of shape ``(D, M)``."""
        knot_x = self.x_start.unsqueeze(-1) + F.pad(self.x_log_widths.exp().cumsum(-1), (1, 0))
        knot_y = self.y_start.unsqueeze(-1) + F.pad(self.y_log_heights.exp().cumsum(-1), (1, 0))
        return knot_x, knot_y, self.log_derivatives.exp()

    def _map(self, v: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        knot_x, knot_y, derivatives = self.knot_values()
        knots_in, knots_out = (knot_y, knot_x) if inverse else (knot_x, knot_y)
        first, last = knots_in[:, 0], knots_in[:, -1]
        # The spline runs on a clamped copy, so tail points give finite values and gradients in the discarded branch.
        clamped = torch.maximum(torch.minimum(v, last), first)
        bin_ = locate_bins(clamped, knot_x, knot_y, derivatives, inverse=inverse)
        spline = rational_quadratic_inverse if inverse else rational_quadratic
        inside, log_derivative = spline(clamped, bin_)
        slope_low, slope_high = derivatives[:, 0], derivatives[:, -1]
        if inverse:
            slope_low, slope_high = slope_low.reciprocal(), slope_high.reciprocal()
        low, high = v < first, v > last
        out = torch.where(low, knots_out[:, 0] + slope_low * (v - first), inside)
        out = torch.where(high, knots_out[:, -1] + slope_high * (v - last), out)
        log_derivative = torch.where(low, slope_low.log(), torch.where(high, slope_high.log(), log_derivative))
        return out, log_derivative.sum(-1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._map(x, inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._map(z, inverse=True)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, knots={self.knots}"
