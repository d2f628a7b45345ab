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

__all__ = ["MADE", "MaskedLinear"]


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

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_features:
            if context is None:
                raise ValueError("this MADE was built with context_features > 0 and needs a context")
            x = torch.cat([x, context], dim=-1)
        out = self.net(x)
        return out.unflatten(-1, (self.features, self.params_per_feature))
