r"""Planar, radial and Sylvester presets: stacks of residual layers :math:`x + g(x)` with a closed-form direction.

Each layer's formula (:class:`~torchnf.bijections.PlanarTransform`, :class:`~torchnf.bijections.RadialTransform`,
:class:`~torchnf.bijections.SylvesterTransform`) is cheap in one direction only; ``closed_form`` chooses which:

* ``"sample"`` (the default, as in variational inference, Rezende and Mohamed 2015): every layer is wrapped in
  :class:`~torchnf.bijections.Invert`, so the formula is the generative map latent to data. Sampling, and the
  density of the flow's own samples (:meth:`~torchnf.Flow.sample_and_log_prob`), are closed form; the density of
  arbitrary data inverts the planar and Sylvester layers with the root finder (radial layers invert in closed form).
* ``"density"``: the formula maps data to latent, so the density of any data is closed form (the better choice for
  fitting by maximum likelihood) and sampling uses the root finder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from ..bijections import Bijection, Invert, PlanarTransform, RadialTransform, SylvesterTransform
from ..bijections.base import ShapeLike
from .base import Preset, activation_factory, vector_features

__all__ = ["ClosedForm", "Planar", "Radial", "Sylvester", "residual_stack"]

ClosedForm = Literal["sample", "density"]
CLOSED_FORMS = ("sample", "density")


def residual_stack(layer: Callable[[], Bijection], layers: int, closed_form: ClosedForm) -> list[Bijection]:
    """``layers`` layers made by ``layer()``, each wrapped in :class:`Invert` when ``closed_form == "sample"``."""
    if closed_form not in CLOSED_FORMS:
        raise ValueError(f"unknown closed_form {closed_form!r}; expected one of {CLOSED_FORMS}")
    if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
        raise ValueError(f"layers must be a positive int, got {layers!r}")
    parts = [layer() for _ in range(layers)]
    return [Invert(part) for part in parts] if closed_form == "sample" else parts


class Planar(Preset):
    r"""A planar flow (Rezende and Mohamed 2015, *Variational inference with normalizing flows*): ``layers``
    layers :math:`x + \hat u \tanh(w^\top x + b)` with :math:`w^\top \hat u > -1`
    (:class:`~torchnf.bijections.PlanarTransform`). Each layer bends space along one hyperplane, so many are
    needed; with a context, a network per layer amortizes the parameters, as in a variational autoencoder.

    Args:
        event_shape: the number of dimensions.
        context_shape: shape of a context, or ``None``.
        layers: number of planar layers.
        closed_form: ``"sample"`` (formula = generative map) or ``"density"`` (formula = data to latent); see
            :mod:`torchnf.architectures.planar`.
        hidden: hidden widths of each layer's context network (unused without a context).
        activation: name of its nonlinearity.

    Example:
        >>> import torch
        >>> from torchnf import Flow, Planar
        >>> flow = Flow(Planar(2, layers=4)).double()
        >>> x, log_prob = flow.sample_and_log_prob(5)  # closed form: the layers map latent to data
        >>> torch.allclose(flow.log_prob(x), log_prob)  # the density of any point inverts with the root finder
        True
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        layers: int = 16,
        closed_form: ClosedForm = "sample",
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
    ) -> None:
        features = vector_features(event_shape, "Planar")
        act = activation_factory(activation)
        super().__init__(
            residual_stack(lambda: PlanarTransform(features, context_shape, hidden, act), layers, closed_form)
        )


class Radial(Preset):
    r"""A radial flow (Rezende and Mohamed 2015, *Variational inference with normalizing flows*): ``layers``
    layers :math:`x + \beta (x - x_0)/(\alpha + \|x - x_0\|)` with :math:`\alpha > 0, \beta > -\alpha`
    (:class:`~torchnf.bijections.RadialTransform`), each contracting or expanding space around its centre. Both
    directions of a radial layer are closed form, so ``closed_form`` only sets which way the formula points.

    Args:
        event_shape: the number of dimensions.
        context_shape: shape of a context, or ``None``.
        layers: number of radial layers.
        closed_form: ``"sample"`` (formula = generative map) or ``"density"`` (formula = data to latent).
        hidden: hidden widths of each layer's context network (unused without a context).
        activation: name of its nonlinearity.
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        layers: int = 32,
        closed_form: ClosedForm = "sample",
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
    ) -> None:
        features = vector_features(event_shape, "Radial")
        act = activation_factory(activation)
        super().__init__(
            residual_stack(lambda: RadialTransform(features, context_shape, hidden, act), layers, closed_form)
        )


class Sylvester(Preset):
    r"""A Sylvester flow (van den Berg et al. 2018, *Sylvester normalizing flows for variational inference*):
    ``layers`` layers :math:`x + Q R \tanh(\tilde R Q^\top x + b)` with Householder-parameterized orthonormal
    :math:`Q` of ``columns`` columns and triangular :math:`R, \tilde R`
    (:class:`~torchnf.bijections.SylvesterTransform`): planar layers with ``columns`` hidden units each.

    Args:
        event_shape: the number of dimensions.
        context_shape: shape of a context, or ``None``.
        layers: number of Sylvester layers.
        closed_form: ``"sample"`` (formula = generative map) or ``"density"`` (formula = data to latent).
        columns: columns :math:`M` of :math:`Q` per layer, ``1 <= columns <= D``; ``None`` means ``D``.
        hidden: hidden widths of each layer's context network (unused without a context).
        activation: name of its nonlinearity.
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        layers: int = 16,
        closed_form: ClosedForm = "sample",
        columns: int | None = None,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
    ) -> None:
        features = vector_features(event_shape, "Sylvester")
        act = activation_factory(activation)
        super().__init__(
            residual_stack(
                lambda: SylvesterTransform(features, columns, context_shape, hidden, act), layers, closed_form
            )
        )
