r"""Image presets: the multi-scale Real NVP and Glow, over images ``(C, H, W)``.

Both stack coupling layers with convolutional conditioners in levels; after every level but the last, half of the
channels are factored out to the latent (:class:`~torchnf.bijections.Multiscale`), so the latent is a vector of
:math:`C H W` coordinates. The coupling transformer is affine (the papers'), additive (NICE's, volume-preserving)
or a rational-quadratic spline (Durkan et al. 2019, *Neural spline flows*), the spline variants. Images are
usually dequantized and scaled to :math:`[0, 1)` first (:mod:`torchnf.dequantization`); the optional logit
pre-transform (:class:`~torchnf.bijections.Logit`) then maps them to the real line, with its exact log-det.
"""

from __future__ import annotations

from typing import Literal

from ..bijections import ActNorm, Bijection, Compose, ImageCoupling, InvertibleConv1x1, Logit, Multiscale, Squeeze
from ..bijections.base import ShapeLike
from ..bijections.image_coupling import ImageMask
from ..bijections.squeeze import image_shape
from ..transformers import Affine, RationalQuadraticSpline, Shift, Transformer
from .base import Preset, activation_factory

__all__ = ["Glow", "ImageCouplingKind", "MultiscaleRealNVP"]

ImageCouplingKind = Literal["affine", "additive", "spline"]
PreTransform = Literal["logit"] | None


def _transformer(kind: ImageCouplingKind, log_scale_bound: float, bins: int, bound: float) -> Transformer:
    if kind == "affine":
        return Affine(log_scale_bound)
    if kind == "additive":
        return Shift()
    if kind == "spline":
        return RationalQuadraticSpline(bins, bound)
    raise ValueError(f"unknown coupling {kind!r}; expected 'affine', 'additive' or 'spline'")


def _pre_transform(kind: PreTransform, event_shape: ShapeLike, alpha: float) -> list[Bijection]:
    if kind is None:
        return []
    if kind == "logit":
        return [Logit(event_shape, 0.0, 1.0, alpha)]
    raise ValueError(f"unknown pre_transform {kind!r}; expected 'logit' or None")


class _CouplingFactory:
    """Builds a preset's coupling layers, all with the same network and transformer settings."""

    def __init__(
        self,
        context_shape: ShapeLike | None,
        coupling: ImageCouplingKind,
        hidden_channels: int,
        blocks: int,
        activation: str,
        log_scale_bound: float,
        bins: int,
        bound: float,
    ) -> None:
        _transformer(coupling, log_scale_bound, bins, bound)  # refuse an unknown kind before building anything
        self.context_shape, self.kind, self.hidden_channels, self.blocks = (
            context_shape,
            coupling,
            hidden_channels,
            blocks,
        )
        self.activation = activation_factory(activation)
        self.transformer_settings = (log_scale_bound, bins, bound)

    def __call__(
        self, shape: ShapeLike, mask: ImageMask, flip: bool = False, kind: ImageCouplingKind | None = None
    ) -> ImageCoupling:
        transformer = _transformer(kind or self.kind, *self.transformer_settings)
        return ImageCoupling(
            shape, transformer, mask, flip, self.context_shape, self.hidden_channels, self.blocks, self.activation
        )


class MultiscaleRealNVP(Preset):
    r"""The multi-scale Real NVP (Dinh et al. 2017, *Density estimation using Real NVP*, section 4.1).

    Every level but the last applies ``steps`` checkerboard couplings (alternating masks), squeezes
    (:class:`~torchnf.bijections.Squeeze`), applies ``steps`` channel couplings (alternating) and factors out half
    of the channels; the last level applies ``steps + 1`` checkerboard couplings. Each coupling follows a
    per-channel ActNorm (the paper used batch normalization, whose training and evaluation maps differ).

    Args:
        event_shape: ``(C, H, W)``, with ``H`` and ``W`` divisible by ``2 ** (levels - 1)``.
        context_shape: shape of a context (a one-hot label makes a class-conditional flow), or ``None``.
        levels: number of scales.
        steps: couplings per mask kind and level.
        hidden_channels: channels of the coupling networks.
        blocks: residual blocks per coupling network.
        coupling: ``"affine"``, ``"additive"`` or ``"spline"`` transformers.
        activation: name of the networks' nonlinearity.
        pre_transform: ``"logit"`` (data in :math:`[0, 1]`, mapped to the real line) or ``None``.
        alpha: the logit's margin.
        log_scale_bound: bound of each affine layer's log-scale.
        bins: spline bins.
        bound: spline half-width :math:`B` (the identity outside :math:`[-B, B]`).

    Example:
        >>> import torch
        >>> from torchnf import Flow
        >>> flow = Flow(MultiscaleRealNVP((1, 8, 8), levels=2, steps=1, hidden_channels=8))
        >>> flow.bijection.latent_shape
        torch.Size([64])
        >>> flow.log_prob(torch.rand(3, 1, 8, 8)).shape
        torch.Size([3])
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        levels: int = 2,
        steps: int = 3,
        hidden_channels: int = 32,
        blocks: int = 2,
        coupling: ImageCouplingKind = "affine",
        activation: str = "relu",
        pre_transform: PreTransform = "logit",
        alpha: float = 0.05,
        log_scale_bound: float = 3.0,
        bins: int = 8,
        bound: float = 4.0,
    ) -> None:
        channels, height, width = image_shape(event_shape, "MultiscaleRealNVP")
        if levels < 1 or steps < 1:
            raise ValueError(f"MultiscaleRealNVP needs levels >= 1 and steps >= 1, got {levels} and {steps}")
        coupling_layer = _CouplingFactory(
            context_shape, coupling, hidden_channels, blocks, activation, log_scale_bound, bins, bound
        )
        shape = (channels, height, width)
        scales: list[Bijection] = []
        for level in range(levels):
            last = level == levels - 1
            parts: list[Bijection] = []
            for step in range(steps + 1 if last else steps):
                parts += [ActNorm(shape, (shape[0], 1, 1)), coupling_layer(shape, "checkerboard", step % 2 == 1)]
            if not last:
                parts.append(Squeeze(shape))
                shape = parts[-1].latent_shape
                for step in range(steps):
                    parts += [ActNorm(shape, (shape[0], 1, 1)), coupling_layer(shape, "channel", step % 2 == 1)]
                scales.append(Compose(parts))
                shape = (shape[0] // 2, shape[1], shape[2])
            else:
                scales.append(Compose(parts))
        super().__init__([*_pre_transform(pre_transform, event_shape, alpha), Multiscale(scales)])


class Glow(Preset):
    r"""Glow (Kingma and Dhariwal 2018, *Glow: Generative flow with invertible 1x1 convolutions*, section 3).

    Every level squeezes, then applies ``steps`` flow steps, each a per-channel ActNorm, an invertible 1×1
    convolution (:class:`~torchnf.bijections.InvertibleConv1x1`) and a channel coupling; every level but the last
    then factors out half of the channels, through the learned prior :math:`z_i \sim \mathcal N(\mu(h_i),
    \sigma(h_i))` when ``learned_prior`` (an affine channel coupling of :math:`z_i` given the kept :math:`h_i`).

    Args:
        event_shape: ``(C, H, W)``, with ``H`` and ``W`` divisible by ``2 ** levels``.
        context_shape: shape of a context (a one-hot label makes a class-conditional flow), or ``None``.
        levels: number of scales :math:`L`.
        steps: flow steps per level :math:`K`.
        hidden_channels: channels of the coupling networks.
        blocks: residual blocks per coupling network.
        coupling: ``"affine"``, ``"additive"`` or ``"spline"`` transformers.
        activation: name of the networks' nonlinearity.
        learned_prior: factor out through a learned conditional Gaussian (else a standard normal).
        pre_transform: ``"logit"`` (data in :math:`[0, 1]`, mapped to the real line) or ``None``, the paper's
            choice (data in :math:`[0, 1)` enter the flow directly). The logit is the default: on the 8×8 digits it
            gains about 0.24 bits per dimension (``benchmarks/digits_images.py``).
        alpha: the logit's margin.
        log_scale_bound: bound of each affine layer's log-scale.
        bins: spline bins.
        bound: spline half-width.

    Example:
        >>> import torch
        >>> from torchnf import Flow
        >>> flow = Flow(Glow((1, 8, 8), levels=2, steps=2, hidden_channels=8))
        >>> flow.sample(4).shape
        torch.Size([4, 1, 8, 8])
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        levels: int = 2,
        steps: int = 4,
        hidden_channels: int = 32,
        blocks: int = 1,
        coupling: ImageCouplingKind = "affine",
        activation: str = "relu",
        learned_prior: bool = True,
        pre_transform: PreTransform = "logit",
        alpha: float = 0.05,
        log_scale_bound: float = 3.0,
        bins: int = 8,
        bound: float = 4.0,
    ) -> None:
        channels, height, width = image_shape(event_shape, "Glow")
        if levels < 1 or steps < 1:
            raise ValueError(f"Glow needs levels >= 1 and steps >= 1, got {levels} and {steps}")
        coupling_layer = _CouplingFactory(
            context_shape, coupling, hidden_channels, blocks, activation, log_scale_bound, bins, bound
        )
        shape: tuple[int, ...] = (channels, height, width)
        scales: list[Bijection] = []
        for level in range(levels):
            squeeze = Squeeze(shape)
            shape = tuple(squeeze.latent_shape)
            parts: list[Bijection] = [squeeze]
            for _ in range(steps):
                parts += [ActNorm(shape, (shape[0], 1, 1)), InvertibleConv1x1(shape), coupling_layer(shape, "channel")]
            if level < levels - 1:
                if learned_prior:
                    parts.append(coupling_layer(shape, "channel", kind="affine"))
                shape = (shape[0] // 2, shape[1], shape[2])
            scales.append(Compose(parts))
        super().__init__([*_pre_transform(pre_transform, event_shape, alpha), Multiscale(scales)])
