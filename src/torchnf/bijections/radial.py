r"""Radial flows (Rezende and Mohamed 2015, *Variational inference with normalizing flows*, section 4.1).

A radial layer contracts or expands space around a centre :math:`x_0`:

.. math::

    f(x) = x + \beta\, h(\alpha, r)\,(x - x_0), \qquad h(\alpha, r) = \frac{1}{\alpha + r}, \qquad r = \|x - x_0\|,

    \log|\det J_f(x)| = (D - 1)\log\big(1 + \beta h\big) + \log\big(1 + \beta h + \beta h'(\alpha, r)\, r\big),
    \qquad h' = -\frac{1}{(\alpha + r)^2}.

**Invertibility** (their appendix A.2). The map keeps directions from :math:`x_0` and sends the radius :math:`r`
to :math:`\rho(r) = r\,(1 + \beta h)`, strictly increasing when :math:`\beta > -\alpha`. For any raw parameters
:math:`\hat\alpha, \hat\beta` we take :math:`\alpha = \operatorname{softplus}(\hat\alpha) > 0` and
:math:`\beta = -\alpha + \sigma` with :math:`\sigma = \operatorname{softplus}(\hat\beta) > 0`. In terms of
:math:`\sigma = \alpha + \beta` every factor is a sum of positive terms:

.. math::

    1 + \beta h = \frac{r + \sigma}{\alpha + r}, \qquad
    1 + \beta h + \beta h' r = \frac{r^2 + 2\alpha r + \sigma\alpha}{(\alpha + r)^2}.

**Inverse** in closed form. Given :math:`y`, the radius :math:`\rho = \|y - x_0\|` gives :math:`r` as the positive
root of :math:`r^2 + (\sigma - \rho)\,r - \rho\alpha = 0`, evaluated without cancellation as
:math:`r = (|\rho - \sigma| + S)/2` when :math:`\rho \ge \sigma` and :math:`r = 2\rho\alpha/(|\rho - \sigma| + S)`
otherwise, :math:`S = \sqrt{(\rho - \sigma)^2 + 4\rho\alpha}`; then :math:`x = x_0 + (y - x_0)(\alpha + r)/(r +
\sigma)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.mlp import Activation
from .base import ShapeLike, as_shape
from .planar import AmortizedBijection

__all__ = ["RadialTransform"]


class RadialTransform(AmortizedBijection):
    r"""The radial flow :math:`f(x) = x + \beta (x - x_0)/(\alpha + \|x - x_0\|)` with :math:`\alpha > 0`,
    :math:`\beta > -\alpha` (Rezende and Mohamed 2015, *Variational inference with normalizing flows*, section 4.1
    and appendix A.2).

    Both directions are closed form (the inverse solves a quadratic in the radius); see the module docstring. The
    layer starts as the identity (:math:`\beta = 0`) around a random centre :math:`x_0 \sim N(0, I)`.

    Args:
        event_shape: the number of dimensions ``D`` (or ``(D,)``).
        context_shape: shape of a context, or ``None``: with one, a network of the flattened context offsets the
            raw parameters :math:`(x_0, \hat\alpha, \hat\beta)`.
        hidden: hidden widths of that network.
        activation: its nonlinearity.
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        hidden: Sequence[int] = (64,),
        activation: Activation = nn.ReLU,
    ) -> None:
        features = as_shape(event_shape).numel()
        raw = {
            "center": torch.randn(features, dtype=torch.float64),
            "raw_alpha": torch.zeros((), dtype=torch.float64),
            "raw_beta": torch.zeros((), dtype=torch.float64),  # equal raw values: beta = 0
        }
        super().__init__(event_shape, context_shape, raw, hidden, activation)

    def coefficients(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        r"""``(x0, alpha, sigma)`` for a batch ``x``, with :math:`\sigma = \alpha + \beta > 0`: ``x0`` of shape
        ``(D,)`` or ``(*batch, D)``, ``alpha`` and ``sigma`` of shape ``()`` or ``(*batch,)``."""
        center, alpha, beta = self.raw_parameters(x, context)
        return center, F.softplus(alpha).squeeze(-1), F.softplus(beta).squeeze(-1)

    def _log_det(self, r: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """The forward log-det at radius ``r``."""
        log_denominator = torch.log(alpha + r)
        radial = torch.log(r * (r + 2 * alpha) + sigma * alpha) - 2 * log_denominator
        return (self.features - 1) * (torch.log(r + sigma) - log_denominator) + radial

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        center, alpha, sigma = self.coefficients(x, context)
        offset = x - center
        r = torch.linalg.vector_norm(offset, dim=-1)
        z = center + offset * ((r + sigma) / (alpha + r)).unsqueeze(-1)
        return z, self._log_det(r, alpha, sigma)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        center, alpha, sigma = self.coefficients(z, context)
        offset = z - center
        rho = torch.linalg.vector_norm(offset, dim=-1)
        gap = rho - sigma
        total = gap.abs() + torch.sqrt(gap.square() + 4 * rho * alpha)
        r = torch.where(gap >= 0, total / 2, 2 * rho * alpha / total)
        x = center + offset * ((alpha + r) / (r + sigma)).unsqueeze(-1)
        return x, -self._log_det(r, alpha, sigma)
