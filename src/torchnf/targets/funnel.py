r"""Neal's funnel: a hierarchical density whose scale changes by orders of magnitude from its neck to its mouth.

No single step size suits a sampler everywhere in it, and no single covariance suits a variational family.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .._validation import as_sample_shape
from .base import Target, check_dim, check_positive, gaussian_log_normalizer

__all__ = ["NealFunnel"]


class NealFunnel(Target):
    r"""Neal's funnel: a scale :math:`v` (the first coordinate) and :math:`d - 1` coordinates whose spread it sets,

    .. math::
        v \sim \mathcal N(0, s^2), \qquad x_i \mid v \sim \mathcal N(0, e^{v}) \quad (i = 2, \dots, d),

        \log\pi(v, x) = -\frac{v^2}{2s^2} - \log s - \sum_{i=2}^d \Big(\frac{x_i^2 e^{-v}}{2} + \frac v2\Big)
            - \frac d2 \log 2\pi

    (Neal 2003, "Slice sampling", *The Annals of Statistics*; there :math:`d = 10`, :math:`s = 3`). The density is
    normalized (:attr:`log_normalizer` is 0) and sampled exactly; its mean is 0, the variance of :math:`v` is
    :math:`s^2` and that of each :math:`x_i` is :math:`\mathbb E[e^v] = e^{s^2/2}`. Where :math:`x_i^2 e^{-v}`
    exceeds the dtype's range (:math:`v \ll 0`, :math:`x_i \ne 0`) the log-density is :math:`-\infty`, as its value
    is; it is never NaN at a finite point.

    Args:
        dim: the number of coordinates :math:`d \ge 2`.
        scale: the standard deviation :math:`s > 0` of :math:`v`.

    Example:
        >>> target = NealFunnel(dim=3, scale=3.0)
        >>> round(target.log_prob(torch.zeros(3)).item(), 4)  # -log 3 - 1.5 log 2 pi
        -3.8554
        >>> target.sample(4, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 3])
    """

    def __init__(self, dim: int = 10, scale: float = 3.0) -> None:
        super().__init__(check_dim(dim, 2))
        self.scale = check_positive(scale, "scale")

    def log_prob(self, x: Tensor) -> Tensor:
        self._check_points(x)
        v, rest = x[..., 0], x[..., 1:]
        # x_i e^{-v/2}, with the exponent clamped below the dtype's overflow: where the clamp acts the square is +inf
        # anyway (or 0 at x_i = 0), and no 0 * inf makes a NaN, in the value or in the gradient.
        factor = torch.exp((-0.5 * v).clamp(max=math.log(torch.finfo(x.dtype).max) - 1))
        quadratic = (rest * factor.unsqueeze(-1)).square().sum(-1)
        log_norm = gaussian_log_normalizer(self.dim, math.log(self.scale))
        return -0.5 * (v / self.scale).square() - 0.5 * quadratic - 0.5 * (self.dim - 1) * v - log_norm

    @property
    def log_normalizer(self) -> float:
        return 0.0

    @property
    def mean(self) -> Tensor:
        return self._as_tensor([0.0] * self.dim)

    @property
    def variance(self) -> Tensor:
        return self._as_tensor([self.scale**2] + [math.exp(0.5 * self.scale**2)] * (self.dim - 1))

    def sample(self, n: int | Sequence[int], generator: torch.Generator | None = None) -> Tensor:
        ref = self._reference()
        shape = as_sample_shape(n)
        eps = torch.randn(*shape, self.dim, generator=generator, dtype=ref.dtype, device=ref.device)
        v = self.scale * eps[..., :1]
        return torch.cat([v, torch.exp(0.5 * v) * eps[..., 1:]], dim=-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scale={self.scale:g}"
