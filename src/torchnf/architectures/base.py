"""The :class:`Preset` base class and the builders that presets share (layer stacks, activations, normalization)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, Literal

from torch import nn

from ..bijections import (
    ActNorm,
    BatchNorm,
    Bijection,
    Compose,
    Coupling,
    Invert,
    MaskedAutoregressive,
)
from ..bijections.base import ShapeLike, as_shape
from ..configurable import Configurable
from ..transformers import Transformer

__all__ = [
    "ACTIVATIONS",
    "Normalization",
    "Preset",
    "activation_factory",
    "autoregressive_layers",
    "coupling_layers",
    "normalization_layer",
    "vector_features",
]

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
