r"""Lipschitz-constrained networks: the residual branches of invertible residual flows.

A residual map :math:`x \mapsto x + g(x)` is invertible when :math:`\operatorname{Lip}(g) < 1` (Behrmann et al.
2019, *Invertible residual networks*). :class:`LipschitzMLP` guarantees it: every linear map acting on :math:`x`
is rescaled by spectral normalization to spectral norm at most :math:`c < 1`,

.. math::

    \tilde W = W \big/ \max\!\big(1,\ \hat\sigma(W) / c\big), \qquad \hat\sigma(W) = u^\top W v,

where :math:`u, v` are the singular-vector estimates of power iteration (Miyato et al. 2018, *Spectral
normalization for generative adversarial networks*), and every activation is 1-Lipschitz, so
:math:`\operatorname{Lip}(g) \le c^L` for :math:`L` layers. A context enters the first layer through an
unconstrained linear map, which shifts the pre-activations without changing the Lipschitz constant in :math:`x`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LIPSCHITZ_ACTIVATIONS", "Linearization", "LipSwish", "LipschitzMLP", "SpectralLinear", "slope"]

INITIAL_POWER_ITERATIONS = 50
"""Power iterations run at construction, so the first call already normalizes by an accurate spectral norm."""


class LipSwish(nn.Module):
    r"""The 1-Lipschitz activation :math:`x \mapsto x\,\operatorname{sigmoid}(\beta x) / 1.1` with a learned
    :math:`\beta = \operatorname{softplus}(\hat\beta) > 0` (Chen et al. 2019, *Residual flows for invertible
    generative modeling*): Swish's slope never exceeds 1.0998, whatever :math:`\beta`."""

    def __init__(self) -> None:
        super().__init__()
        self.raw_beta = nn.Parameter(torch.tensor(0.5413248546129181))  # softplus(raw) = 1

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(F.softplus(self.raw_beta) * x) / 1.1


LIPSCHITZ_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"lipswish": LipSwish, "elu": nn.ELU, "tanh": nn.Tanh}
"""The 1-Lipschitz activations by name (smooth ones: the log-det's gradient needs a differentiable Jacobian)."""


class SpectralLinear(nn.Module):
    r"""A linear map :math:`x \mapsto \tilde W x + b` whose spectral norm is at most ``coefficient``.

    :math:`\tilde W = W / \max(1, \hat\sigma / c)`, with :math:`\hat\sigma = u^\top W v` from the buffers ``u``
    and ``v``, which :meth:`power_iteration` refines (gradients flow through :math:`\hat\sigma`, as in Miyato et
    al. 2018). The buffers change only when :meth:`power_iteration` is called: the layer itself is a pure function
    of its parameters and buffers, so it composes with ``torch.func`` transforms.

    Args:
        in_features: input width.
        out_features: output width.
        coefficient: the bound :math:`c` on the spectral norm, in ``(0, 1)`` for a contraction.
        bias: add a learned bias.
    """

    def __init__(self, in_features: int, out_features: int, coefficient: float = 0.97, bias: bool = True) -> None:
        super().__init__()
        if not coefficient > 0:
            raise ValueError(f"the spectral norm bound must be positive, got {coefficient}")
        self.coefficient = float(coefficient)
        linear = nn.Linear(in_features, out_features, bias=bias)
        self.weight = linear.weight
        self.bias = linear.bias
        self.register_buffer("u", F.normalize(torch.randn(out_features), dim=0))
        self.register_buffer("v", F.normalize(torch.randn(in_features), dim=0))
        self.power_iteration(INITIAL_POWER_ITERATIONS)

    @torch.no_grad()
    def power_iteration(self, steps: int = 1) -> None:
        """Refine the singular-vector estimates ``u``, ``v`` of the current weight by ``steps`` power iterations."""
        w = self.weight.detach()
        u, v = self.u, self.v
        for _ in range(steps):
            v = F.normalize(w.mT @ u, dim=0, eps=1e-12)
            u = F.normalize(w @ v, dim=0, eps=1e-12)
        self.u.copy_(u)
        self.v.copy_(v)

    def spectral_norm(self) -> Tensor:
        r"""The estimate :math:`\hat\sigma = u^\top W v` (a lower bound of the spectral norm, tight once the
        power iteration has converged), differentiable in :math:`W`."""
        return self.u @ self.weight @ self.v

    def normalized_weight(self) -> Tensor:
        r""":math:`\tilde W = W / \max(1, \hat\sigma / c)`."""
        return self.weight / torch.clamp(self.spectral_norm() / self.coefficient, min=1.0)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)

    def extra_repr(self) -> str:
        out_features, in_features = self.weight.shape
        return f"in_features={in_features}, out_features={out_features}, coefficient={self.coefficient}"


class Linearization(NamedTuple):
    r"""A network's value at a batch with what its Jacobian needs: :math:`J = W_L S_{L-1} W_{L-1} \cdots S_1 W_1`,
    with :math:`S_l = \operatorname{diag}(\sigma'(a_l))` the activations' slopes at the pre-activations.

    Products with :math:`J` are then plain matrix products, differentiable by ordinary (first-order) autograd.
    """

    value: Tensor
    """:math:`g(x)`, shape ``(N, D)``."""
    weights: list[Tensor]
    r"""The normalized weights :math:`W_1, \dots, W_L`."""
    slopes: list[Tensor]
    r"""The slopes :math:`\sigma'(a_l)`, each ``(N, width_l)``."""

    def jacobian(self) -> Tensor:
        """The Jacobians ``(N, D, D)``."""
        product = self.weights[0].expand(self.value.shape[0], *self.weights[0].shape)
        for weight, slope in zip(self.weights[1:], self.slopes, strict=True):
            product = weight @ (slope.unsqueeze(-1) * product)
        return product

    def vjp(self, u: Tensor) -> Tensor:
        r"""The vector-Jacobian products :math:`u^\top J`, row by row, for ``u`` of shape ``(N, D)``."""
        for weight, slope in zip(reversed(self.weights[1:]), reversed(self.slopes), strict=True):
            u = (u @ weight) * slope
        return u @ self.weights[0]

    def detach(self) -> Linearization:
        """The same linearization without gradients."""
        return Linearization(self.value.detach(), [w.detach() for w in self.weights], [s.detach() for s in self.slopes])


def slope(activation: nn.Module, h: Tensor) -> Tensor:
    """The derivative of one of the :data:`LIPSCHITZ_ACTIVATIONS` at ``h``."""
    if isinstance(activation, LipSwish):
        beta = F.softplus(activation.raw_beta)
        sigmoid = torch.sigmoid(beta * h)
        return (sigmoid + beta * h * sigmoid * (1 - sigmoid)) / 1.1
    if isinstance(activation, nn.ELU):
        return torch.where(h > 0, torch.ones_like(h), torch.exp(torch.clamp(h, max=0.0)))
    if isinstance(activation, nn.Tanh):
        return 1 - torch.tanh(h) ** 2
    raise TypeError(f"no derivative is known for the activation {type(activation).__name__}")


class LipschitzMLP(nn.Module):
    r"""A network :math:`g(x, c)` with :math:`\operatorname{Lip}_x(g) \le c^L < 1`: spectrally normalized linear
    layers (:class:`SpectralLinear`) between 1-Lipschitz activations.

    Args:
        features: input and output width.
        hidden: the hidden widths.
        coefficient: the spectral-norm bound :math:`c` of every layer.
        activation: a factory for a 1-Lipschitz activation (see :data:`LIPSCHITZ_ACTIVATIONS`).
        context_features: width of a flattened context, added to the first layer by an unconstrained linear map
            (0 for none).
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (128, 128),
        coefficient: float = 0.97,
        activation: Callable[[], nn.Module] = LipSwish,
        context_features: int = 0,
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError("hidden must name at least one layer width")
        widths = (features, *hidden, features)
        self.linears = nn.ModuleList(SpectralLinear(a, b, coefficient) for a, b in pairwise(widths))
        self.activations = nn.ModuleList(activation() for _ in hidden)
        self.context = nn.Linear(context_features, hidden[0], bias=False) if context_features else None

    def power_iteration(self, steps: int = 1) -> None:
        """Refine the spectral-norm estimates of every layer (called once per training-mode pass)."""
        for linear in self.linears:
            linear.power_iteration(steps)

    def _first_layer(self, x: Tensor, context: Tensor | None) -> Tensor:
        h = self.linears[0](x)
        if self.context is not None:
            if context is None:
                raise ValueError("this network was built with context features and needs a context")
            h = h + self.context(context)
        return h

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self._first_layer(x, context)
        for activation, linear in zip(self.activations, self.linears[1:], strict=True):
            h = linear(activation(h))
        return h

    def linearize(self, x: Tensor, context: Tensor | None = None) -> Linearization:
        """The value at a batch ``x`` of shape ``(N, D)`` and the factors of its Jacobians (one pass)."""
        weights = [linear.normalized_weight() for linear in self.linears]
        h = self._first_layer(x, context)
        slopes = []
        for activation, linear, weight in zip(self.activations, self.linears[1:], weights[1:], strict=True):
            slopes.append(slope(activation, h))
            h = F.linear(activation(h), weight, linear.bias)
        return Linearization(h, weights, slopes)
