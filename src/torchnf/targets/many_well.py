r"""The many-well density: a product of double wells with :math:`2^{d/2}` modes of unequal mass.

Its normalizer and moments come from a one-dimensional integral, computed once by quadrature; its exact samples
from rejection sampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import torch
from torch import Tensor

from .._validation import as_sample_shape
from .base import Target, check_dim

__all__ = ["ManyWell"]

_ENVELOPE_SCALE = 0.42  # the proposal components' standard deviation: acceptance about 0.48
_LOG_BOUND_MARGIN = 1e-6  # added to the bound on log(f / q) found on a grid of spacing 1e-4


def _log_double_well(t: Tensor) -> Tensor:
    """:math:`\\log f(t) = -t^4 + 6t^2 + t/2`, the double-well coordinate's unnormalized log-density."""
    t2 = t.square()
    return -t2.square() + 6 * t2 + 0.5 * t


class _DoubleWell(NamedTuple):
    log_z: float  # log of the integral of f
    mean: float
    variance: float
    right_mass: float  # the probability of t > 0
    left_mode: float
    right_mode: float
    log_bound: float  # an upper bound on log(f(t) / q(t)) for the proposal q


def _log_proposal(t: Tensor, well: _DoubleWell) -> Tensor:
    """The log-density of the proposal: two Gaussians at the modes, weighted by the wells' masses."""
    s = _ENVELOPE_SCALE
    left = math.log1p(-well.right_mass) - 0.5 * ((t - well.left_mode) / s).square()
    right = math.log(well.right_mass) - 0.5 * ((t - well.right_mode) / s).square()
    return torch.logaddexp(left, right) - math.log(s) - 0.5 * math.log(2 * math.pi)


@lru_cache(maxsize=1)
def _double_well() -> _DoubleWell:
    """The double well's integrals by the trapezoidal rule on [-6, 6] (the integrand is below :math:`e^{-1000}` of
    its peak beyond): smooth and decaying, it converges geometrically; spacings 0.02 and 0.001 agree to 3e-15."""
    h = 0.005
    t = torch.arange(-1200, 1201, dtype=torch.float64) * h
    log_f = _log_double_well(t)
    log_z = float(torch.logsumexp(log_f, 0)) + math.log(h)
    p = torch.exp(log_f - log_z) * h
    mean = float((p * t).sum())
    variance = float((p * (t - mean).square()).sum())
    right_mass = float(p[t > 0].sum() + 0.5 * p[t == 0].sum())
    fine = torch.arange(-60000, 60001, dtype=torch.float64) * 1e-4
    log_f = _log_double_well(fine)
    positive = fine > 0
    left_mode = float(fine[~positive][log_f[~positive].argmax()])
    right_mode = float(fine[positive][log_f[positive].argmax()])
    well = _DoubleWell(log_z, mean, variance, right_mass, left_mode, right_mode, 0.0)
    log_bound = float((log_f - _log_proposal(fine, well)).max()) + _LOG_BOUND_MARGIN
    return well._replace(log_bound=log_bound)


def _sample_double_well(
    count: int, generator: torch.Generator | None, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """``count`` exact draws of the double-well coordinate by rejection from :func:`_log_proposal` (in float64)."""
    well = _double_well()
    acceptance = math.exp(well.log_z - well.log_bound)
    accepted = [torch.empty(0, dtype=torch.float64, device=device)]
    have = 0
    while have < count:
        m = int((count - have) / acceptance * 1.1) + 16
        kwargs = {"generator": generator, "dtype": torch.float64, "device": device}
        right = (torch.rand(m, **kwargs) < well.right_mass).to(torch.float64)
        mode = well.left_mode + (well.right_mode - well.left_mode) * right
        t = mode + _ENVELOPE_SCALE * torch.randn(m, **kwargs)
        log_u = torch.log(torch.rand(m, **kwargs))
        keep = t[log_u <= _log_double_well(t) - _log_proposal(t, well) - well.log_bound]
        accepted.append(keep)
        have += keep.numel()
    return torch.cat(accepted)[:count].to(dtype)


class ManyWell(Target):
    r"""The many-well density of Midgley, Stimper, Simm, Schölkopf and Hernández-Lobato (2023, "Flow annealed
    importance sampling bootstrap", ICLR): :math:`d/2` independent copies of a 2-D double well,

    .. math::
        \log\tilde\pi(x) = \sum_{k=1}^{d/2} \Big(-x_{2k-1}^4 + 6 x_{2k-1}^2 + \tfrac12 x_{2k-1}
            - \tfrac12 x_{2k}^2\Big), \qquad
        \log Z = \frac d2 \Big(\log\int e^{-t^4 + 6t^2 + t/2}\,dt + \tfrac12\log 2\pi\Big)

    (the double well of Noé, Olsson, Köhler and Wu 2019, "Boltzmann generators", with their :math:`a = -0.5`,
    :math:`b = -6`, :math:`c = 1`). The coordinates :math:`x_1, x_3, \dots` (``x[..., 0::2]``) each have two wells, near
    -1.71 and 1.75, the right one holding 84.4 % of the mass; the others are standard normal, so there are
    :math:`2^{d/2}` modes (:math:`2^{16}` for the default :math:`d = 32`). The 1-D integral is
    :math:`\log 11784.509 = 9.3745411739`, by the trapezoidal rule (accurate to about 1e-15; the paper's code
    gives 11784.50927); the mean and variance of the double-well coordinate (1.18796, 1.54855) come from the same
    quadrature. :meth:`sample` is exact: rejection sampling from a two-Gaussian envelope (acceptance about 0.48).

    Args:
        dim: the number of coordinates, even and at least 2.

    Example:
        >>> target = ManyWell(dim=4)
        >>> round(target.log_normalizer, 6)  # 2 * (9.374541 + log(2 pi) / 2)
        20.586959
        >>> target.sample(3, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 4])
    """

    def __init__(self, dim: int = 32) -> None:
        dim = check_dim(dim, 2)
        if dim % 2:
            raise ValueError(f"dim must be even (pairs of a double-well and a Gaussian coordinate), got {dim}")
        super().__init__(dim)

    @property
    def wells(self) -> int:
        """The number :math:`d/2` of double wells."""
        return self.dim // 2

    def log_prob(self, x: Tensor) -> Tensor:
        self._check_points(x)
        return _log_double_well(x[..., 0::2]).sum(-1) - 0.5 * x[..., 1::2].square().sum(-1)

    @property
    def log_normalizer(self) -> float:
        return self.wells * (_double_well().log_z + 0.5 * math.log(2 * math.pi))

    @property
    def mean(self) -> Tensor:
        ref = self._reference()
        mean = torch.zeros(self.wells, 2, dtype=ref.dtype, device=ref.device)
        mean[:, 0] = _double_well().mean
        return mean.flatten()

    @property
    def variance(self) -> Tensor:
        ref = self._reference()
        variance = torch.ones(self.wells, 2, dtype=ref.dtype, device=ref.device)
        variance[:, 0] = _double_well().variance
        return variance.flatten()

    def sample(self, n: int | Sequence[int], generator: torch.Generator | None = None) -> Tensor:
        ref = self._reference()
        shape = as_sample_shape(n)
        count = shape.numel()
        x = torch.randn(count, self.wells, 2, generator=generator, dtype=ref.dtype, device=ref.device)
        x[..., 0] = _sample_double_well(count * self.wells, generator, ref.dtype, ref.device).reshape(count, self.wells)
        return x.reshape(*shape, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, log_normalizer={self.log_normalizer:.6g}"
