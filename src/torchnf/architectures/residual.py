"""Residual presets: invertible residual networks (i-ResNet) and Residual Flows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from ..bijections.base import Bijection, ShapeLike
from ..bijections.residual import GradientMethod, LogDetMethod, ResidualTransform
from ..bijections.residual_log_det import Noise
from .base import Normalization, Preset, normalization_layer, vector_features

__all__ = ["EXACT_LOG_DET_MAX_FEATURES", "InvertibleResNet", "ResFlow", "residual_blocks"]

EXACT_LOG_DET_MAX_FEATURES = 16
"""Up to this many dimensions, ``log_det="auto"`` computes exact log-determinants: the full Jacobian then costs no
more vector-Jacobian products than a stochastic series, and has no variance."""


def residual_blocks(
    features: int,
    context_shape: ShapeLike | None,
    layers: int,
    normalization: Normalization,
    **block_options: Any,
) -> list[Bijection]:
    """``layers`` :class:`ResidualTransform` blocks, each after an optional normalization layer."""
    parts: list[Bijection] = []
    for _ in range(layers):
        parts += normalization_layer(normalization, features)
        parts.append(ResidualTransform(features, context_shape, **block_options))
    return parts


def _resolve(log_det: LogDetMethod | Literal["auto"], features: int, stochastic: LogDetMethod) -> LogDetMethod:
    if log_det == "auto":
        return "exact" if features <= EXACT_LOG_DET_MAX_FEATURES else stochastic
    if log_det not in ("exact", "series", "roulette"):
        raise ValueError(f"unknown log_det {log_det!r}; expected 'auto', 'exact', 'series' or 'roulette'")
    return log_det


class InvertibleResNet(Preset):
    r"""Invertible residual network (Behrmann et al. 2019, *Invertible residual networks*): blocks
    :math:`z = x + g(x)` with spectrally normalized :math:`g` (:math:`\operatorname{Lip}(g) < 1`), inverted by
    fixed-point iteration, with the log-determinant's power series truncated after ``series_terms`` terms and
    Hutchinson trace estimates, each block after an optional normalization layer.

    Contractive blocks move each point by less than the data's scale, so residual flows need more steps than
    couplings; a learning rate of ``5e-3`` (``flow.fit(x, lr=5e-3)``) fits small problems in a few hundred steps
    (``tests/test_quality_residual.py``).

    Args:
        event_shape: the number of dimensions.
        context_shape: shape of a context (it enters each block's first layer), or ``None``.
        layers: the number of residual blocks.
        hidden: hidden widths of each block's network.
        activation: ``"elu"`` (the paper's), ``"lipswish"`` or ``"tanh"``.
        lipschitz: the spectral-norm bound of every layer.
        log_det: ``"auto"`` (exact up to :data:`EXACT_LOG_DET_MAX_FEATURES` dimensions, ``"series"`` above),
            ``"exact"``, ``"series"`` or ``"roulette"``.
        series_terms: terms of the truncated series.
        noise: Hutchinson probes, ``"gaussian"`` or ``"rademacher"``.
        normalization: ``"actnorm"``, ``"batchnorm"`` or ``None``, before each block.

    Other options are those of :class:`~torchnf.bijections.ResidualTransform`.

    Example:
        >>> import torch
        >>> from torchnf import Flow, InvertibleResNet
        >>> flow = Flow(InvertibleResNet(2, layers=2, hidden=(16,)))
        >>> flow.log_prob(flow.sample(3)).shape
        torch.Size([3])
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        layers: int = 8,
        hidden: Sequence[int] = (128, 128),
        activation: str = "elu",
        lipschitz: float = 0.9,
        log_det: LogDetMethod | Literal["auto"] = "auto",
        series_terms: int = 8,
        noise: Noise = "gaussian",
        normalization: Normalization = "actnorm",
        power_iterations: int = 1,
    ) -> None:
        features = vector_features(event_shape, type(self).__name__)
        super().__init__(
            residual_blocks(
                features,
                context_shape,
                layers,
                normalization,
                hidden=hidden,
                activation=activation,
                lipschitz=lipschitz,
                log_det=_resolve(log_det, features, "series"),
                series_terms=series_terms,
                noise=noise,
                power_iterations=power_iterations,
            )
        )


class ResFlow(Preset):
    r"""Residual Flow (Chen et al. 2019, *Residual flows for invertible generative modeling*): invertible residual
    blocks with LipSwish activations and the unbiased Russian-roulette log-determinant estimator, whose gradient is
    the memory-saving Neumann-series estimator; each block after an optional normalization layer.

    Contractive blocks move each point by less than the data's scale, so residual flows need more steps than
    couplings; a learning rate of ``5e-3`` (``flow.fit(x, lr=5e-3)``) fits small problems in a few hundred steps
    (``tests/test_quality_residual.py``).

    Args:
        event_shape: the number of dimensions.
        context_shape: shape of a context (it enters each block's first layer), or ``None``.
        layers: the number of residual blocks.
        hidden: hidden widths of each block's network.
        activation: ``"lipswish"`` (the paper's), ``"elu"`` or ``"tanh"``.
        lipschitz: the spectral-norm bound of every layer.
        log_det: ``"auto"`` (exact up to :data:`EXACT_LOG_DET_MAX_FEATURES` dimensions, ``"roulette"`` above),
            ``"exact"``, ``"series"`` or ``"roulette"``.
        exact_terms: the series terms always computed.
        roulette_probability: the probability of stopping after each further term.
        gradient: ``"neumann"`` or ``"backprop"``.
        noise: Hutchinson probes, ``"gaussian"`` or ``"rademacher"``.
        normalization: ``"actnorm"``, ``"batchnorm"`` or ``None``, before each block.

    Example:
        >>> import torch
        >>> from torchnf import Flow, ResFlow
        >>> flow = Flow(ResFlow(2, layers=2, hidden=(16,)))
        >>> flow.log_prob(flow.sample(3)).shape
        torch.Size([3])
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        layers: int = 8,
        hidden: Sequence[int] = (128, 128),
        activation: str = "lipswish",
        lipschitz: float = 0.98,
        log_det: LogDetMethod | Literal["auto"] = "auto",
        exact_terms: int = 2,
        roulette_probability: float = 0.5,
        gradient: GradientMethod = "neumann",
        noise: Noise = "gaussian",
        normalization: Normalization = "actnorm",
        power_iterations: int = 1,
    ) -> None:
        features = vector_features(event_shape, type(self).__name__)
        super().__init__(
            residual_blocks(
                features,
                context_shape,
                layers,
                normalization,
                hidden=hidden,
                activation=activation,
                lipschitz=lipschitz,
                log_det=_resolve(log_det, features, "roulette"),
                exact_terms=exact_terms,
                roulette_probability=roulette_probability,
                noise=noise,
                gradient=gradient,
                power_iterations=power_iterations,
            )
        )
