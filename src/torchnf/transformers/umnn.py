r"""The unconstrained monotonic neural network transformer (Wehenkel and Louppe 2019, *Unconstrained monotonic
neural networks*).

A monotone map is the integral of a positive function:

.. math::

    \tau(x; h, \beta) = \int_0^x g(t; h)\,dt + \beta, \qquad \log\tau'(x) = \log g(x; h),

where the integrand :math:`g > 0` is a free (unconstrained) network of :math:`(t, h)` and the conditioner
supplies the embedding :math:`h` and the offset :math:`\beta`. The integral is computed by Clenshaw--Curtis
quadrature on :math:`[0, x]` (Clenshaw and Curtis 1960; the weights of Waldvogel 2006, *Fast construction of the
Fejér and Clenshaw--Curtis quadrature rules*). The inverse has no closed form: it is computed by
:func:`torchnf.roots.monotone_inverse`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..nn.mlp import MLP, Activation
from ..roots import monotone_inverse
from .base import Transformer

__all__ = ["UMNN", "clenshaw_curtis"]


def clenshaw_curtis(points: int) -> tuple[Tensor, Tensor]:
    r"""Nodes and weights of the ``points``-point Clenshaw--Curtis rule on :math:`[-1, 1]`, in float64.

    With :math:`n = \text{points} - 1`, the nodes are :math:`\xi_k = \cos(k\pi/n)` (the first is :math:`1`) and
    the weights :math:`w_k = \frac{c_k}{n}\big(1 - \sum_{j=1}^{\lfloor n/2\rfloor} \frac{b_j}{4j^2 - 1}
    \cos(2jk\pi/n)\big)` with :math:`c_0 = c_n = 1`, :math:`c_k = 2` otherwise, :math:`b_{n/2} = 1`, :math:`b_j = 2`
    otherwise. The rule integrates polynomials of degree :math:`n` exactly.
    """
    if not (isinstance(points, int) and points >= 2):
        raise ValueError(f"Clenshaw-Curtis quadrature needs an int number of points >= 2, got {points!r}")
    n = points - 1
    k = torch.arange(points, dtype=torch.float64)
    j = torch.arange(1, n // 2 + 1, dtype=torch.float64)
    b = 2.0 - (2 * j == n).to(torch.float64)
    series = (b / (4 * j**2 - 1) * torch.cos(2 * math.pi * j * k[:, None] / n)).sum(-1)
    c = 2.0 - ((k == 0) | (k == n)).to(torch.float64)
    return torch.cos(math.pi * k / n), c / n * (1 - series)


class UMNN(Transformer):
    r"""The UMNN transformer :math:`\tau(x) = \int_0^x g(t; h)\,dt + \beta` with a learned positive integrand.

    The integrand is :math:`g(t; h) = \exp\big(B \tanh(\mathrm{net}(t, h) / B)\big)`, an :class:`~torchnf.nn.MLP`
    of :math:`(t, h)` (the paper uses ELU + 1; the bounded log keeps :math:`e^{-B} \le \tau' \le e^{B}`, so the map
    is onto :math:`\mathbb{R}` and its inverse well conditioned). Per dimension ``n_params = embedding + 1``: the
    embedding :math:`h`, then :math:`\beta`. With :math:`N` nodes :math:`t_k = x(1 + \xi_k)/2` and weights
    :math:`w_k` of :func:`clenshaw_curtis`,

    .. math::

        \tau(x) \approx \beta + \frac{x}{2} \sum_{k} w_k\, g(t_k; h), \qquad \log\tau'(x) = \log g(x; h),

    the log-derivative of the exact integral, read off the node :math:`t_0 = x`. It differs from the derivative of
    the quadrature sum by the quadrature's error in the derivative: negligible for smooth integrands (hence the
    smooth default activation) on the range of standardized data (about 1e-12 for :math:`|x| \le 4`), growing with
    :math:`|x|`. Likewise the sum is increasing, as the integral is, wherever the rule resolves :math:`g`; for
    inputs far outside the data's range raise ``nodes``.

    The network's last layer starts at zero, so a new transformer has :math:`g \equiv 1`: zero parameters give
    the identity. Unlike the other transformers it has weights of its own (the network's), trained with the
    conditioner. Gradients of the forward map go through the quadrature, which stores the network's activations
    at all :math:`N` nodes (memory :math:`\propto N \times` width per element); the inverse uses the root finder's
    implicit gradients.

    Args:
        embedding: the size of :math:`h`.
        hidden: hidden widths of the integrand network.
        nodes: the number of quadrature points :math:`N` (exact for polynomials of degree :math:`N - 1`).
        activation: the network's nonlinearity (smooth ones keep the quadrature accurate).
        log_slope_bound: the bound :math:`B` on :math:`|\log\tau'|`.
        tol: the root finder's tolerance for the inverse (default: that of the dtype).
    """

    def __init__(
        self,
        embedding: int = 8,
        hidden: Sequence[int] = (32, 32),
        nodes: int = 20,
        activation: Activation = nn.SiLU,
        log_slope_bound: float = 5.0,
        tol: float | None = None,
    ) -> None:
        super().__init__()
        if not (isinstance(embedding, int) and embedding >= 0):
            raise ValueError(f"embedding must be a non-negative int, got {embedding!r}")
        if not log_slope_bound > 0:
            raise ValueError(f"log_slope_bound must be positive, got {log_slope_bound}")
        self.embedding, self.log_slope_bound, self.tol = embedding, float(log_slope_bound), tol
        self.n_params = embedding + 1
        self.net = MLP(1 + embedding, 1, hidden, activation, zero_init=True)
        xi, weights = clenshaw_curtis(nodes)
        # float64 buffers, cast to the input's dtype at use, so a module built in float32 and then moved to float64
        # keeps a float64-exact rule (a module moved to float32 first keeps a float32 one)
        self.register_buffer("nodes", (1 + xi) / 2, persistent=False)  # on [0, 1]; nodes[0] = 1
        self.register_buffer("weights", weights / 2, persistent=False)  # for [0, 1]; they sum to 1

    def log_integrand(self, t: Tensor, h: Tensor) -> Tensor:
        r""":math:`\log g(t; h)` for ``t`` of shape ``(..., N)`` and ``h`` of shape ``(..., embedding)``."""
        features = torch.cat([t.unsqueeze(-1), h.unsqueeze(-2).expand(*t.shape, self.embedding)], dim=-1)
        bound = self.log_slope_bound
        return bound * torch.tanh(self.net(features).squeeze(-1) / bound)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        if params.shape[-1] != self.n_params:
            raise ValueError(f"UMNN expects {self.n_params} parameters, got {params.shape[-1]}")
        h, beta = params[..., :-1], params[..., -1]
        nodes, weights = self.nodes.to(x.dtype), self.weights.to(x.dtype)
        log_g = self.log_integrand(x.unsqueeze(-1) * nodes, h)
        return beta + x * (log_g.exp() * weights).sum(-1), log_g[..., 0]

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        guess = y - params[..., -1]  # the root when g = 1
        half_width = 1 + guess.abs() / 1024  # never rounds away, even for large float32 values
        bracket = (guess - half_width, guess + half_width)
        x, log_derivative = monotone_inverse(lambda x: self.forward(x, params), y, *bracket, tol=self.tol)
        return x, -log_derivative

    def extra_repr(self) -> str:
        return f"embedding={self.embedding}, nodes={len(self.nodes)}, log_slope_bound={self.log_slope_bound}"
