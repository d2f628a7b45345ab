r"""Neural-transformer flows: deep sigmoidal flows (NAF) and unconstrained monotonic neural networks (UMNN).

Their transformers have no closed-form inverse: sampling inverts them elementwise with the shared root finder
(:func:`torchnf.roots.monotone_inverse`) to a stated tolerance, with implicit-function gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import ClassVar

from ..bijections.base import ShapeLike
from ..transformers import UMNN, DeepDenseSigmoid, DeepSigmoid, Transformer
from .base import Normalization, Preset, autoregressive_layers, coupling_layers, vector_features

__all__ = ["UMNNMAF", "CouplingNAF", "MaskedAutoregressiveNAF"]


def _sigmoid_transformer(sigmoid_units: int, sigmoid_layers: int) -> Callable[[], Transformer]:
    if sigmoid_layers == 1:
        return partial(DeepSigmoid, sigmoid_units)
    return partial(DeepDenseSigmoid, sigmoid_units, sigmoid_layers)


class _SigmoidalFlow(Preset):
    r"""Layers whose transformers are deep sigmoidal (``sigmoid_layers=1``) or deep dense sigmoidal flows (Huang
    et al. 2018, *Neural autoregressive flows*): coupling layers, or masked autoregressive ones when
    :attr:`autoregressive`.

    Args:
        event_shape: the number of dimensions.
        context_shape: shape of a context, or ``None``.
        layers: number of layers.
        hidden: hidden widths of each conditioner network.
        sigmoid_units: sigmoid units per transformer layer.
        sigmoid_layers: 1 for DSF, more for DDSF.
        activation: name of the nonlinearity of the conditioner networks.
        residual: use residual blocks in the conditioner networks.
        normalization: ``"actnorm"``, ``"batchnorm"`` or ``None``, before each layer.
    """

    autoregressive: ClassVar[bool]

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        layers: int = 4,
        hidden: Sequence[int] = (128, 128),
        sigmoid_units: int = 8,
        sigmoid_layers: int = 1,
        activation: str = "relu",
        residual: bool = False,
        normalization: Normalization = "actnorm",
    ) -> None:
        features = vector_features(event_shape, type(self).__name__)
        transformer = _sigmoid_transformer(sigmoid_units, sigmoid_layers)
        options = (context_shape, layers, hidden, activation, residual, normalization)
        if self.autoregressive:
            super().__init__(autoregressive_layers(features, transformer, *options, False))
        else:
            super().__init__(coupling_layers(features, transformer, *options, "half"))


class CouplingNAF(_SigmoidalFlow):
    """Neural autoregressive flow transformers in coupling layers, conditioned on the kept half. Arguments as in
    :class:`_SigmoidalFlow`."""

    autoregressive = False


class MaskedAutoregressiveNAF(_SigmoidalFlow):
    """Neural autoregressive flow (Huang et al. 2018): masked autoregressive layers with deep sigmoidal
    transformers. Arguments as in :class:`_SigmoidalFlow`."""

    autoregressive = True


class UMNNMAF(Preset):
    r"""UMNN-MAF (Wehenkel and Louppe 2019, *Unconstrained monotonic neural networks*): masked autoregressive layers
    whose transformers are :math:`z_i = \int_0^{x_i} g(t; h_i)\,dt + \beta_i` with a positive integrand network
    :math:`g` and :math:`(h_i, \beta_i)` from a MADE; the integral is a Clenshaw-Curtis quadrature.

    Args:
        event_shape: the number of dimensions.
        context_shape: shape of a context, or ``None``.
        layers: number of autoregressive layers.
        hidden: hidden widths of each MADE.
        embedding: size of the embedding :math:`h_i` passed to the integrand.
        integrand_hidden: hidden widths of the integrand network.
        nodes: quadrature nodes.
        activation: name of the nonlinearity of the MADEs.
        residual: use masked residual blocks.
        normalization: ``"actnorm"``, ``"batchnorm"`` or ``None``, before each layer.
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        layers: int = 3,
        hidden: Sequence[int] = (128, 128),
        embedding: int = 8,
        integrand_hidden: Sequence[int] = (32, 32),
        nodes: int = 20,
        activation: str = "relu",
        residual: bool = False,
        normalization: Normalization = "actnorm",
    ) -> None:
        features = vector_features(event_shape, "UMNNMAF")
        transformer = partial(UMNN, embedding, tuple(integrand_hidden), nodes)
        super().__init__(
            autoregressive_layers(
                features, transformer, context_shape, layers, hidden, activation, residual, normalization, False
            )
        )
