"""Multilayer perceptrons used as conditioner networks."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from itertools import pairwise

from torch import Tensor, nn

__all__ = ["MLP", "Activation", "ResidualBlock"]

Activation = Callable[[], nn.Module]


class ResidualBlock(nn.Module):
    r"""A pre-activation residual block :math:`h + W_2\,\sigma(W_1\,\sigma(h))` (He et al. 2016, *Identity
    mappings in deep residual networks*).

    Args:
        width: the number of features in and out.
        activation: a factory for the nonlinearity :math:`\sigma`.
        linear: a factory ``(in, out) -> module`` for the two linear maps (masked linear maps in MADE).
    """

    def __init__(
        self,
        width: int,
        activation: Activation = nn.ReLU,
        linear: Callable[[int, int], nn.Module] = nn.Linear,
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(activation(), linear(width, width), activation(), linear(width, width))

    def forward(self, h: Tensor) -> Tensor:
        return h + self.net(h)


class MLP(nn.Sequential):
    """A fully connected network ``in_features -> hidden -> out_features``.

    Args:
        in_features: input width (may be zero: the output is then a learned constant).
        out_features: output width.
        hidden: widths of the hidden layers; with ``residual=True`` they must all be equal and each one after
            the first becomes a :class:`ResidualBlock`.
        activation: a factory for the nonlinearity between layers.
        residual: use residual blocks between the first and last layers.
        zero_init: start the last layer at zero, so a conditioner built on the network starts as the identity.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (128, 128),
        activation: Activation = nn.ReLU,
        residual: bool = False,
        zero_init: bool = True,
    ) -> None:
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError("hidden must name at least one layer width")
        if residual and len(set(hidden)) != 1:
            raise ValueError(f"a residual MLP needs equal hidden widths, got {hidden}")
        with warnings.catch_warnings():
            # a network of nothing (a one-dimensional coupling without context) is a learned constant
            warnings.filterwarnings("ignore", "Initializing zero-element tensors is a no-op")
            layers: list[nn.Module] = [nn.Linear(in_features, hidden[0])]
        if residual:
            layers += [ResidualBlock(hidden[0], activation) for _ in hidden[1:]]
        else:
            for a, b in pairwise(hidden):
                layers += [activation(), nn.Linear(a, b)]
        last = nn.Linear(hidden[-1], out_features)
        if zero_init:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers += [activation(), last]
        super().__init__(*layers)
