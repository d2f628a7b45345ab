r"""Planar flows (Rezende and Mohamed 2015, *Variational inference with normalizing flows*, section 4.1).

A planar layer moves every point along one direction :math:`\hat u` by an amount that depends on its projection
on another direction :math:`w`:

.. math::

    f(x) = x + \hat u\, h(w^\top x + b), \qquad
    \log|\det J_f(x)| = \log\big|1 + h'(w^\top x + b)\, w^\top \hat u\big|, \qquad h = \tanh.

**Invertibility** (their appendix A.1). Along :math:`w` the map is the scalar map
:math:`\alpha \mapsto \alpha + (w^\top \hat u)\, h(\alpha + b)`, strictly increasing when
:math:`w^\top \hat u > -1` (as :math:`0 < h' \le 1`); across :math:`w` it is a shift. The constraint holds for any
raw parameters :math:`u, w` through

.. math::

    \hat u = u + \big(m(w^\top u) - w^\top u\big) \frac{w}{\|w\|^2}, \qquad m(a) = -1 + \operatorname{softplus}(a),

so that :math:`w^\top \hat u = m(w^\top u) > -1`. The log-det is evaluated without cancellation as
:math:`\log\big(\tanh^2 a + \kappa \operatorname{sech}^2 a\big)` with :math:`\kappa = 1 + w^\top \hat u =
\operatorname{softplus}(w^\top u) > 0` (:func:`log_residual_slope`). Should :math:`\|w\|^2` underflow, it is
floored at the dtype's smallest normal number and :math:`\hat u` falls back continuously to :math:`u`
(:math:`w = 0` is then the shift :math:`x + u\,h(b)`).

**Inverse.** Given :math:`y = f(x)`, the projection :math:`\alpha = w^\top x` solves the scalar strictly increasing
equation :math:`\alpha + (w^\top \hat u) h(\alpha + b) = w^\top y`, whose root lies within :math:`|w^\top \hat u|`
of :math:`w^\top y`; :func:`torchnf.roots.monotone_inverse` solves it, and :math:`x = y - \hat u\, h(\alpha + b)`.

**Context** (amortization, as in variational autoencoders). With a ``context_shape``, a small network maps the
flattened context to an offset of the raw parameters, then the constraint applies; its last layer starts at zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.mlp import MLP, Activation
from ..roots import monotone_inverse
from .base import Bijection, ShapeLike, as_shape

__all__ = ["IDENTITY_SLACK", "AmortizedBijection", "PlanarTransform", "log_residual_slope"]

IDENTITY_SLACK = math.log(math.expm1(1.0))
r"""The raw value :math:`a` with :math:`\\operatorname{softplus}(a) = 1`: a zero residual coefficient."""


def log_residual_slope(a: Tensor, slack: Tensor) -> Tensor:
    r"""The stable :math:`\log\big(1 + (\kappa - 1)\tanh'(a)\big) = \log(\tanh^2 a + \kappa\operatorname{sech}^2 a)`
    for :math:`\kappa > 0` (``slack``), the log-slope of :math:`t \mapsto t + (\kappa - 1)\tanh(t + c)`.

    With :math:`q = e^{-2|a|}`: :math:`\tanh^2 a = (1-q)^2/(1+q)^2` and :math:`\operatorname{sech}^2 a =
    4q/(1+q)^2`, so the logarithm is :math:`\log\big((1-q)^2 + 4\kappa q\big) - 2\log(1+q)`, a sum of positive
    terms that neither overflows nor cancels.
    """
    neg_two_abs = -2 * a.abs()
    q = torch.exp(neg_two_abs)
    return torch.log(torch.expm1(neg_two_abs).square() + 4 * slack * q) - 2 * torch.log1p(q)


class AmortizedBijection(Bijection):
    """A vector bijection whose raw parameters are ``nn.Parameter``s, offset by a context network when conditional.

    Args:
        event_shape: the number of dimensions ``D`` (or ``(D,)``).
        context_shape: shape of the context, or ``None``.
        raw: the initial raw parameters by name (flat vectors or scalars), registered as parameters in order.
        hidden: hidden widths of the context network.
        activation: its nonlinearity.
    """

    net: MLP | None

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None,
        raw: dict[str, Tensor],
        hidden: Sequence[int],
        activation: Activation,
    ) -> None:
        super().__init__(event_shape, context_shape)
        if len(self.event_shape) != 1:
            raise ValueError(f"{type(self).__name__} acts on vectors; got event_shape {tuple(self.event_shape)}")
        dtype = torch.get_default_dtype()
        for name, value in raw.items():
            self.register_parameter(name, nn.Parameter(value.to(dtype)))
        self.raw_names = tuple(raw)
        self.raw_sizes = [value.numel() for value in raw.values()]
        self.net = None
        if self.context_shape is not None:
            self.net = MLP(self.context_shape.numel(), sum(self.raw_sizes), hidden, activation)

    @property
    def features(self) -> int:
        """The number of dimensions ``D``."""
        return self.event_shape[0]

    def raw_parameters(self, x: Tensor, context: Tensor | None) -> list[Tensor]:
        """The raw parameters for a batch ``x``, each flattened to ``(size,)``, or ``(*batch, size)`` with a context."""
        flat = torch.cat([getattr(self, name).reshape(-1) for name in self.raw_names])
        if self.net is not None:
            if context is None:
                raise ValueError(f"this {type(self).__name__} was built with a context_shape and needs a context")
            batch = self.batch_shape(x)
            context = self.expand_context(context, batch)
            flat = flat + self.net(context.reshape(*batch, self.context_shape.numel()))
        return list(flat.split(self.raw_sizes, dim=-1))


class PlanarTransform(AmortizedBijection):
    r"""The planar flow :math:`f(x) = x + \hat u \tanh(w^\top x + b)` with :math:`w^\top \hat u > -1` (Rezende and
    Mohamed 2015, *Variational inference with normalizing flows*, section 4.1 and appendix A.1).

    ``forward`` (data to latent) is the closed-form formula; ``inverse`` solves one scalar equation per point with
    :func:`torchnf.roots.monotone_inverse`. Wrap the layer in :class:`~torchnf.bijections.Invert` to make the formula
    the generative (sampling) direction, as in variational inference. See the module docstring for the
    parameterization of :math:`\hat u` and the stable log-det.

    The layer starts as the identity (:math:`\hat u = 0`) with a random direction :math:`w`.

    Args:
        event_shape: the number of dimensions ``D`` (or ``(D,)``).
        context_shape: shape of a context, or ``None``: with one, a network of the flattened context offsets the
            raw parameters :math:`(w, u, b)`.
        hidden: hidden widths of that network.
        activation: its nonlinearity.
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        hidden: Sequence[int] = (64,),
        activation: Activation = nn.ReLU,
    ) -> None:
        features = as_shape(event_shape).numel()
        w = torch.randn(features, dtype=torch.float64) / math.sqrt(features)
        u = IDENTITY_SLACK * w / w.square().sum()  # w^T u = IDENTITY_SLACK, so u_hat = 0
        raw = {"w": w, "u": u, "b": torch.zeros((), dtype=torch.float64)}
        super().__init__(event_shape, context_shape, raw, hidden, activation)

    def coefficients(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""``(w, u_hat, b, slack)`` for a batch ``x``: ``w`` and :math:`\hat u` of shape ``(D,)`` or ``(*batch, D)``,
        ``b`` and ``slack`` :math:`= 1 + w^\top \hat u > 0` of shape ``()`` or ``(*batch,)``."""
        w, u, b = self.raw_parameters(x, context)
        wu = (w * u).sum(-1, keepdim=True)
        w_squared = w.square().sum(-1, keepdim=True)
        floored = w_squared.clamp_min(torch.finfo(w.dtype).tiny)
        weight = w_squared / floored  # 1 unless |w|^2 underflows; then u_hat tends to u as w tends to 0
        softplus = F.softplus(wu)
        u_hat = u + (softplus - 1 - wu) * w / floored  # w^T u_hat = wu + weight (m(wu) - wu)
        slack = weight * softplus + (1 - weight) * (1 + wu)  # 1 + w^T u_hat, without cancellation
        return w, u_hat, b.squeeze(-1), slack.squeeze(-1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        w, u_hat, b, slack = self.coefficients(x, context)
        a = (x * w).sum(-1) + b
        return x + u_hat * torch.tanh(a).unsqueeze(-1), log_residual_slope(a, slack)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        w, u_hat, b, slack = self.coefficients(z, context)
        scale = (w * u_hat).sum(-1)  # w^T u_hat > -1

        def along_w(alpha: Tensor) -> tuple[Tensor, Tensor]:
            return alpha + scale * torch.tanh(alpha + b), log_residual_slope(alpha + b, slack)

        target = (z * w).sum(-1)
        reach = (scale.abs() + 1).detach()  # |root - target| <= |w^T u_hat|
        alpha, log_slope = monotone_inverse(along_w, target, target.detach() - reach, target.detach() + reach)
        return z - u_hat * torch.tanh(alpha + b).unsqueeze(-1), -log_slope
