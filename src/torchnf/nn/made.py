r"""MADE: masked autoencoder for distribution estimation (Germain et al. 2015).

Each input dimension :math:`i` gets a degree :math:`m(i) \in \{1, \dots, D\}` (its position in the
autoregressive order). Hidden units get degrees in :math:`\{m_0, \dots, D-1\}` and a connection from a unit of
degree :math:`a` to a hidden unit of degree :math:`b` exists iff :math:`b \ge a`; output block :math:`i` connects
to hidden units of degree strictly below :math:`m(i)`. Output :math:`i` then depends only on inputs that come
before :math:`i` in the order. Context inputs have degree 0 and reach every hidden unit; when there is a
context (or :math:`D = 1`) hidden degrees start at :math:`m_0 = 0`, so the first dimension's parameters can
depend on the context as well.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mlp import Activation, ResidualBlock

__all__ = ["MADE", "MaskedLinear", "SequentialMADE"]


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied elementwise by a fixed 0/1 ``mask`` of shape ``(out, in)``."""

    mask: Tensor

    def __init__(self, mask: Tensor, bias: bool = True) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """A masked MLP mapping ``(*batch, D)`` (and a context ``(*batch, C)``) to ``(*batch, D, P)`` parameters.

    Args:
        features: the number of autoregressive dimensions ``D``.
        params_per_feature: the number ``P`` of outputs per dimension.
        hidden: hidden widths (each at least ``D - 1`` is advisable so every degree is present).
        order: the autoregressive order, a permutation of ``range(D)``; ``order[k]`` is the k-th dimension.
            Default: ``0, 1, ..., D - 1``.
        context_features: the width of a flat context, or 0 for none.
        activation: a factory for the nonlinearity.
        residual: use masked residual blocks (hidden widths must then be equal).
        zero_init: start the output layer at zero.
    """

    def __init__(
        self,
        features: int,
        params_per_feature: int,
        hidden: Sequence[int] = (128, 128),
        order: Sequence[int] | Tensor | None = None,
        context_features: int = 0,
        activation: Activation = nn.ReLU,
        residual: bool = False,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError("hidden must name at least one layer width")
        if residual and len(set(hidden)) != 1:
            raise ValueError(f"a residual MADE needs equal hidden widths, got {hidden}")
        order_t = torch.arange(features) if order is None else torch.as_tensor(order, dtype=torch.long)
        if sorted(order_t.tolist()) != list(range(features)):
            raise ValueError(f"order must be a permutation of range({features}), got {order_t.tolist()}")
        self.features, self.params_per_feature, self.context_features = features, params_per_feature, context_features
        self.residual = residual

        # degree of input dimension i = 1 + its position in the order
        in_degrees = torch.empty(features, dtype=torch.long)
        in_degrees[order_t] = torch.arange(1, features + 1)
        low = 0 if (context_features > 0 or features == 1) else 1
        span = max(features - low, 1)

        def hidden_degrees(width: int) -> Tensor:
            return low + torch.arange(width) % span

        context_degrees = torch.zeros(context_features, dtype=torch.long)
        degrees = [torch.cat([in_degrees, context_degrees])]
        layers: list[nn.Module] = []
        widths = hidden[:1] if residual else hidden
        for width in widths:
            h = hidden_degrees(width)
            layers += [MaskedLinear((h[:, None] >= degrees[-1][None, :]).float())]
            layers += [activation()]
            degrees.append(h)
        self.hidden_degrees: tuple[Tensor, ...] = tuple(degrees[1:])
        """The degree of every hidden unit, a tensor per masked hidden layer (one, the first, when residual)."""
        if residual:
            mask = (degrees[-1][:, None] >= degrees[-1][None, :]).float()
            layers.pop()  # blocks apply their own pre-activation
            layers += [ResidualBlock(hidden[0], activation, lambda i, o: MaskedLinear(mask)) for _ in hidden[1:]]
            layers += [activation()]
        out_degrees = in_degrees.repeat_interleave(params_per_feature)
        last = MaskedLinear((out_degrees[:, None] > degrees[-1][None, :]).float())
        if zero_init:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers.append(last)
        self.net = nn.Sequential(*layers)
        self.register_buffer("order", order_t, persistent=False)
        self._init_steps(residual)

    def _init_steps(self, residual: bool) -> None:
        """What :class:`SequentialMADE` needs of the structure, computed once: each hidden layer's units sorted by
        degree (left in place when residual), how many of them step ``k`` uses, and each dimension's step."""
        for layer, degree in enumerate(self.hidden_degrees):
            units = torch.arange(len(degree)) if residual else torch.argsort(degree, stable=True)
            self.register_buffer(f"units_by_degree_{layer}", units, persistent=False)
        # step_units[l][k]: the units of hidden layer l of degree at most k, which step k uses
        steps = torch.arange(self.features)
        self.step_units = [torch.searchsorted(d.sort().values, steps, right=True).tolist() for d in self.hidden_degrees]
        self.step_of = self.order.argsort().tolist()

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_features:
            if context is None:
                raise ValueError("this MADE was built with context_features > 0 and needs a context")
            x = torch.cat([x, context], dim=-1)
        out = self.net(x)
        return out.unflatten(-1, (self.features, self.params_per_feature))

    def sequential(self, batch_shape: torch.Size, context: Tensor | None = None) -> SequentialMADE:
        """A :class:`SequentialMADE` over inputs of shape ``(*batch_shape, D)``, all zero at first."""
        return SequentialMADE(self, batch_shape, context)


class SequentialMADE:
    r"""A MADE evaluated one dimension at a time, for the :math:`D` sequential steps of an autoregressive inverse.

    The inputs start at zero; :meth:`parameters` gives dimension :math:`d`'s parameters from the inputs set so far
    and :meth:`set_input` sets :math:`x_d`. Called in the autoregressive order, step :math:`k` sees
    :math:`x_{<k}` exact, as a full pass would. Three savings over :math:`D` full passes:

    - only the :math:`P` rows of the output layer that belong to :math:`d` are computed;
    - the first layer is linear, so its pre-activation :math:`a = W_1 x + b_1` is kept and updated by the
      rank-one term :math:`W_1[:, d]\,x_d` when :math:`x_d` is set;
    - output :math:`d` (degree :math:`m`) depends only on hidden units of degree below :math:`m`, which depend
      only on units of lower degree in the layers before. With each hidden layer's units sorted by degree, step
      :math:`k` multiplies leading blocks of the weights only: a third of the hidden products on average
      (residual MADEs, whose blocks are opaque, run their hidden layers whole).

    Nothing is written in place, so the result is differentiable (reverse-KL fitting samples through it).

    Args:
        made: the network.
        batch_shape: the batch shape of the inputs.
        context: a flat context of shape ``(*batch_shape, C)`` when the MADE has one.
    """

    def __init__(self, made: MADE, batch_shape: torch.Size, context: Tensor | None = None) -> None:
        if made.context_features and context is None:
            raise ValueError("this MADE was built with context_features > 0 and needs a context")
        net, dim = made.net, made.features
        first, last = net[0], net[-1]
        self.body, self.prefix = net[1:-1], not made.residual
        orders = [getattr(made, f"units_by_degree_{layer}") for layer in range(len(made.hidden_degrees))]
        self.counts, self.position = made.step_units, made.step_of
        self.batch_shape = batch_shape

        w_first = (first.weight * first.mask)[orders[0]]
        self.w_first = w_first[:, :dim].T.contiguous()  # (D, H): row d is the update direction of x_d
        if context is None:
            self.pre = first.bias[orders[0]].expand(batch_shape.numel(), -1)
        else:
            self.pre = F.linear(context.reshape(-1, made.context_features), w_first[:, dim:], first.bias[orders[0]])
        self.linears: list[tuple[Tensor, Tensor]] = []
        if self.prefix:
            for layer, (rows, columns) in enumerate(zip(orders[1:], orders[:-1], strict=True)):
                masked = self.body[2 * layer + 1]
                weight = (masked.weight * masked.mask)[rows][:, columns]
                self.linears.append((weight, masked.bias[rows]))
        w_last = (last.weight * last.mask)[:, orders[-1]]
        self.w_last = w_last.unflatten(0, (dim, made.params_per_feature))
        self.b_last = last.bias.unflatten(0, (dim, made.params_per_feature))

    def parameters(self, d: int) -> Tensor:
        """Dimension ``d``'s parameters, ``(*batch_shape, P)``, from the inputs set so far."""
        if not self.prefix:
            hidden = self.body(self.pre)
            return F.linear(hidden, self.w_last[d], self.b_last[d]).reshape(*self.batch_shape, -1)
        counts = [count[self.position[d]] for count in self.counts]
        hidden = self.pre[:, : counts[0]]
        layer = 0
        for module in self.body:
            if isinstance(module, MaskedLinear):
                weight, bias = self.linears[layer]
                layer += 1
                hidden = F.linear(hidden, weight[: counts[layer], : counts[layer - 1]], bias[: counts[layer]])
            else:
                hidden = module(hidden)
        params = F.linear(hidden, self.w_last[d, :, : counts[-1]], self.b_last[d])
        return params.reshape(*self.batch_shape, -1)

    def set_input(self, d: int, value: Tensor) -> None:
        """Set input ``x_d`` (shape ``batch_shape``) from zero to ``value``."""
        self.pre = torch.addr(self.pre, value.reshape(-1), self.w_first[d])
