"""A network adapter the nflows-style coupling layers need."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["IgnoreContext"]


class IgnoreContext(nn.Module):
    """Wraps an unconditional network for coupling layers that call ``net(x, context)`` (nflows, normflows).

    ``hidden_features`` is set because those layers divide the spline's unnormalized widths and heights by its
    square root when the network has it (their own ``ResidualNet`` does), and warn otherwise.
    """

    def __init__(self, net: nn.Module, hidden_features: int) -> None:
        super().__init__()
        self.net = net
        self.hidden_features = hidden_features

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The wrapped network's output for ``x``; ``context`` must be ``None``."""
        if context is not None:
            raise ValueError("this network is unconditional")
        return self.net(x)
