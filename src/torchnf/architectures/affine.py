"""Affine presets: NICE, RealNVP, MAF and IAF."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import ClassVar, Literal

from ..bijections import ElementwiseAffine
from ..bijections.base import ShapeLike
from ..transformers import Affine, Shift
from .base import Normalization, Preset, autoregressive_layers, coupling_layers, vector_features

__all__ = ["IAF", "MAF", "NICE", "RealNVP"]


class NICE(Preset):
    r"""NICE (Dinh et al. 2015, *NICE: Non-linear independent components estimation*): additive couplings
    :math:`z_B = x_B + t(x_A)` with alternating halves, then a learned diagonal scaling, the only volume change.

    Args:
        event_shape: the number of dimensions.
        context_shape: shape of a context, or ``None``.
        layers: number of coupling layers.
        hidden: hidden widths of each coupling network.
        activation: name of the nonlinearity (see :data:`ACTIVATIONS`).
        mask: ``"half"`` or ``"alternate"`` split, flipped at every layer.
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        layers: int = 4,
        hidden: Sequence[int] = (128, 128),
        activation: str = "relu",
        mask: Literal["half", "alternate"] = "half",
    ) -> None:
        features = vector_features(event_shape, "NICE")
        parts = coupling_layers(features, Shift, context_shape, layers, hidden, activation, False, None, mask)
        super().__init__([*parts, ElementwiseAffine(features)])


class RealNVP(Preset):
    r"""Real NVP (Dinh et al. 2017, *Density estimation using Real NVP*): affine couplings
    :math:`z_B = e^{s(x_A)} \odot x_B + t(x_A)` with alternating halves, each preceded by an optional
    normalization layer.

    Args:
        event_shape: the number of dimensions.
        context_shape: shape of a context, or ``None``.
        layers: number of coupling layers.
        hidden: hidden widths of each coupling network.
        activation: name of the nonlinearity.
        residual: use residual blocks in the coupling networks.
        normalization: ``"actnorm"``, ``"batchnorm"`` or ``None``, before each coupling.
        mask: ``"half"`` or ``"alternate"`` split, flipped at every layer.
        log_scale_bound: bound on each layer's log-scale (see :class:`~torchnf.transformers.Affine`).

    Example:
        >>> import torch
        >>> from torchnf import Flow, RealNVP
        >>> flow = Flow(RealNVP(3, layers=4))
        >>> x = flow.sample(10)
        >>> torch.allclose(flow.bijection.inverse(flow.bijection(x)[0])[0], x, atol=1e-5)
        True
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        layers: int = 8,
        hidden: Sequence[int] = (128, 128),
        activation: str = "relu",
        residual: bool = False,
        normalization: Normalization = "actnorm",
        mask: Literal["half", "alternate"] = "half",
        log_scale_bound: float = 3.0,
    ) -> None:
        features = vector_features(event_shape, "RealNVP")
        transformer = partial(Affine, log_scale_bound)
        super().__init__(
            coupling_layers(
                features, transformer, context_shape, layers, hidden, activation, residual, normalization, mask
            )
        )


class MAF(Preset):
    r"""Masked autoregressive flow (Papamakarios et al. 2017): affine autoregressive layers
    :math:`z_i = e^{s_i(x_{<i})} x_i + t_i(x_{<i})` from MADE networks, with the order reversed at every layer.
    The density costs one pass per layer; sampling costs :math:`D` passes per layer.

    Args:
        event_shape: the number of dimensions.
        context_shape: shape of a context, or ``None``.
        layers: number of autoregressive layers.
        hidden: hidden widths of each MADE.
        activation: name of the nonlinearity.
        residual: use masked residual blocks.
        normalization: ``"actnorm"``, ``"batchnorm"`` or ``None``, before each layer.
        log_scale_bound: bound on each layer's log-scale.
    """

    inverse_layers: ClassVar[bool] = False

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        layers: int = 5,
        hidden: Sequence[int] = (128, 128),
        activation: str = "relu",
        residual: bool = False,
        normalization: Normalization = "actnorm",
        log_scale_bound: float = 3.0,
    ) -> None:
        features = vector_features(event_shape, type(self).__name__)
        transformer = partial(Affine, log_scale_bound)
        super().__init__(
            autoregressive_layers(
                features,
                transformer,
                context_shape,
                layers,
                hidden,
                activation,
                residual,
                normalization,
                self.inverse_layers,
            )
        )


class IAF(MAF):
    r"""Inverse autoregressive flow (Kingma et al. 2016, *Improved variational inference with inverse
    autoregressive flow*): the layers of :class:`MAF` inverted, so sampling and the density of its own samples
    cost one pass per layer, while the density of arbitrary data costs :math:`D` passes per layer.

    Args are those of :class:`MAF`.
    """

    inverse_layers = True
