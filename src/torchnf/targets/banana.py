r"""Curved ridges: the twisted Gaussian ("banana") and the hybrid Rosenbrock density.

Both are Gaussians pushed through a polynomial map with unit Jacobian, so they are normalized in closed form and
sampled exactly, while their narrow curved ridges defeat samplers and variational families tuned to straight ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache

import torch
from torch import Tensor

from .._validation import as_sample_shape
from .base import Target, check_dim, check_finite, check_positive, gaussian_log_normalizer

__all__ = ["Banana", "Rosenbrock"]


class Banana(Target):
    r"""The twisted Gaussian of Haario, Saksman and Tamminen (1999, "Adaptive proposal distribution for random walk
    Metropolis algorithm", *Computational Statistics*): a Gaussian bent into a parabola along its first axis,

    .. math::
        \pi(y) = \mathcal N\big(\phi(y);\ 0,\ \mathrm{diag}(s^2, 1, \dots, 1)\big), \qquad
        \phi(y) = (y_1,\ y_2 + b\,y_1^2 - b\,s^2,\ y_3, \dots, y_d).

    :math:`\phi` has unit Jacobian, so :math:`\pi` is normalized (:attr:`log_normalizer` is 0), and
    :math:`y = \phi^{-1}(u)` with :math:`u` Gaussian samples it exactly. The mean is 0 (:math:`\mathbb E[y_2] =
    -b\,\mathbb E[y_1^2] + b s^2 = 0`) and the variances are :math:`s^2`, :math:`1 + b^2\,\mathrm{Var}(y_1^2) = 1 + 2
    b^2 s^4` and 1 for the others. The paper uses :math:`s^2 = 100` with :math:`b = 0.03` (moderately twisted) and
    :math:`b = 0.1` (strongly twisted, the default here).

    Args:
        dim: the number of coordinates :math:`d \ge 2`.
        curvature: the twist :math:`b` (0 gives a Gaussian; negative values bend the other way).
        scale: the standard deviation :math:`s > 0` along the first axis.

    Example:
        >>> target = Banana()
        >>> target.variance  # s^2 and 1 + 2 b^2 s^4
        tensor([100., 201.])
        >>> target.log_prob(torch.tensor([0.0, 10.0])).item() == Banana(curvature=0.0).log_prob(torch.zeros(2)).item()
        True
    """

    def __init__(self, dim: int = 2, curvature: float = 0.1, scale: float = 10.0) -> None:
        super().__init__(check_dim(dim, 2))
        self.curvature = check_finite(curvature, "curvature")
        self.scale = check_positive(scale, "scale")

    def log_prob(self, x: Tensor) -> Tensor:
        self._check_points(x)
        y1, y2 = x[..., 0], x[..., 1]
        u2 = y2 + self.curvature * (y1.square() - self.scale**2)
        quadratic = (y1 / self.scale).square() + u2.square() + x[..., 2:].square().sum(-1)
        return -0.5 * quadratic - gaussian_log_normalizer(self.dim, math.log(self.scale))

    @property
    def log_normalizer(self) -> float:
        return 0.0

    @property
    def mean(self) -> Tensor:
        return self._as_tensor([0.0] * self.dim)

    @property
    def variance(self) -> Tensor:
        return self._as_tensor([self.scale**2, 1 + 2 * self.curvature**2 * self.scale**4] + [1.0] * (self.dim - 2))

    def sample(self, n: int | Sequence[int], generator: torch.Generator | None = None) -> Tensor:
        ref = self._reference()
        u = torch.randn(*as_sample_shape(n), self.dim, generator=generator, dtype=ref.dtype, device=ref.device)
        y1 = self.scale * u[..., :1]
        y2 = u[..., 1:2] - self.curvature * (y1.square() - self.scale**2)
        return torch.cat([y1, y2, u[..., 2:]], dim=-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, curvature={self.curvature:g}, scale={self.scale:g}"


_EXACT_MOMENTS_MAX_DIM = 6


def _normal_moment(m: int) -> int:
    r""":math:`(m - 1)!! = 1 \cdot 3 \cdots (m - 1)`, the ``m``-th moment of a standard normal for even ``m``."""
    return math.prod(range(m - 1, 0, -2))


@lru_cache(maxsize=32)
def _rosenbrock_moments(dim: int, a: float, b: float, mu: float) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    r"""The exact means and variances of the chain's coordinates, in rational arithmetic (``None`` if they overflow).

    With :math:`x_j = x_{j-1}^2 + \varepsilon_j`,
    :math:`\mathbb E[x_j^k] = \sum_m \binom km \mathbb E[x_{j-1}^{2m}] \mathbb E[\varepsilon^{k-m}]`: the first
    two moments of :math:`x_d` need those of :math:`x_1` up to order :math:`2^d`. The parameters enter as the
    decimals that print as them (``1/20`` as exactly 0.05).
    """
    a_, b_, mu_ = Fraction(repr(a)), Fraction(repr(b)), Fraction(repr(mu))
    var1, var_eps = 1 / (2 * a_), 1 / (2 * b_)
    order = 2**dim
    central = [var1**k * _normal_moment(2 * k) for k in range(order // 2 + 1)]
    moments = [
        sum(math.comb(n, 2 * k) * mu_ ** (n - 2 * k) * central[k] for k in range(n // 2 + 1)) for n in range(order + 1)
    ]
    eps = [var_eps ** (m // 2) * _normal_moment(m) if m % 2 == 0 else Fraction(0) for m in range(order + 1)]
    means, variances = [], []
    for j in range(dim):
        means.append(moments[1])
        variances.append(moments[2] - moments[1] ** 2)
        if j < dim - 1:
            order //= 2
            moments = [
                sum(math.comb(k, m) * moments[2 * m] * eps[k - m] for m in range(k + 1)) for k in range(order + 1)
            ]
    try:
        return tuple(map(float, means)), tuple(map(float, variances))
    except OverflowError:
        return None


class Rosenbrock(Target):
    r"""The hybrid Rosenbrock density with one chain (Pagani, Wiegand and Nadarajah 2022, "An n-dimensional Rosenbrock
    distribution for Markov chain Monte Carlo testing", *Scandinavian Journal of Statistics*),

    .. math::
        \log\tilde\pi(x) = -a (x_1 - \mu)^2 - \sum_{j=2}^d b\,(x_j - x_{j-1}^2)^2, \qquad
        Z = \sqrt{\pi / a}\,\big(\sqrt{\pi / b}\big)^{d-1}.

    It is the chain :math:`x_1 \sim \mathcal N(\mu, \frac1{2a})`, :math:`x_j \mid x_{j-1} \sim
    \mathcal N(x_{j-1}^2, \frac1{2b})`, which samples it exactly. For :math:`d = 2` and the defaults it is the
    Rosenbrock density :math:`\exp(-[100 (x_2 - x_1^2)^2 + (1 - x_1)^2] / 20)` of Goodman and Weare (2010, "Ensemble
    samplers with affine invariance"). The means and variances are exact (Gaussian moments propagated in rational
    arithmetic) for :math:`d \le 6`; they grow doubly exponentially along the chain (with the defaults the variance of
    :math:`x_6` is about :math:`7 \times 10^{76}`, and that of :math:`x_8` overflows float64), so for :math:`d > 6`,
    or where they overflow float64, :attr:`mean` and :attr:`variance` are ``None`` (in float32, beyond about
    :math:`3 \times 10^{38}`, they are ``inf``).

    Args:
        dim: the number of coordinates :math:`d \ge 2`.
        a: the weight :math:`a > 0` of the first coordinate's square (its variance is :math:`1/(2a)`).
        b: the weight :math:`b > 0` of the ridges (the conditional variance is :math:`1/(2b)`).
        mu: the mean :math:`\mu` of the first coordinate.

    Example:
        >>> target = Rosenbrock()
        >>> target.mean, target.variance  # (mu, mu^2 + 1/(2a)), (1/(2a), 2 mu^2/a + 1/(2a^2) + 1/(2b))
        (tensor([ 1., 11.]), tensor([ 10.0000, 240.1000]))
    """

    def __init__(self, dim: int = 2, a: float = 1 / 20, b: float = 5.0, mu: float = 1.0) -> None:
        super().__init__(check_dim(dim, 2))
        self.a = check_positive(a, "a")
        self.b = check_positive(b, "b")
        self.mu = check_finite(mu, "mu")

    def log_prob(self, x: Tensor) -> Tensor:
        self._check_points(x)
        ridges = (x[..., 1:] - x[..., :-1].square()).square().sum(-1)
        return -self.a * (x[..., 0] - self.mu).square() - self.b * ridges

    @property
    def log_normalizer(self) -> float:
        return 0.5 * math.log(math.pi / self.a) + 0.5 * (self.dim - 1) * math.log(math.pi / self.b)

    def _moments(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        if self.dim > _EXACT_MOMENTS_MAX_DIM:
            return None
        return _rosenbrock_moments(self.dim, self.a, self.b, self.mu)

    @property
    def mean(self) -> Tensor | None:
        moments, ref = self._moments(), self._reference()
        return None if moments is None else torch.tensor(moments[0], dtype=ref.dtype, device=ref.device)

    @property
    def variance(self) -> Tensor | None:
        moments, ref = self._moments(), self._reference()
        return None if moments is None else torch.tensor(moments[1], dtype=ref.dtype, device=ref.device)

    def sample(self, n: int | Sequence[int], generator: torch.Generator | None = None) -> Tensor:
        ref = self._reference()
        eps = torch.randn(*as_sample_shape(n), self.dim, generator=generator, dtype=ref.dtype, device=ref.device)
        coordinates = [self.mu + eps[..., 0] / math.sqrt(2 * self.a)]
        for j in range(1, self.dim):
            coordinates.append(coordinates[-1].square() + eps[..., j] / math.sqrt(2 * self.b))
        return torch.stack(coordinates, dim=-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, a={self.a:g}, b={self.b:g}, mu={self.mu:g}"
