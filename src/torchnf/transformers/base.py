r"""The transformer contract: an elementwise monotone map whose parameters come from a conditioner.

A transformer :math:`\tau(\cdot;\theta)` acts on each dimension :math:`i` separately with its own parameters
:math:`\theta_i \in \mathbb{R}^P`, where :math:`P` is :attr:`Transformer.n_params`. Conditioners (coupling
layers, masked autoregressive layers) produce the parameters; the transformer returns the transformed values and
the elementwise log-derivatives :math:`\log \tau'(x_i;\theta_i)`, which the conditioner sums into a log-det.

All-zero parameters give the identity map, so a conditioner whose last layer starts at zero starts as the
identity (Kingma and Dhariwal 2018, *Glow*, section 3.3).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["Transformer"]


class Transformer(nn.Module):
    """An elementwise, strictly increasing map ``y = tau(x; params)`` with ``params`` of shape ``(*x.shape, P)``.

    Subclasses set :attr:`n_params` and implement :meth:`forward` and :meth:`inverse`; both return the output and
    the elementwise log-derivative of the map they applied (so the two are opposite at matching points).
    """

    n_params: int

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(tau(x), log tau'(x))``, elementwise."""
        raise NotImplementedError

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(tau^{-1}(y), log (tau^{-1})'(y))``, elementwise."""
        raise NotImplementedError
