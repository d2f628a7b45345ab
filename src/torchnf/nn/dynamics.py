r"""Time-dependent networks for the dynamics :math:`\frac{dz}{dt} = f(z, t, c)` of continuous flows.

:class:`DynamicsNet` stacks concat-squash layers (Grathwohl et al. 2019, *FFJORD: free-form continuous dynamics for
scalable reversible generative models*), in which time and the context :math:`c` gate and shift every layer:

.. math::

    \ell(h;\ s) = (W h + b) \odot \sigma(A s + a) + B s, \qquad s = (t, c).

The activation must be smooth: adaptive solvers assume a smooth right-hand side (their error estimates are
Taylor expansions), and the change of variables integrates :math:`\operatorname{tr} \partial f / \partial z`,
which is piecewise constant and discontinuous for ReLU networks. So only smooth activations are offered by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

__all__ = ["SMOOTH_ACTIVATIONS", "ConcatSquash", "DynamicsNet", "smooth_activation"]

SMOOTH_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}
"""The activations a :class:`DynamicsNet` accepts by name (ELU is once, the others infinitely differentiable)."""


def smooth_activation(activation: str | Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """The factory of a smooth activation named in :data:`SMOOTH_ACTIVATIONS`; a callable factory passes through
    (its smoothness is then the caller's responsibility)."""
    if callable(activation):
        return activation
    try:
        return SMOOTH_ACTIVATIONS[activation]
    except KeyError:
        hint = " (it is not smooth: ODE solvers and the trace need a smooth network)" if "relu" in activation else ""
        raise ValueError(
            f"unknown dynamics activation {activation!r}{hint}; expected one of {sorted(SMOOTH_ACTIVATIONS)}"
        ) from None


class ConcatSquash(nn.Module):
    r"""A concat-squash layer :math:`(W h + b) \odot \sigma(A s + a) + B s` (FFJORD, Grathwohl et al. 2019): a
    linear map of :math:`h` whose outputs are gated and shifted by the conditioning :math:`s = (t, c)`.

    Args:
        in_features: the width of :math:`h`.
        out_features: the output width.
        condition_features: the width of :math:`s` (1 for time alone, plus the context's size).
    """

    def __init__(self, in_features: int, out_features: int, condition_features: int = 1) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.gate = nn.Linear(condition_features, out_features)
        self.shift = nn.Linear(condition_features, out_features, bias=False)

    def forward(self, h: Tensor, s: Tensor) -> Tensor:
        return self.linear(h) * torch.sigmoid(self.gate(s)) + self.shift(s)


class DynamicsNet(nn.Module):
    r"""The dynamics :math:`f(z, t, c)` of a continuous flow: concat-squash layers with a smooth activation.

    .. math::

        f(z, t, c) = \ell_L(\sigma(\dots \sigma(\ell_1(z;\ s)) \dots);\ s), \qquad s = (t, c),

    where each :math:`\ell_k` is a :class:`ConcatSquash` layer (FFJORD, Grathwohl et al. 2019). The context
    enters every layer through its gate and shift.

    Args:
        features: the dimension :math:`D` of :math:`z`.
        context_features: the size of the (flattened) context, 0 for none.
        hidden: the hidden widths.
        activation: a name in :data:`SMOOTH_ACTIVATIONS` (ReLU is refused), or a module factory.
        zero_init: start the last layer at zero, so the flow starts as the identity map (and the solver's first
            steps are cheap).

    Example:
        >>> import torch
        >>> f = DynamicsNet(2, hidden=(16, 16))
        >>> f(torch.tensor(0.5), torch.randn(10, 2)).shape
        torch.Size([10, 2])
    """

    def __init__(
        self,
        features: int,
        context_features: int = 0,
        hidden: Sequence[int] = (64, 64, 64),
        activation: str | Callable[[], nn.Module] = "tanh",
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if features < 1 or context_features < 0:
            raise ValueError(
                f"DynamicsNet needs features >= 1 and context_features >= 0, got {features}, {context_features}"
            )
        if not hidden or any(w < 1 for w in hidden):
            raise ValueError(f"hidden must name at least one positive layer width, got {hidden}")
        factory = smooth_activation(activation)
        self.features, self.context_features = features, context_features
        widths = (features, *hidden, features)
        self.layers = nn.ModuleList(ConcatSquash(a, b, 1 + context_features) for a, b in pairwise(widths))
        self.activations = nn.ModuleList(factory() for _ in hidden)
        if zero_init:
            last = self.layers[-1]
            for parameter in (last.linear.weight, last.linear.bias, last.shift.weight):
                nn.init.zeros_(parameter)

    def forward(self, t: Tensor, z: Tensor, context: Tensor | None = None) -> Tensor:
        """:math:`f(z, t, c)` for ``z`` of shape ``(*batch, D)``, a scalar time ``t`` and a context of shape
        ``(*batch, context_features)`` (required when ``context_features > 0``)."""
        s = t.to(z).expand(*z.shape[:-1], 1)
        if self.context_features:
            if context is None:
                raise ValueError("this DynamicsNet was built with context_features > 0 and needs a context")
            s = torch.cat([s, context], dim=-1)
        h = z
        for layer, activation in zip(self.layers, self.activations, strict=False):
            h = activation(layer(h, s))
        return self.layers[-1](h, s)
