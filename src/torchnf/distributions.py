r"""Base distributions: the simple densities a flow pushes forward.

They are :class:`torch.nn.Module` s whose tensors are buffers or parameters, so ``.to(device)``, ``.double()`` and
``state_dict`` cover them.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from .bijections.base import Shape, ShapeLike, as_shape
from .configurable import Configurable

__all__ = ["BaseDistribution", "DiagonalNormal", "StandardNormal"]


class BaseDistribution(Configurable, nn.Module):
    """A distribution over points of shape ``event_shape`` with ``log_prob`` and reparameterized ``rsample``.

    Subclasses are registered by name and record their constructor arguments (:class:`~torchnf.configurable.
    Configurable`), so a saved flow rebuilds its base distribution from its config.
    """

    registry: ClassVar[dict[str, type]] = {}
    event_shape: Shape

    def __init__(self, event_shape: ShapeLike) -> None:
        super().__init__()
        self.event_shape = as_shape(event_shape)

    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density of ``z`` of shape ``(*batch, *event_shape)``; returns ``(*batch,)``."""
        raise NotImplementedError

    def rsample(self, sample_shape: Shape, temperature: float = 1.0) -> Tensor:
        """Draw ``(*sample_shape, *event_shape)`` points, differentiable with respect to the parameters; a
        ``temperature`` :math:`T` scales the spread about the mode (a Gaussian's standard deviations by :math:`T`)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}"


class DiagonalNormal(BaseDistribution):
    r"""A normal distribution with independent coordinates :math:`z_i \sim \mathcal N(\mu_i, \sigma_i^2)`.

    .. math:: \log p(z) = -\sum_i \Big(\frac{(z_i - \mu_i)^2}{2\sigma_i^2} + \log\sigma_i + \tfrac12\log 2\pi\Big).

    Args:
        event_shape: shape of one point.
        learnable: make :math:`\mu` and :math:`\log\sigma` parameters (else buffers fixed at 0 and 0).
    """

    def __init__(self, event_shape: ShapeLike, learnable: bool = True) -> None:
        super().__init__(event_shape)
        loc, log_scale = torch.zeros(self.event_shape), torch.zeros(self.event_shape)
        if learnable:
            self.loc, self.log_scale = nn.Parameter(loc), nn.Parameter(log_scale)
        else:
            self.register_buffer("loc", loc)
            self.register_buffer("log_scale", log_scale)

    def log_prob(self, z: Tensor) -> Tensor:
        dims = tuple(range(-len(self.event_shape), 0))
        standard = (z - self.loc) * torch.exp(-self.log_scale)
        log_norm = self.log_scale.sum() + 0.5 * math.log(2 * math.pi) * self.event_shape.numel()
        return -0.5 * standard.square().sum(dims) - log_norm

    def rsample(self, sample_shape: Shape, temperature: float = 1.0) -> Tensor:
        eps = torch.randn(*sample_shape, *self.event_shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + eps * (temperature * self.log_scale.exp())


class StandardNormal(DiagonalNormal):
    r"""The standard normal :math:`\mathcal N(0, I)` over ``event_shape``, with no parameters."""

    def __init__(self, event_shape: ShapeLike) -> None:
        super().__init__(event_shape, learnable=False)

    def log_prob(self, z: Tensor) -> Tensor:
        dims = tuple(range(-len(self.event_shape), 0))
        return -0.5 * z.square().sum(dims) - 0.5 * math.log(2 * math.pi) * self.event_shape.numel()

    def rsample(self, sample_shape: Shape, temperature: float = 1.0) -> Tensor:
        eps = torch.randn(*sample_shape, *self.event_shape, dtype=self.loc.dtype, device=self.loc.device)
        return eps if temperature == 1.0 else temperature * eps
