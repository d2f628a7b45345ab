r"""Convolutional conditioner networks for image coupling layers.

A :class:`ConvNet` maps an image ``(C_in, H, W)`` to an image of parameters ``(C_out, H, W)`` of the same size:

.. math::

    h_0 = \mathrm{conv}_{3\times3}(x) + b(c), \qquad h_{k+1} = h_k + \mathrm{conv}_{3\times3}\big(\sigma(
    \mathrm{conv}_{3\times3}(\sigma(h_k)))\big), \qquad y = \mathrm{conv}_{3\times3}(\sigma(h_K)),

pre-activation residual blocks (He et al. 2016, *Identity mappings in deep residual networks*) as in the coupling
networks of Real NVP (Dinh et al. 2017, section 4.1), with the last convolution starting at zero so that a coupling
layer starts as the identity (Kingma and Dhariwal 2018, *Glow*, section 3.3). A context :math:`c` enters in one of
two ways: an image-shaped context ``(C_c, H, W)`` is concatenated to the input's channels (variational
dequantization conditions on the image itself), any other context is flattened and mapped by a linear layer to a
per-channel bias :math:`b(c)` of the first layer (a one-hot class label then selects a learned embedding).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .mlp import Activation

__all__ = ["ConvNet", "ConvResidualBlock"]


class ConvResidualBlock(nn.Module):
    r"""A pre-activation residual block :math:`h + \mathrm{conv}(\sigma(\mathrm{conv}(\sigma(h))))` of
    same-size 3×3 convolutions.

    Args:
        channels: channels in and out.
        activation: a factory for the nonlinearity :math:`\sigma`.
    """

    def __init__(self, channels: int, activation: Activation = nn.ReLU) -> None:
        super().__init__()
        self.net = nn.Sequential(
            activation(),
            nn.Conv2d(channels, channels, 3, padding=1),
            activation(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, h: Tensor) -> Tensor:
        return h + self.net(h)


class ConvNet(nn.Module):
    """A residual convolutional network from ``(*batch, in_channels, H, W)`` to ``(*batch, out_channels, H, W)``.

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the output image.
        hidden_channels: channels of the hidden layers.
        blocks: number of residual blocks between the first and last convolutions.
        activation: a factory for the nonlinearity.
        context_shape: shape of one context, or ``None``; a 3-D shape ``(C_c, H, W)`` is an image concatenated to
            the input's channels, any other shape a vector mapped to a bias of the first layer.
        zero_init: start the last convolution at zero, so the output starts at zero.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 64,
        blocks: int = 2,
        activation: Activation = nn.ReLU,
        context_shape: tuple[int, ...] | None = None,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        if min(in_channels, out_channels, hidden_channels) < 1 or blocks < 0:
            raise ValueError(
                f"a ConvNet needs positive channel counts and blocks >= 0, got in={in_channels}, out={out_channels}, "
                f"hidden={hidden_channels}, blocks={blocks}"
            )
        self.context_shape = None if context_shape is None else torch.Size(context_shape)
        self.image_context = self.context_shape is not None and len(self.context_shape) == 3
        context_channels = self.context_shape[0] if self.image_context else 0
        self.first = nn.Conv2d(in_channels + context_channels, hidden_channels, 3, padding=1)
        self.context_bias = (
            nn.Linear(self.context_shape.numel(), hidden_channels)
            if self.context_shape is not None and not self.image_context
            else None
        )
        self.blocks = nn.Sequential(*(ConvResidualBlock(hidden_channels, activation) for _ in range(blocks)))
        self.last = nn.Sequential(activation(), nn.Conv2d(hidden_channels, out_channels, 3, padding=1))
        if zero_init:
            nn.init.zeros_(self.last[1].weight)
            nn.init.zeros_(self.last[1].bias)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Map ``x`` of shape ``(*batch, in_channels, H, W)``; ``context`` has shape ``(*batch, *context_shape)``."""
        batch = x.shape[:-3]
        h = x.reshape(-1, *x.shape[-3:])
        if self.context_shape is not None:
            if context is None:
                raise ValueError("this network was built with a context_shape and needs a context")
            context = context.expand(*batch, *self.context_shape).reshape(h.shape[0], *self.context_shape)
            if self.image_context:
                h = torch.cat([h, context], dim=1)
        h = self.first(h)
        if self.context_bias is not None and context is not None:
            h = h + self.context_bias(context.flatten(1))[:, :, None, None]
        y = self.last(self.blocks(h))
        return y.reshape(*batch, *y.shape[1:])
