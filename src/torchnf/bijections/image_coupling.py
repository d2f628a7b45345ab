r"""Coupling layers over images (Dinh et al. 2017, *Density estimation using Real NVP*, section 3.4; Kingma and
Dhariwal 2018, *Glow*, section 3.3).

A binary mask :math:`b \in \{0, 1\}^{C \times H \times W}` keeps the pixels where :math:`b = 1` and transforms the
others elementwise, with parameters that a convolutional network computes from the kept pixels:

.. math::

    z = b \odot x + (1 - b) \odot \tau\big(x;\ \theta(b \odot x, c)\big), \qquad
    \log|\det J| = \sum_{i:\,b_i = 0} \log \tau'(x_i;\ \theta_i).

Two masks: the *checkerboard* keeps the pixels with :math:`h + w` even, in every channel (the network sees the
image with the transformed pixels zeroed); the *channel* mask keeps the first :math:`\lfloor C/2 \rfloor` channels
(the network sees only those). ``flip`` swaps kept and transformed. The transformer :math:`\tau` is any
:class:`~torchnf.transformers.Transformer`: affine (Real NVP, Glow), additive (NICE), or a spline.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..nn.conv import ConvNet
from ..nn.mlp import Activation
from ..transformers import Affine, Transformer
from .base import Bijection, ShapeLike
from .squeeze import image_shape

__all__ = ["ImageCoupling", "ImageMask", "image_mask"]

ImageMask = Literal["checkerboard", "channel"]


def image_mask(event_shape: ShapeLike, kind: ImageMask = "checkerboard", flip: bool = False) -> Tensor:
    """A boolean ``(C, H, W)`` mask of the pixels an image coupling keeps (``True``) and transforms (``False``)."""
    channels, height, width = image_shape(event_shape, "an image mask")
    if kind == "checkerboard":
        if height * width < 2:
            raise ValueError(f"a checkerboard mask needs at least 2 pixels, got an image of {height}x{width}")
        parity = (torch.arange(height)[:, None] + torch.arange(width)[None, :]) % 2 == 0
        keep = parity.expand(channels, height, width).clone()
    elif kind == "channel":
        if channels < 2:
            raise ValueError(f"a channel mask needs at least 2 channels, got {channels}")
        keep = (torch.arange(channels) < channels // 2)[:, None, None].expand(channels, height, width).clone()
    else:
        raise ValueError(f"unknown image mask {kind!r}; expected 'checkerboard' or 'channel'")
    return ~keep if flip else keep


class ImageCoupling(Bijection):
    """A coupling layer over images ``(C, H, W)`` with a convolutional conditioner.

    Args:
        event_shape: ``(C, H, W)``.
        transformer: the elementwise map of the transformed pixels (default :class:`~torchnf.transformers.Affine`).
        mask: ``"checkerboard"`` or ``"channel"`` (see the module docstring).
        flip: swap kept and transformed pixels.
        context_shape: shape of a context, or ``None``: a vector (e.g. a one-hot class label) biases the network's
            first layer, an image ``(C_c, H, W)`` is concatenated to its input channels.
        hidden_channels: channels of the network's hidden layers.
        blocks: residual blocks of the network.
        activation: a factory for the network's nonlinearity.
    """

    transformed: Tensor
    keep: Tensor

    def __init__(
        self,
        event_shape: ShapeLike,
        transformer: Transformer | None = None,
        mask: ImageMask = "checkerboard",
        flip: bool = False,
        context_shape: ShapeLike | None = None,
        hidden_channels: int = 64,
        blocks: int = 2,
        activation: Activation = nn.ReLU,
    ) -> None:
        channels, height, width = image_shape(event_shape, "ImageCoupling")
        super().__init__((channels, height, width), context_shape)
        keep = image_mask(self.event_shape, mask, flip)
        self.mask = mask
        self.transformer = Affine() if transformer is None else transformer
        self.register_buffer("keep", keep.to(torch.get_default_dtype()), persistent=False)
        self.register_buffer("transformed", (~keep).flatten().nonzero().flatten(), persistent=False)
        if mask == "channel":
            # the kept channels are one block, the first C//2 (or, flipped, the last C - C//2): slices split them
            n_first = channels // 2
            self.kept_slice, self.moved_slice = slice(0, n_first), slice(n_first, channels)
            if flip:
                self.kept_slice, self.moved_slice = self.moved_slice, self.kept_slice
            in_channels = self.kept_slice.stop - self.kept_slice.start
            out_channels = channels - in_channels
        else:
            in_channels, out_channels = channels, channels
        self.net = ConvNet(
            in_channels,
            out_channels * self.transformer.n_params,
            hidden_channels,
            blocks,
            activation,
            self.context_shape,
        )

    def _parameters_of_moved(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """The transformed pixels of ``x``, flattened ``(*batch, M)``, and their parameters ``(*batch, M, P)``."""
        if self.context_shape is not None:
            if context is None:
                raise ValueError("this coupling layer was built with a context_shape and needs a context")
            context = self.expand_context(context, self.batch_shape(x))
        kept = x[..., self.kept_slice, :, :] if self.mask == "channel" else x * self.keep
        params = self.net(kept, context)  # (*batch, C_out * P, H, W)
        params = params.unflatten(-3, (-1, self.transformer.n_params)).movedim(-3, -1).flatten(-4, -2)
        if self.mask == "channel":
            return x[..., self.moved_slice, :, :].flatten(-3), params
        return x.flatten(-3).index_select(-1, self.transformed), params.index_select(-2, self.transformed)

    def _join(self, x: Tensor, moved: Tensor) -> Tensor:
        """``x`` with its transformed pixels replaced by ``moved`` (flattened)."""
        if self.mask == "channel":
            moved = moved.unflatten(-1, (-1, *self.event_shape[1:]))
            kept = x[..., self.kept_slice, :, :]
            return torch.cat([moved, kept] if self.moved_slice.start == 0 else [kept, moved], dim=-3)
        return x.flatten(-3).index_copy(-1, self.transformed, moved).unflatten(-1, self.event_shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        moved, params = self._parameters_of_moved(x, context)
        z_moved, log_diag = self.transformer(moved, params)
        return self._join(x, z_moved), log_diag.sum(-1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        moved, params = self._parameters_of_moved(z, context)
        x_moved, log_diag = self.transformer.inverse(moved, params)
        return self._join(z, x_moved), log_diag.sum(-1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mask={self.mask!r}"
