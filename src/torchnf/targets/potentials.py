r"""The four 2-D energies of Rezende and Mohamed (2015), the classic pictures of variational inference with flows.

Their normalizers and moments come from a quadrature on a grid, computed once per energy.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import ClassVar

import torch
from torch import Tensor

from .base import Target

__all__ = ["RezendePotential"]

_NAMES = ("U1", "U2", "U3", "U4")

_WALL_START = 4.0  # the soft wall on |z1| that makes U2 - U4 proper starts here...
_WALL_WIDTH = 0.2  # ...and rises like a Gaussian of this standard deviation

# The quadrature grid: spacing H on [-BOX1, BOX1] x [-BOX2, BOX2]; the walls' kinks at |z1| = 4 are grid nodes.
_H, _BOX1, _BOX2 = 0.02, 7.0, 9.0


def _potential(name: str, z1: Tensor, z2: Tensor) -> Tensor:
    """The energy ``name`` (``"U1"`` to ``"U4"``) at the points ``(z1, z2)``, with the soft wall for U2 - U4."""
    w1 = torch.sin(0.5 * math.pi * z1)
    if name == "U1":
        radius = torch.linalg.vector_norm(torch.stack([z1, z2], dim=-1), dim=-1)
        modes = torch.logaddexp(-0.5 * ((z1 - 2) / 0.6).square(), -0.5 * ((z1 + 2) / 0.6).square())
        return 0.5 * ((radius - 2) / 0.4).square() - modes
    if name == "U2":
        energy = 0.5 * ((z2 - w1) / 0.4).square()
    elif name == "U3":
        w2 = 3 * torch.exp(-0.5 * ((z1 - 1) / 0.6).square())
        energy = -torch.logaddexp(-0.5 * ((z2 - w1) / 0.35).square(), -0.5 * ((z2 - w1 + w2) / 0.35).square())
    elif name == "U4":
        w3 = 3 * torch.sigmoid((z1 - 1) / 0.3)
        energy = -torch.logaddexp(-0.5 * ((z2 - w1) / 0.4).square(), -0.5 * ((z2 - w1 + w3) / 0.35).square())
    else:
        raise ValueError(f"unknown potential {name!r}; expected one of {', '.join(_NAMES)}")
    return energy + 0.5 * (torch.relu(z1.abs() - _WALL_START) / _WALL_WIDTH).square()


@lru_cache(maxsize=len(_NAMES))
def _quadrature(name: str) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """``(log Z, mean, variance)`` of ``exp(-U)`` by the trapezoidal rule on the grid (in float64)."""
    n1, n2 = round(_BOX1 / _H), round(_BOX2 / _H)
    z1 = torch.arange(-n1, n1 + 1, dtype=torch.float64) * _H
    z2 = torch.arange(-n2, n2 + 1, dtype=torch.float64) * _H
    grid1, grid2 = torch.meshgrid(z1, z2, indexing="ij")
    log_density = -_potential(name, grid1, grid2)
    log_z = float(torch.logsumexp(log_density.flatten(), 0)) + 2 * math.log(_H)
    p = torch.exp(log_density - log_z) * _H**2
    means = (float((p * grid1).sum()), float((p * grid2).sum()))
    variances = (float((p * (grid1 - means[0]).square()).sum()), float((p * (grid2 - means[1]).square()).sum()))
    return log_z, means, variances


class RezendePotential(Target):
    r"""One of the four 2-D test energies of Rezende and Mohamed (2015, "Variational inference with normalizing
    flows", ICML, Table 1), :math:`\tilde\pi(z) = e^{-U(z)}`, with

    .. math::
        w_1 = \sin\frac{\pi z_1}2, \quad w_2 = 3 e^{-\frac12 (\frac{z_1 - 1}{0.6})^2}, \quad
        w_3 = 3\,\sigma\Big(\frac{z_1 - 1}{0.3}\Big),

        U_1 = \frac12\Big(\frac{\|z\| - 2}{0.4}\Big)^2
            - \log\Big(e^{-\frac12 (\frac{z_1 - 2}{0.6})^2} + e^{-\frac12 (\frac{z_1 + 2}{0.6})^2}\Big), \qquad
        U_2 = \frac12\Big(\frac{z_2 - w_1}{0.4}\Big)^2,

        U_3 = -\log\Big(e^{-\frac12 (\frac{z_2 - w_1}{0.35})^2} + e^{-\frac12 (\frac{z_2 - w_1 + w_2}{0.35})^2}\Big),
        \quad U_4 = -\log\Big(e^{-\frac12 (\frac{z_2 - w_1}{0.4})^2}
            + e^{-\frac12 (\frac{z_2 - w_1 + w_3}{0.35})^2}\Big).

    :math:`U_2`, :math:`U_3` and :math:`U_4` do not depend on :math:`z_1` far from the origin, so
    :math:`e^{-U}` is not integrable on :math:`\mathbb R^2` (the paper plots them on :math:`[-4, 4]^2`). Here they
    get a soft wall that leaves :math:`|z_1| \le 4` untouched: :math:`\frac12 (\max(|z_1| - 4, 0) / 0.2)^2` is added
    to :math:`U_2`, :math:`U_3` and :math:`U_4` (not to :math:`U_1`, which is proper). The sums of exponentials are
    evaluated with ``logaddexp``, so values and gradients stay finite far away.

    :attr:`log_normalizer`, :attr:`mean` and :attr:`variance` come from the trapezoidal rule on a grid of spacing
    0.02 over :math:`[-7, 7] \times [-9, 9]` (in float64, computed once per energy, in about 0.05 s), where the
    density at the edges is below :math:`e^{-100}` of its peak. :math:`\log Z` is 1.8775016261, 2.1428699121,
    2.7024857000 and 2.7714785715 for U1 to U4; it agrees to 1e-13 with spacing 0.01 on a larger box and, for U2 -
    U4, to 1e-15 with the closed form :math:`\log\big((8 + 0.2\sqrt{2\pi})\,c\big)` (the :math:`z_1` range plus
    the walls, times the :math:`z_2` integral :math:`c = 0.4\sqrt{2\pi}`, :math:`0.7\sqrt{2\pi}`,
    :math:`0.75\sqrt{2\pi}` of one or two Gaussians). The moments are accurate to about 5e-9 relative (the walls'
    kinks, grid nodes, make the rule fourth order there). There is no exact sampler.

    Args:
        name: ``"U1"``, ``"U2"``, ``"U3"`` or ``"U4"``.

    Example:
        >>> target = RezendePotential("U2")
        >>> round(target.log_normalizer, 6)
        2.14287
        >>> target.energy(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))  # on the ridge z2 = sin(pi z1 / 2)
        tensor([0., 0.])
    """

    names: ClassVar[tuple[str, ...]] = _NAMES
    """The energies' names."""

    def __init__(self, name: str = "U1") -> None:
        if name not in _NAMES:
            raise ValueError(f"unknown potential {name!r}; expected one of {', '.join(_NAMES)}")
        super().__init__(2)
        self.name = name

    def energy(self, z: Tensor) -> Tensor:
        r"""The energy :math:`U(z)` (with the wall for U2 - U4) of points ``(*batch, 2)``; ``-log_prob(z)``."""
        self._check_points(z, "z")
        return _potential(self.name, z[..., 0], z[..., 1])

    def log_prob(self, x: Tensor) -> Tensor:
        return -self.energy(x)

    @property
    def log_normalizer(self) -> float:
        return _quadrature(self.name)[0]

    @property
    def mean(self) -> Tensor:
        return self._as_tensor(_quadrature(self.name)[1])

    @property
    def variance(self) -> Tensor:
        return self._as_tensor(_quadrature(self.name)[2])

    def extra_repr(self) -> str:
        return f"name={self.name!r}"
