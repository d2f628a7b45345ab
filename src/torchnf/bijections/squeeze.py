r"""Squeezing: trading spatial resolution for channels (Dinh et al. 2017, *Density estimation using Real NVP*,
section 3.6).

Each :math:`f \times f` block of pixels becomes :math:`f^2` channels of one pixel:

.. math::

    z_{c f^2 + i f + j,\ h,\ w} = x_{c,\ f h + i,\ f w + j}, \qquad (C, H, W) \mapsto (f^2 C, H / f, W / f),

a permutation of the coordinates, so :math:`\log|\det J| = 0`. It is :func:`torch.nn.functional.pixel_unshuffle`
(inverse: ``pixel_shuffle``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import Bijection, ShapeLike, as_shape

__all__ = ["Squeeze", "image_shape"]


def image_shape(event_shape: ShapeLike, what: str) -> tuple[int, int, int]:
    """``event_shape`` as ``(C, H, W)``, refusing shapes that are not images."""
    shape = as_shape(event_shape)
    if len(shape) != 3:
        raise ValueError(f"{what} acts on images of shape (C, H, W); got event_shape {tuple(shape)}")
    channels, height, width = shape
    return channels, height, width


class Squeeze(Bijection):
    """Space to channels: ``(C, H, W) -> (f² C, H / f, W / f)``; volume-preserving.

    Args:
        event_shape: ``(C, H, W)``, with ``H`` and ``W`` divisible by ``factor``.
        factor: the side ``f`` of the pixel blocks that become channels.

    Example:
        >>> import torch
        >>> squeeze = Squeeze((1, 4, 4))
        >>> squeeze(torch.arange(16.0).reshape(1, 1, 4, 4))[0][0, :, 0, 0]
        tensor([0., 1., 4., 5.])
    """

    def __init__(self, event_shape: ShapeLike, factor: int = 2) -> None:
        channels, height, width = image_shape(event_shape, "Squeeze")
        if not isinstance(factor, int) or factor < 2:
            raise ValueError(f"the squeeze factor must be an int of at least 2, got {factor!r}")
        if height % factor or width % factor:
            raise ValueError(f"Squeeze by {factor} needs H and W divisible by {factor}; got {(height, width)}")
        latent = (channels * factor**2, height // factor, width // factor)
        super().__init__((channels, height, width), latent_shape=latent)
        self.factor = factor

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return F.pixel_unshuffle(x, self.factor), x.new_zeros(self.batch_shape(x))

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return F.pixel_shuffle(z, self.factor), z.new_zeros(z.shape[: z.dim() - 3])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, factor={self.factor}"
