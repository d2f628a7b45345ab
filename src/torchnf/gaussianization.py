r"""Fitting one sliced Gaussianization layer to data, without gradient steps on the likelihood.

Dai and Seljak 2021, *Sliced Iterative Normalizing Flows* (section 3): an iteration first finds :math:`K`
orthonormal directions along which the data differ most from a standard normal, maximizing the
:math:`K`-sliced Wasserstein distance

.. math::

    \max_{A \in \mathbb R^{D \times K},\ A^\top A = I_K}\ \sum_{k=1}^K W_2^2\big(a_k^\top x,\ \mathcal N(0, 1)\big),
    \qquad W_2^2 \approx \frac1n \sum_{i=1}^n \big(u_{(i)} - \Phi^{-1}(\tfrac{i - 1/2}{n})\big)^2,

with :math:`u_{(i)}` the sorted projections, and then Gaussianizes each projection by the monotone map
:math:`\Psi_k = \Phi^{-1} \circ \hat F_k`, where :math:`\hat F_k` is the CDF of a Gaussian kernel density estimate
of the projections. :math:`\Psi_k` is stored as a rational-quadratic spline through knots at quantiles of the
projections, with knot derivatives :math:`\Psi_k' = \hat f_k / \varphi(\Psi_k)`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["gaussianizing_knots", "max_sliced_directions", "sliced_wasserstein"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
MAX_LOG_DERIVATIVE = math.log(1e3)  # the knot derivatives are kept within [1e-3, 1e3]


def _normal_quantiles(n: int, like: Tensor) -> Tensor:
    levels = (torch.arange(n, dtype=like.dtype, device=like.device) + 0.5) / n
    return torch.special.ndtri(levels)


def sliced_wasserstein(u: Tensor) -> Tensor:
    r"""The squared 2-Wasserstein distance of each column of ``u`` ``(n, K)`` to :math:`\mathcal N(0, 1)`: ``(K,)``."""
    return (u.sort(dim=0).values - _normal_quantiles(u.shape[0], u).unsqueeze(-1)).square().mean(0)


def max_sliced_directions(
    x: Tensor, directions: int, steps: int = 50, generator: torch.Generator | None = None
) -> Tensor:
    r"""Orthonormal directions ``(D, K)`` of (locally) maximal :math:`K`-sliced Wasserstein distance to the normal.

    Riemannian gradient ascent on the Stiefel manifold, from a random orthonormal start drawn with ``generator``.
    With :math:`t_{ik}` the normal quantile of the rank of :math:`u_{ik} = (xA)_{ik}`, the Euclidean gradient of the
    objective is :math:`G = \frac2n x^\top (u - t)`; its projection on the tangent space is :math:`\xi = G -
    A\,\mathrm{sym}(A^\top G)`, and a step moves to the :math:`Q` factor of :math:`A + \eta\,\xi / \|\xi\|`
    (a retraction). The step length :math:`\eta` grows by 1.2 after a step that raises the objective and halves
    after one that does not, which is then undone. The result is in ``x``'s dtype.
    """
    data = x.detach().double()
    n = data.shape[0]
    quantiles = _normal_quantiles(n, data).unsqueeze(-1).expand(n, directions)
    best = torch.linalg.qr(torch.randn(data.shape[-1], directions, generator=generator, dtype=data.dtype)).Q
    best = best.to(data.device)
    best_value, step, ascent = -math.inf, 0.5, torch.zeros_like(best)
    candidate = best
    for _ in range(steps + 1):
        u = data @ candidate
        target = torch.empty_like(u).scatter_(0, u.argsort(0), quantiles)
        value = float((u - target).square().mean(0).sum())
        if value > best_value:
            best, best_value, step = candidate, value, 1.2 * step
            gradient = data.T @ ((2 / n) * (u - target))
            ascent = gradient - best @ (0.5 * (best.T @ gradient + gradient.T @ best))
        else:
            step /= 2
        norm = float(ascent.norm())
        if norm == 0 or step < 1e-6:
            break
        candidate = torch.linalg.qr(best + (step / norm) * ascent).Q
    return best.to(x.dtype)


def _strictly_increasing(values: Tensor, spacing: Tensor) -> Tensor:
    """Sorted values along the last axis, pushed apart to gaps of at least ``spacing`` (per row)."""
    steps = torch.arange(values.shape[-1], dtype=values.dtype, device=values.device)
    return torch.cummax(values - steps * spacing, dim=-1).values + steps * spacing


@torch.no_grad()
def gaussianizing_knots(u: Tensor, knots: int, bandwidth: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    r"""Knots ``(x, y, derivatives)``, each ``(K, knots)`` in float64, of :math:`\Phi^{-1} \circ \hat F` per column
    of ``u`` ``(n, K)``, :math:`\hat F` being the CDF of a Gaussian kernel density estimate.

    The kernel width is ``bandwidth`` times Scott's rule, :math:`1.06\,\hat\sigma\,n^{-1/5}` (at least
    :math:`10^{-3}`). Knots lie at evenly spaced quantiles of the points, pushed apart where values repeat, and
    two kernel widths beyond the extreme points. The first and last knots are fixed points, :math:`\pm L` with
    :math:`y = x` and unit derivative, one unit beyond all others: the estimate's own tails are far steeper than a
    normal's (linear extrapolation would multiply an outlier by their slope at every layer), so the map returns
    to the identity instead, and points far outside the data pass through unchanged.
    """
    if knots < 5:
        raise ValueError(f"gaussianizing_knots needs at least 5 knots, got {knots}")
    data = u.detach().double().T  # (K, n)
    n = data.shape[-1]
    width = (bandwidth * 1.06 * data.std(-1, unbiased=False) * n ** (-0.2)).clamp_min(1e-3).unsqueeze(-1)
    levels = torch.linspace(0, 1, knots - 4, dtype=data.dtype, device=data.device)
    inner = torch.quantile(data, levels, dim=-1).T  # (K, knots - 4)
    knot_x = torch.cat([inner[:, :1] - 2 * width, inner, inner[:, -1:] + 2 * width], dim=-1)
    knot_x = _strictly_increasing(knot_x, 1e-4 * width)

    standardized = (knot_x.unsqueeze(-1) - data.unsqueeze(-2)) / width.unsqueeze(-1)  # (K, knots - 2, n)
    lower = torch.special.ndtr(standardized).mean(-1)  # F(x)
    upper = torch.special.ndtr(-standardized).mean(-1)  # 1 - F(x), accurate in the right tail
    knot_y = torch.where(lower < 0.5, torch.special.ndtri(lower), -torch.special.ndtri(upper))
    knot_y = _strictly_increasing(knot_y, torch.full_like(width, 1e-6))

    log_density = torch.logsumexp(-0.5 * standardized.square(), dim=-1) - _LOG_SQRT_2PI - math.log(n) - width.log()
    log_normal = -0.5 * knot_y.square() - _LOG_SQRT_2PI
    derivatives = (log_density - log_normal).clamp(-MAX_LOG_DERIVATIVE, MAX_LOG_DERIVATIVE).exp()

    reach = torch.cat([knot_x, knot_y], dim=-1).abs().amax(-1, keepdim=True) + 1
    ones = torch.ones_like(reach)
    return (
        torch.cat([-reach, knot_x, reach], dim=-1),
        torch.cat([-reach, knot_y, reach], dim=-1),
        torch.cat([ones, derivatives, ones], dim=-1),
    )
