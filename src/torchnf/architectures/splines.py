r"""Neural spline flows: coupling and autoregressive layers with monotone spline transformers.

Rational-quadratic splines (Durkan et al. 2019, *Neural spline flows*) and linear-rational splines (Dolatabadi et
al. 2020, *Invertible generative modeling using linear rational splines*) on :math:`[-B, B]` with identity tails;
both have closed-form inverses, so density and sampling are exact in both directions.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import ClassVar, Literal

from ..bijections.base import ShapeLike
from ..transformers import LinearRationalSpline, RationalQuadraticSpline, Transformer
from .base import Normalization, Preset, autoregressive_layers, coupling_layers, vector_features

__all__ = [
    "CouplingLRS",
    "CouplingRQNSF",
    "InverseAutoregressiveRQNSF",
    "MaskedAutoregressiveLRS",
    "MaskedAutoregressiveRQNSF",
]


class _CouplingSplineFlow(Preset):
    """Coupling layers with a spline transformer (:attr:`spline`), masks flipped at every layer.

    Args:
        event_shape: the number of dimensions.
        context_shape: shape of a context, or ``None``.
        layers: number of coupling layers.
        hidden: hidden widths of each coupling network.
        bins: number of spline bins.
        bound: the spline acts on :math:`[-B, B]`, the identity outside.
        activation: name of the nonlinearity.
        residual: use residual blocks in the coupling networks.
        normalization: ``"actnorm"``, ``"batchnorm"`` or ``None``, before each layer.
        mask: ``"half"`` or ``"alternate"`` split, flipped at every layer.
    """

    spline: ClassVar[type[Transformer]]

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        layers: int = 6,
        hidden: Sequence[int] = (128, 128),
        bins: int = 8,
        bound: float = 5.0,
        activation: str = "relu",
        residual: bool = False,
        normalization: Normalization = "actnorm",
        mask: Literal["half", "alternate"] = "half",
    ) -> None:
        features = vector_features(event_shape, type(self).__name__)
        spline = partial(self.spline, bins, bound)
        parts = coupling_layers(
            features, spline, context_shape, layers, hidden, activation, residual, normalization, mask
        )
        super().__init__(parts)


class _AutoregressiveSplineFlow(Preset):
    """Masked autoregressive layers with a spline transformer (:attr:`spline`), the order reversed at every layer;
    inverted layers when :attr:`inverse_layers`.

    Args:
        event_shape: the number of dimensions.
        context_shape: shape of a context, or ``None``.
        layers: number of autoregressive layers.
        hidden: hidden widths of each MADE.
        bins: number of spline bins.
        bound: the spline acts on :math:`[-B, B]`, the identity outside.
        activation: name of the nonlinearity.
        residual: use masked residual blocks.
        normalization: ``"actnorm"``, ``"batchnorm"`` or ``None``, before each layer.
    """

    spline: ClassVar[type[Transformer]]
    inverse_layers: ClassVar[bool] = False

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        layers: int = 5,
        hidden: Sequence[int] = (128, 128),
        bins: int = 8,
        bound: float = 5.0,
        activation: str = "relu",
        residual: bool = False,
        normalization: Normalization = "actnorm",
    ) -> None:
        features = vector_features(event_shape, type(self).__name__)
        spline = partial(self.spline, bins, bound)
        parts = autoregressive_layers(
            features, spline, context_shape, layers, hidden, activation, residual, normalization, self.inverse_layers
        )
        super().__init__(parts)


class CouplingRQNSF(_CouplingSplineFlow):
    """Coupling rational-quadratic neural spline flow (Durkan et al. 2019): one network pass per layer in both
    directions. Arguments as in :class:`_CouplingSplineFlow`.

    Example:
        >>> import torch
        >>> from torchnf import Flow
        >>> flow = Flow(CouplingRQNSF(2, layers=2, hidden=(16,)))
        >>> flow.sample(4).shape
        torch.Size([4, 2])
    """

    spline = RationalQuadraticSpline


class MaskedAutoregressiveRQNSF(_AutoregressiveSplineFlow):
    """Autoregressive rational-quadratic neural spline flow (Durkan et al. 2019): one pass per layer for the
    density, :math:`D` for sampling. Arguments as in :class:`_AutoregressiveSplineFlow`."""

    spline = RationalQuadraticSpline


class InverseAutoregressiveRQNSF(_AutoregressiveSplineFlow):
    """The inverse-autoregressive rational-quadratic spline flow: the layers of :class:`MaskedAutoregressiveRQNSF`
    inverted, so sampling takes one pass per layer and the density of data :math:`D`."""

    spline = RationalQuadraticSpline
    inverse_layers = True


class CouplingLRS(_CouplingSplineFlow):
    """Coupling linear-rational spline flow (Dolatabadi et al. 2020). Arguments as in :class:`_CouplingSplineFlow`."""

    spline = LinearRationalSpline


class MaskedAutoregressiveLRS(_AutoregressiveSplineFlow):
    """Autoregressive linear-rational spline flow (Dolatabadi et al. 2020). Arguments as in
    :class:`_AutoregressiveSplineFlow`."""

    spline = LinearRationalSpline
