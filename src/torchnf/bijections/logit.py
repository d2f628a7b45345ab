r"""The logit pre-transform of image flows (Dinh et al. 2017, *Density estimation using Real NVP*, section 4.1).

Data on an interval :math:`(a, b)` (pixel intensities) are mapped to the real line by

.. math::

    y = \alpha + (1 - 2\alpha)\,\frac{x - a}{b - a}, \qquad z = \log y - \log(1 - y), \qquad
    \log|\det J| = \sum_i \Big(\log(1 - 2\alpha) - \log(b - a) - \log y_i - \log(1 - y_i)\Big),

where the margin :math:`\alpha` keeps the boundary values :math:`x = a` and :math:`x = b` finite and well
conditioned. Its domain is the open interval on which :math:`0 < y < 1`; outside it the density is zero, so
``forward`` returns a log-det of :math:`-\infty` (and a finite placeholder output).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Bijection, ShapeLike

__all__ = ["Logit"]


class Logit(Bijection):
    r"""Map the box :math:`(a, b)^D` (widened by the margin :math:`\alpha`) onto :math:`\mathbb{R}^D`.

    Args:
        event_shape: shape of one input point (e.g. ``(C, H, W)``).
        low: :math:`a`, the lowest data value.
        high: :math:`b`, the highest data value.
        alpha: the margin :math:`\alpha \in [0, 1/2)`; 0 is the plain logit of :math:`(x - a)/(b - a)`.

    Example:
        >>> import torch
        >>> logit = Logit(2, alpha=0.0)
        >>> logit(torch.tensor([[0.5, 0.75]]))[0]
        tensor([[0.0000, 1.0986]])
    """

    def __init__(self, event_shape: ShapeLike, low: float = 0.0, high: float = 1.0, alpha: float = 0.05) -> None:
        super().__init__(event_shape)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"Logit needs finite low < high, got low={low}, high={high}")
        if not 0 <= alpha < 0.5:
            raise ValueError(f"alpha must lie in [0, 0.5), got {alpha}")
        self.low, self.high, self.alpha = float(low), float(high), float(alpha)
        self.log_scale = math.log1p(-2 * alpha) - math.log(high - low)

    @property
    def domain(self) -> tuple[float, float]:
        margin = self.alpha / (1 - 2 * self.alpha) * (self.high - self.low)
        return self.low - margin, self.high + margin

    def _sum(self, elementwise: Tensor) -> Tensor:
        return elementwise.flatten(elementwise.dim() - len(self.event_shape)).sum(-1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y = self.alpha + (1 - 2 * self.alpha) * (x - self.low) / (self.high - self.low)
        inside = (y > 0) & (y < 1)
        y = torch.where(inside, y, 0.5)  # outside the domain: a finite placeholder, and a log-det of -inf below
        z = torch.log(y) - torch.log1p(-y)
        log_det = self._sum(self.log_scale - torch.log(y) - torch.log1p(-y))
        outside = ~inside.flatten(x.dim() - len(self.event_shape)).all(-1)
        return z, log_det.masked_fill(outside, -math.inf)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = self.low + (self.high - self.low) * (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)
        return x, self._sum(F.logsigmoid(z) + F.logsigmoid(-z) - self.log_scale)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, low={self.low}, high={self.high}, alpha={self.alpha}"
