r"""Monotone spline transformers with identity tails.

Both splines map :math:`[-B, B]` onto itself through :math:`K` bins whose knots :math:`(x_k, y_k)`, :math:`x_0 =
y_0 = -B`, :math:`x_K = y_K = B`, and knot derivatives :math:`\delta_k > 0` come from the conditioner, and are the
identity outside :math:`[-B, B]`. The raw parameters of one dimension are, in this order, :math:`K` bin widths,
:math:`K` bin heights and :math:`K - 1` interior knot derivatives (then, for the linear-rational spline, :math:`K`
intermediate-point locations). Widths (and heights) are :math:`2B\,(m + (1 - Km)\,\mathrm{softmax}(\cdot))` with a
minimum fraction :math:`m`; derivatives are :math:`\delta_{\min} + \mathrm{softplus}(\cdot + c)` with :math:`c` chosen
so that a raw 0 gives :math:`\delta = 1`; the boundary derivatives are :math:`\delta_0 = \delta_K = 1`, so the tails
join with a continuous derivative. All-zero raw parameters give equal bins and unit derivatives: the identity.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Transformer
from .simplex import softmax

__all__ = [
    "LinearRationalSpline",
    "RationalQuadraticSpline",
    "SplineBin",
    "locate_bins",
    "rational_quadratic",
    "rational_quadratic_inverse",
]


class SplineBin(NamedTuple):
    """The bin each point falls in: its index, end knots ``(x0, y0)``, ``(x1, y1)`` and end derivatives."""

    index: Tensor
    x0: Tensor
    x1: Tensor
    y0: Tensor
    y1: Tensor
    d0: Tensor
    d1: Tensor


def _gather(values: Tensor, index: Tensor) -> Tensor:
    """``values[..., index]`` per point, for ``values`` of shape ``(*shape, n)`` and ``index`` of ``shape``."""
    return values.gather(-1, index.unsqueeze(-1)).squeeze(-1)


def locate_bins(v: Tensor, knot_x: Tensor, knot_y: Tensor, derivatives: Tensor, inverse: bool = False) -> SplineBin:
    """The bin of each ``v`` (a vectorized search among the ``y`` knots if ``inverse``, else the ``x`` knots).

    The knots and derivatives have shape ``(*v.shape, K + 1)`` or a shape that broadcasts to it; points below the
    first interior knot fall in bin 0 and points above the last in bin ``K - 1``.
    """
    knot_x, knot_y, derivatives = (t.expand(*v.shape, t.shape[-1]) for t in (knot_x, knot_y, derivatives))
    interior = (knot_y if inverse else knot_x)[..., 1:-1]
    index = (v.unsqueeze(-1) >= interior).sum(-1)
    return SplineBin(index, *(_gather(t, i) for t in (knot_x, knot_y, derivatives) for i in (index, index + 1)))


def _rq_log_derivative(xi: Tensor, slope: Tensor, d0: Tensor, d1: Tensor) -> tuple[Tensor, Tensor]:
    r"""The denominator :math:`s + \beta\xi(1-\xi)` (written as a sum of positive terms) and ``log dy/dx``."""
    mix = xi * (1 - xi)
    denominator = slope * (xi.square() + (1 - xi).square()) + (d0 + d1) * mix
    numerator = d1 * xi.square() + 2 * slope * mix + d0 * (1 - xi).square()
    return denominator, 2 * slope.log() + numerator.log() - 2 * denominator.log()


def rational_quadratic(x: Tensor, bin_: SplineBin) -> tuple[Tensor, Tensor]:
    """The rational-quadratic segment of each point's bin at ``x`` (in the bin): ``(y, log dy/dx)``; see
    :class:`RationalQuadraticSpline` for the formulas."""
    width, height = bin_.x1 - bin_.x0, bin_.y1 - bin_.y0
    slope = height / width
    xi = ((x - bin_.x0) / width).clamp(0, 1)
    denominator, log_derivative = _rq_log_derivative(xi, slope, bin_.d0, bin_.d1)
    # y - y_k and y_{k+1} - y, each a product of non-negative terms; the nearer knot is exact at the ends.
    from_left = height * xi * (slope * xi + bin_.d0 * (1 - xi)) / denominator
    from_right = height * (1 - xi) * (slope * (1 - xi) + bin_.d1 * xi) / denominator
    return torch.where(xi <= 0.5, bin_.y0 + from_left, bin_.y1 - from_right), log_derivative


def rational_quadratic_inverse(y: Tensor, bin_: SplineBin) -> tuple[Tensor, Tensor]:
    """The inverse of :func:`rational_quadratic` at ``y`` (in the bin): ``(x, log dx/dy)``."""
    width, height = bin_.x1 - bin_.x0, bin_.y1 - bin_.y0
    slope = height / width
    z = y - bin_.y0
    beta = bin_.d0 + bin_.d1 - 2 * slope
    a = height * (slope - bin_.d0) + z * beta
    b = height * bin_.d0 - z * beta
    c = -slope * z
    root = (b.square() - 4 * a * c).clamp_min(0).sqrt()
    xi = (2 * c / (-b - root)).clamp(0, 1)  # -b - root < 0: if b < 0 then a > 0 (a + b = h s), so root > -b
    _, log_derivative = _rq_log_derivative(xi, slope, bin_.d0, bin_.d1)
    return torch.where(xi <= 0.5, bin_.x0 + width * xi, bin_.x1 - width * (1 - xi)), -log_derivative


class _Spline(Transformer):
    """The shared part of the splines: hyperparameters, knots, bin search and identity tails."""

    extra_params_per_bin = 0

    def __init__(self, bins: int, bound: float, min_width: float, min_height: float, min_derivative: float) -> None:
        super().__init__()
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
        if not 0 < bound < math.inf:
            raise ValueError(f"bound must be positive and finite, got {bound!r}")
        for name, value in (("min_width", min_width), ("min_height", min_height)):
            if not 0 < value * bins < 1:
                raise ValueError(f"{name} must be positive with bins * {name} < 1, got {value!r} with {bins} bins")
        if not 0 < min_derivative < 1:
            raise ValueError(f"min_derivative must lie in (0, 1), got {min_derivative!r}")
        self.bins, self.bound, self.min_derivative = bins, float(bound), float(min_derivative)
        self.min_width, self.min_height = float(min_width), float(min_height)
        self.n_params = (3 + self.extra_params_per_bin) * bins - 1
        self._derivative_shift = math.log(math.expm1(1.0 - min_derivative))  # softplus(shift) = 1 - min_derivative

    def _positions(self, raw: Tensor, minimum: float) -> Tensor:
        """Knot positions ``(*shape, K + 1)`` from raw bin sizes, from exactly ``-B`` to exactly ``B``."""
        fractions = minimum + (1 - self.bins * minimum) * softmax(raw)
        knots = F.pad(torch.cumsum(fractions, dim=-1) * (2 * self.bound) - self.bound, (1, 0), value=-self.bound)
        knots[..., -1] = self.bound  # exactly, where the sum of the fractions may round off 1
        return knots

    def knots(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The knots ``(x_k)``, ``(y_k)`` and derivatives ``(delta_k)``, each ``(*params.shape[:-1], K + 1)``."""
        if params.shape[-1:] != (self.n_params,):
            name, n = type(self).__name__, self.n_params
            raise ValueError(f"{name} needs {n} parameters per dimension (last axis), got {params.shape[-1:]}")
        k = self.bins
        derivatives = self.min_derivative + F.softplus(params[..., 2 * k : 3 * k - 1] + self._derivative_shift)
        return (
            self._positions(params[..., :k], self.min_width),
            self._positions(params[..., k : 2 * k], self.min_height),
            F.pad(derivatives, (1, 1), value=1.0),
        )

    def _map(self, v: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        if params.shape != (*v.shape, self.n_params):
            raise ValueError(f"params must have shape {(*v.shape, self.n_params)}, got {tuple(params.shape)}")
        # The spline is evaluated on a clamped copy, so that points in the tails give finite values and gradients in
        # the branch that torch.where discards.
        inside = (v >= -self.bound) & (v <= self.bound)
        clamped = v.clamp(-self.bound, self.bound)
        bin_ = locate_bins(clamped, *self.knots(params), inverse=inverse)
        spline = self._spline_inverse if inverse else self._spline_forward
        out, log_derivative = spline(clamped, bin_, params)
        return torch.where(inside, out, v), torch.where(inside, log_derivative, torch.zeros_like(v))

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return self._map(x, params, inverse=False)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return self._map(y, params, inverse=True)

    def _spline_forward(self, x: Tensor, bin_: SplineBin, params: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _spline_inverse(self, y: Tensor, bin_: SplineBin, params: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (
            f"bins={self.bins}, bound={self.bound}, min_width={self.min_width}, min_height={self.min_height}, "
            f"min_derivative={self.min_derivative}"
        )


class RationalQuadraticSpline(_Spline):
    r"""The monotone rational-quadratic spline of Durkan et al. 2019, *Neural Spline Flows* (section 3.1).

    In bin :math:`k`, with :math:`\xi = (x - x_k)/w_k \in [0, 1]`, width :math:`w_k`, height :math:`h_k` and slope
    :math:`s_k = h_k / w_k`,

    .. math::

        y = y_k + \frac{h_k\,[s_k \xi^2 + \delta_k \xi(1-\xi)]}{s_k + (\delta_{k+1} + \delta_k - 2 s_k)\,\xi(1-\xi)},
        \qquad
        \frac{dy}{dx} = \frac{s_k^2\,[\delta_{k+1}\xi^2 + 2 s_k \xi(1-\xi) + \delta_k (1-\xi)^2]}
        {[s_k + (\delta_{k+1} + \delta_k - 2 s_k)\,\xi(1-\xi)]^2}.

    The inverse solves :math:`a\xi^2 + b\xi + c = 0` with :math:`a = h_k(s_k - \delta_k) + z\beta`,
    :math:`b = h_k\delta_k - z\beta`, :math:`c = -s_k z`, :math:`z = y - y_k`, :math:`\beta = \delta_{k+1} +
    \delta_k - 2s_k`, by the form :math:`\xi = 2c / (-b - \sqrt{b^2 - 4ac})`, which stays accurate as
    :math:`a \to 0` (the formula's denominator is negative throughout the bin, where the discriminant is positive).

    Args:
        bins: the number of bins :math:`K`; :attr:`n_params` is :math:`3K - 1`.
        bound: the half-width :math:`B` of the spline's interval; the map is the identity outside it.
        min_width: the smallest bin width, as a fraction of :math:`2B`.
        min_height: the smallest bin height, as a fraction of :math:`2B`.
        min_derivative: the smallest interior knot derivative, in ``(0, 1)``.
    """

    def __init__(
        self,
        bins: int = 8,
        bound: float = 5.0,
        min_width: float = 1e-3,
        min_height: float = 1e-3,
        min_derivative: float = 1e-3,
    ) -> None:
        super().__init__(bins, bound, min_width, min_height, min_derivative)

    def _spline_forward(self, x: Tensor, bin_: SplineBin, params: Tensor) -> tuple[Tensor, Tensor]:
        return rational_quadratic(x, bin_)

    def _spline_inverse(self, y: Tensor, bin_: SplineBin, params: Tensor) -> tuple[Tensor, Tensor]:
        return rational_quadratic_inverse(y, bin_)


class LinearRationalSpline(_Spline):
    r"""The monotone linear-rational spline (LRS) of Dolatabadi, Erfani and Leckie 2020, *Invertible Generative
    Modeling using Linear Rational Splines* (section 3, after Fuhr and Kallay 1992).

    Bin :math:`k` is split at :math:`\phi = \lambda_k`, where :math:`\phi = (x - x_k)/(x_{k+1} - x_k) \in [0, 1]` and
    :math:`\lambda_k \in (0, 1)`, into two linear-rational pieces with weights :math:`w^{(k)} = \delta_k^{-1/2}`,
    :math:`w^{(k+1)} = \delta_{k+1}^{-1/2}` at the knots (their ratio is the paper's recursion :math:`w^{(k+1)} =
    w^{(k)}\sqrt{\delta_k/\delta_{k+1}}`; a common factor cancels) and, at the intermediate point,

    .. math::

        y_m = \frac{(1-\lambda_k) w^{(k)} y_k + \lambda_k w^{(k+1)} y_{k+1}}{(1-\lambda_k) w^{(k)} + \lambda_k
        w^{(k+1)}}, \qquad
        w^{(m)} = \frac{\lambda_k w^{(k)} \delta_k + (1-\lambda_k) w^{(k+1)} \delta_{k+1}}{s_k},

    with the bin's mean slope :math:`s_k = (y_{k+1} - y_k)/(x_{k+1} - x_k)`. Then

    .. math::

        y = \begin{cases}
        y_k + (y_m - y_k)\,\dfrac{w^{(m)}\phi}{w^{(k)}(\lambda_k - \phi) + w^{(m)}\phi} & \phi \le \lambda_k, \\[2ex]
        y_{k+1} - (y_{k+1} - y_m)\,\dfrac{w^{(m)}(1-\phi)}{w^{(m)}(1-\phi) + w^{(k+1)}(\phi - \lambda_k)}
        & \phi > \lambda_k,
        \end{cases}

    a monotone :math:`C^1` map with derivatives :math:`\delta_k`, :math:`\delta_{k+1}` at the knots. Each piece
    inverts in closed form: with :math:`t = (y - y_k)/(y_m - y_k)`, :math:`\phi = \lambda_k w^{(k)} t /
    (w^{(k)} t + w^{(m)}(1-t))`; with :math:`r = (y_{k+1} - y)/(y_{k+1} - y_m)`, :math:`1 - \phi = (1-\lambda_k)
    w^{(k+1)} r / (w^{(k+1)} r + w^{(m)}(1-r))`. The location is :math:`\lambda_k = \lambda_{\min} + (1 -
    2\lambda_{\min})\,\sigma(\cdot)`. With unit derivatives and equal bins all weights are 1 and the map is the
    identity, whatever :math:`\lambda_k`.

    Args:
        bins: the number of bins :math:`K`; :attr:`n_params` is :math:`4K - 1` (the last :math:`K` are the raw
            locations of the intermediate points).
        bound: the half-width :math:`B` of the spline's interval; the map is the identity outside it.
        min_width: the smallest bin width, as a fraction of :math:`2B`.
        min_height: the smallest bin height, as a fraction of :math:`2B`.
        min_derivative: the smallest interior knot derivative, in ``(0, 1)``.
        min_lambda: the smallest distance of an intermediate point from its bin's ends, as a fraction of the bin,
            in ``(0, 1/2)``.
    """

    extra_params_per_bin = 1

    def __init__(
        self,
        bins: int = 8,
        bound: float = 5.0,
        min_width: float = 1e-3,
        min_height: float = 1e-3,
        min_derivative: float = 1e-3,
        min_lambda: float = 1e-2,
    ) -> None:
        super().__init__(bins, bound, min_width, min_height, min_derivative)
        if not 0 < min_lambda < 0.5:
            raise ValueError(f"min_lambda must lie in (0, 0.5), got {min_lambda!r}")
        self.min_lambda = float(min_lambda)

    def _pieces(self, bin_: SplineBin, params: Tensor) -> tuple[Tensor, ...]:
        """Per point: ``lambda``, the weights ``w_k``, ``w_m``, ``w_{k+1}`` and the rises ``y_m - y_k``,
        ``y_{k+1} - y_m`` (each computed as a product of positive terms, without cancellation)."""
        raw_lambda = _gather(params[..., 3 * self.bins - 1 :], bin_.index)
        lam = self.min_lambda + (1 - 2 * self.min_lambda) * torch.sigmoid(raw_lambda)
        height = bin_.y1 - bin_.y0
        slope = height / (bin_.x1 - bin_.x0)
        w0, w1 = bin_.d0.rsqrt(), bin_.d1.rsqrt()
        wm = (lam * bin_.d0.sqrt() + (1 - lam) * bin_.d1.sqrt()) / slope  # w0 * d0 = sqrt(d0)
        total = (1 - lam) * w0 + lam * w1
        return lam, w0, wm, w1, lam * w1 * height / total, (1 - lam) * w0 * height / total

    def _spline_forward(self, x: Tensor, bin_: SplineBin, params: Tensor) -> tuple[Tensor, Tensor]:
        lam, w0, wm, w1, rise0, rise1 = self._pieces(bin_, params)
        width = bin_.x1 - bin_.x0
        phi = ((x - bin_.x0) / width).clamp(0, 1)
        first = phi <= lam
        # Each piece is evaluated at its own points and at a safe stand-in (0) elsewhere.
        p = torch.where(first, phi, torch.zeros_like(phi))  # distance from the left knot
        q = torch.where(first, torch.zeros_like(phi), 1 - phi)  # distance from the right knot
        den0 = w0 * (lam - p) + wm * p
        den1 = wm * q + w1 * (1 - lam - q)
        y = torch.where(first, bin_.y0 + rise0 * wm * p / den0, bin_.y1 - rise1 * wm * q / den1)
        log_derivative = torch.where(
            first,
            (w0 * wm * lam * rise0).log() - 2 * den0.log(),
            (w1 * wm * (1 - lam) * rise1).log() - 2 * den1.log(),
        )
        return y, log_derivative - width.log()

    def _spline_inverse(self, y: Tensor, bin_: SplineBin, params: Tensor) -> tuple[Tensor, Tensor]:
        lam, w0, wm, w1, rise0, rise1 = self._pieces(bin_, params)
        width = bin_.x1 - bin_.x0
        first = y <= bin_.y0 + rise0
        t = torch.where(first, (y - bin_.y0) / rise0, torch.zeros_like(y)).clamp(0, 1)
        r = torch.where(first, torch.zeros_like(y), (bin_.y1 - y) / rise1).clamp(0, 1)
        den0 = w0 * t + wm * (1 - t)
        den1 = w1 * r + wm * (1 - r)
        x = torch.where(first, bin_.x0 + width * lam * w0 * t / den0, bin_.x1 - width * (1 - lam) * w1 * r / den1)
        log_derivative = torch.where(
            first,
            (lam * w0 * wm / rise0).log() - 2 * den0.log(),
            ((1 - lam) * w1 * wm / rise1).log() - 2 * den1.log(),
        )
        return x, log_derivative + width.log()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, min_lambda={self.min_lambda}"
