"""Presets: named architectures composed from the parts in :mod:`torchnf.bijections`.

Each preset is a :class:`~torchnf.bijections.Compose` whose constructor arguments are plain values (ints, floats,
strings, tuples), recorded in :attr:`Preset.config`, so a model can be rebuilt from its config alone. Every
preset is registered by class name in :attr:`Preset.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import ClassVar, Literal

from torch import nn

from .bijections import (
    ActNorm,
    BatchNorm,
    Bijection,
    Compose,
    Coupling,
    ElementwiseAffine,
    Invert,
    MaskedAutoregressive,
)
from .bijections.base import ShapeLike, as_shape
from .configurable import Configurable
from .transformers import Affine, Shift, Transformer

__all__ = ["ACTIVATIONS", "IAF", "MAF", "NICE", "Preset", "RealNVP"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}

Normalization = Literal["actnorm", "batchnorm"] | None


def activation_factory(name: str) -> Callable[[], nn.Module]:
    """The activation module factory registered under ``name``."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


def normalization_layer(kind: Normalization, event_shape: ShapeLike) -> list[Bijection]:
    """An empty list, or one ActNorm or BatchNorm layer."""
    if kind is None:
        return []
    if kind == "actnorm":
        return [ActNorm(event_shape)]
    if kind == "batchnorm":
        return [BatchNorm(event_shape)]
    raise ValueError(f"unknown normalization {kind!r}; expected None, 'actnorm' or 'batchnorm'")


def vector_features(event_shape: ShapeLike, preset: str) -> int:
    """The length of a vector event, refusing other shapes."""
    shape = as_shape(event_shape)
    if len(shape) != 1:
        raise ValueError(f"{preset} models vectors; got event_shape {tuple(shape)}")
    return shape[0]


def coupling_layers(
    features: int,
    transformer: Callable[[], Transformer],
    context_shape: ShapeLike | None,
    layers: int,
    hidden: Sequence[int],
    activation: str,
    residual: bool,
    normalization: Normalization,
    mask: Literal["half", "alternate"],
) -> list[Bijection]:
    """``layers`` coupling layers whose masks flip at every layer, each after an optional normalization layer."""
    act = activation_factory(activation)
    parts: list[Bijection] = []
    for i in range(layers):
        parts += normalization_layer(normalization, features)
        flip = i % 2 == 1 and features > 1
        parts.append(Coupling(features, transformer(), mask, flip, context_shape, hidden, act, residual))
    return parts


def autoregressive_layers(
    features: int,
    transformer: Callable[[], Transformer],
    context_shape: ShapeLike | None,
    layers: int,
    hidden: Sequence[int],
    activation: str,
    residual: bool,
    normalization: Normalization,
    inverse: bool,
) -> list[Bijection]:
    """``layers`` masked autoregressive layers (inverted when ``inverse``) whose order reverses at every layer,
    each after an optional normalization layer."""
    act = activation_factory(activation)
    parts: list[Bijection] = []
    for i in range(layers):
        parts += normalization_layer(normalization, features)
        order = list(range(features)) if i % 2 == 0 else list(reversed(range(features)))
        layer = MaskedAutoregressive(features, transformer(), order, context_shape, hidden, act, residual)
        parts.append(Invert(layer) if inverse else layer)
    return parts


class Preset(Configurable, Compose):
    """A named architecture whose constructor arguments are its saved :attr:`config`."""

    registry: ClassVar[dict[str, type]] = {}


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
