r"""The multi-scale architecture (Dinh et al. 2017, *Density estimation using Real NVP*, section 3.6; Kingma and
Dhariwal 2018, *Glow*, section 2.2).

A deep flow over images stays affordable by factoring out half of the channels at the end of every scale: they go
straight to the latent, and only the other half is transformed further. With levels :math:`g_1, \dots, g_L`,

.. math::

    (h_1, z_1) = \mathrm{split}\big(g_1(x)\big), \quad (h_2, z_2) = \mathrm{split}\big(g_2(h_1)\big), \quad \dots,
    \quad z_L = g_L(h_{L-1}), \qquad f(x) = (z_1, \dots, z_L),

where :math:`\mathrm{split}` keeps the first :math:`\lfloor C/2 \rfloor` channels as :math:`h_i` and factors out the
rest as :math:`z_i`. The latent is the concatenation of the flattened :math:`z_i`, a vector of :math:`C H W`
coordinates, and the log-det is the sum of the levels'. Glow's learned prior of the factored-out channels,
:math:`z_i \sim \mathcal N(\mu(h_i), \sigma(h_i))`, is an affine channel coupling at the end of :math:`g_i` followed
by this standard split.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

from .base import Bijection

__all__ = ["Multiscale"]


class Multiscale(Bijection):
    """Levels of image bijections, half of the channels factored out to the latent after each level but the last.

    Args:
        levels: the bijections :math:`g_1, \\dots, g_L`. Each maps an image to an image (its ``latent_shape`` is
            ``(C_i, H_i, W_i)``; the last level's may be any shape), and level :math:`i + 1` takes the
            :math:`\\lfloor C_i / 2 \\rfloor` channels that level :math:`i` keeps.
    """

    def __init__(self, levels: Sequence[Bijection]) -> None:
        levels = list(levels)
        if not levels:
            raise ValueError("Multiscale needs at least one level")
        sizes: list[int] = []
        factored: list[torch.Size] = []
        for i, (level, following) in enumerate(pairwise(levels)):
            shape = level.latent_shape
            if len(shape) != 3 or shape[0] < 2:
                raise ValueError(
                    f"Multiscale level {i} must output images of at least 2 channels to split; got {tuple(shape)}"
                )
            kept = torch.Size((shape[0] // 2, *shape[1:]))
            if following.event_shape != kept:
                raise ValueError(
                    f"Multiscale level {i + 1} expects {tuple(following.event_shape)}, but level {i} keeps "
                    f"{tuple(kept)}"
                )
            factored.append(torch.Size((shape[0] - kept[0], *shape[1:])))
            sizes.append(factored[-1].numel())
        sizes.append(levels[-1].latent_shape.numel())
        context_shapes = {level.context_shape for level in levels if level.context_shape is not None}
        if len(context_shapes) > 1:
            raise ValueError(f"Multiscale levels disagree on context_shape: {sorted(map(tuple, context_shapes))}")
        context_shape = context_shapes.pop() if context_shapes else None
        super().__init__(levels[0].event_shape, context_shape, sum(sizes))
        self.levels = nn.ModuleList(levels)
        self.factored_shapes = factored
        self.sizes = sizes

    @property
    def domain(self) -> tuple[float, float] | None:
        return self.levels[0].domain

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(self.batch_shape(x))
        latents = []
        h = x
        for i, level in enumerate(self.levels):
            h, log_det = level(h, context)
            total = total + log_det
            if i < len(self.factored_shapes):
                kept = h.shape[-3] // 2
                latents.append(h[..., kept:, :, :].flatten(-3))
                h = h[..., :kept, :, :]
        latents.append(h.flatten(h.dim() - len(self.levels[-1].latent_shape)))
        return torch.cat(latents, dim=-1), total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        parts = z.split(self.sizes, dim=-1)
        total = z.new_zeros(z.shape[:-1])
        h = parts[-1].unflatten(-1, self.levels[-1].latent_shape)
        for i in reversed(range(len(self.levels))):
            if i < len(self.factored_shapes):
                h = torch.cat([h, parts[i].unflatten(-1, self.factored_shapes[i])], dim=-3)
            h, log_det = self.levels[i].inverse(h, context)
            total = total + log_det
        return h, total
