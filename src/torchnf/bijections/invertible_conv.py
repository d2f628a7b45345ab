r"""The invertible 1×1 convolution of Glow (Kingma and Dhariwal 2018, *Glow: Generative flow with invertible 1x1
convolutions*, section 3.2).

One learned invertible matrix :math:`W \in \mathbb{R}^{C \times C}` mixes the channels of every pixel:

.. math::

    z_{:, h, w} = W x_{:, h, w} + b, \qquad \log|\det J| = H \cdot W_{\mathrm{px}} \cdot \log|\det W|,

with :math:`W = P L U` LU-parameterized (:class:`~torchnf.bijections.LULinear`), so the log-determinant costs
:math:`O(C)` and the inverse two triangular solves. It generalizes the channel permutations of Real NVP.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from .base import Bijection, ShapeLike
from .linear import LULinear
from .squeeze import image_shape

__all__ = ["InvertibleConv1x1"]


class InvertibleConv1x1(Bijection):
    """A learned invertible mixing of the channels of every pixel, ``(C, H, W) -> (C, H, W)``.

    Args:
        event_shape: ``(C, H, W)``.
        init: ``"orthogonal"`` (a random rotation, as in Glow) or ``"identity"``.
    """

    def __init__(self, event_shape: ShapeLike, init: Literal["orthogonal", "identity"] = "orthogonal") -> None:
        channels, height, width = image_shape(event_shape, "InvertibleConv1x1")
        super().__init__((channels, height, width))
        self.linear = LULinear(channels, init)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z, log_det = self.linear(x.movedim(-3, -1))
        return z.movedim(-1, -3), log_det.sum((-2, -1))

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, log_det = self.linear.inverse(z.movedim(-3, -1))
        return x.movedim(-1, -3), log_det.sum((-2, -1))
