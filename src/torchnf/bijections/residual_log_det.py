r"""Log-determinants of residual maps :math:`x \mapsto x + g(x)` with :math:`\operatorname{Lip}(g) < 1`.

With :math:`J = \partial g / \partial x`, the eigenvalues of :math:`I + J` have positive real parts, and

.. math::

    \log\det(I + J) = \sum_{k=1}^{\infty} \frac{(-1)^{k+1}}{k} \operatorname{tr}(J^k)
    \quad\text{(Behrmann et al. 2019, Invertible residual networks)}.

Three estimators of it, all given the :class:`~torchnf.nn.lipschitz.Linearization` of :math:`g` at a batch
``(N, D)``, whose Jacobians are products of the layers' weights and activation slopes: a vector-Jacobian product
costs a pass through the weights and is differentiable by ordinary first-order autograd (no double backward).

* :func:`exact_log_det`: the full Jacobian and ``slogdet``; exact, for small ``D``.
* :func:`stochastic_log_det` with :func:`series_weights`: the series truncated after :math:`n` terms, each trace
  by Hutchinson's estimator :math:`\operatorname{tr}(J^k) = \mathbb E_v[v^\top J^k v]` (i-ResNet); biased by the
  truncation.
* :func:`stochastic_log_det` with :func:`roulette_weights`: the unbiased Russian-roulette estimator of Chen et
  al. 2019 (*Residual flows for invertible generative modeling*): draw the number of terms :math:`n`, always
  at least ``exact_terms``, and weight term :math:`k` by :math:`1 / P(n \ge k)`, so that

  .. math::

      \mathbb E_{n, v}\Big[\sum_{k=1}^{n} \frac{(-1)^{k+1}}{k} \frac{v^\top J^k v}{P(n \ge k)}\Big]
      = \log\det(I + J).

The gradient of a stochastic estimate is either backpropagated through its :math:`n` vector-Jacobian products
(memory grows with :math:`n`) or given by the Neumann-series estimator of Chen et al. 2019,

.. math::

    \frac{\partial}{\partial\theta}\log\det(I + J) = \operatorname{tr}\Big((I + J)^{-1}\frac{\partial J}{\partial
    \theta}\Big) \approx \Big(\sum_{k=0}^{n-1} \frac{(-1)^k}{P(n \ge k + 1)} v^\top J^k\Big)
    \frac{\partial J}{\partial\theta} v,

computed without a graph for the vector in brackets and with one differentiable vector-Jacobian product: memory
stays that of a single product whatever :math:`n`. Both gradient estimators have the expectation of the gradient
of the estimated series (term by term, by the cyclic property of the trace), so the roulette's is unbiased.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from ..nn.lipschitz import Linearization

__all__ = ["Noise", "exact_log_det", "hutchinson_noise", "roulette_weights", "series_weights", "stochastic_log_det"]

Noise = Literal["gaussian", "rademacher"]


def exact_log_det(linearization: Linearization) -> Tensor:
    """``log det(I + J)`` per row, from the full Jacobians."""
    jacobian = linearization.jacobian()
    identity = torch.eye(jacobian.shape[-1], dtype=jacobian.dtype, device=jacobian.device)
    return torch.linalg.slogdet(identity + jacobian).logabsdet


def series_weights(terms: int) -> list[float]:
    """The weights of the power series truncated after ``terms`` terms: all 1."""
    return [1.0] * terms


def roulette_weights(exact_terms: int, probability: float, generator: torch.Generator | None = None) -> list[float]:
    r"""Russian-roulette weights :math:`1 / P(n \ge k)`, ``k = 1..n``, for one draw of the number of terms
    :math:`n = \text{exact\_terms} + N`, :math:`N \sim \operatorname{Geometric}(p)` on :math:`\{0, 1, \dots\}`
    with :math:`P(N \ge m) = (1 - p)^m` (drawn by inversion: :math:`N = \lfloor \log(1 - U) / \log(1 - p)
    \rfloor`)."""
    uniform = float(torch.rand((), generator=generator))
    extra = math.floor(math.log1p(-uniform) / math.log1p(-probability))
    survival = 1.0 - probability
    return [1.0] * exact_terms + [survival**-m for m in range(1, extra + 1)]


def hutchinson_noise(like: Tensor, noise: Noise) -> Tensor:
    r"""A probe vector per row with :math:`\mathbb E[v v^\top] = I`: standard normal or random signs."""
    if noise == "gaussian":
        return torch.randn_like(like)
    return torch.randint_like(like, 2).mul_(2).sub_(1)


def stochastic_log_det(
    linearization: Linearization,
    weights: list[float],
    noise: Noise = "gaussian",
    neumann_gradient: bool = False,
) -> Tensor:
    r"""The weighted series :math:`\sum_k \frac{(-1)^{k+1}}{k} w_k v^\top J^k v` per row, one Hutchinson probe
    per row (see the module docstring), with backpropagated or Neumann-series gradients."""
    v = hutchinson_noise(linearization.value, noise)
    if not neumann_gradient:
        estimate, u = v.new_zeros(v.shape[0]), v
        for k, weight in enumerate(weights, start=1):
            u = linearization.vjp(u)
            estimate = estimate + ((-1) ** (k + 1) * weight / k) * (u * v).sum(-1)
        return estimate
    frozen = linearization.detach()
    estimate, u, gradient_vector = v.new_zeros(v.shape[0]), v, torch.zeros_like(v)
    for k, weight in enumerate(weights, start=1):
        gradient_vector = gradient_vector + ((-1) ** (k - 1) * weight) * u
        u = frozen.vjp(u)
        estimate = estimate + ((-1) ** (k + 1) * weight / k) * (u * v).sum(-1)
    surrogate = (linearization.vjp(gradient_vector) * v).sum(-1)
    return estimate + (surrogate - surrogate.detach())
