r"""Base distributions: the simple densities a flow pushes forward.

They are :class:`torch.nn.Module` s whose tensors are buffers or parameters, so ``.to(device)``, ``.double()`` and
``state_dict`` cover them. A conditional base distribution (:class:`ConditionalDiagonalNormal`) has a
``context_shape`` and takes the flow's context (or its embedding) in ``log_prob`` and ``rsample``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from .architectures.base import activation_factory
from .bijections.base import Shape, ShapeLike, as_shape
from .configurable import Configurable
from .nn import MLP

__all__ = ["BaseDistribution", "ConditionalDiagonalNormal", "DiagonalNormal", "StandardNormal"]


class BaseDistribution(Configurable, nn.Module):
    """A distribution over points of shape ``event_shape`` with ``log_prob`` and reparameterized ``rsample``.

    Subclasses are registered by name and record their constructor arguments (:class:`~torchnf.configurable.
    Configurable`), so a saved flow rebuilds its base distribution from its config.
    """

    registry: ClassVar[dict[str, type]] = {}
    event_shape: Shape
    context_shape: Shape | None = None
    """Shape of one context for a conditional distribution, ``None`` for an unconditional one."""

    def __init__(self, event_shape: ShapeLike) -> None:
        super().__init__()
        self.event_shape = as_shape(event_shape)

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Log-density of ``z`` of shape ``(*batch, *event_shape)``; returns ``(*batch,)``. A conditional
        distribution takes a ``context`` of shape ``(*context_batch, *context_shape)`` that broadcasts to ``batch``."""
        raise NotImplementedError

    def rsample(self, sample_shape: Shape, temperature: float = 1.0, context: Tensor | None = None) -> Tensor:
        """Draw ``(*sample_shape, *event_shape)`` points, differentiable with respect to the parameters; a
        ``temperature`` :math:`T` scales the spread about the mode (a Gaussian's standard deviations by :math:`T`).
        A conditional distribution's ``context`` batch shape broadcasts to ``sample_shape``."""
        raise NotImplementedError

    def _refuse_context(self, context: Tensor | None) -> None:
        if context is not None:
            raise ValueError(f"{type(self).__name__} is unconditional, but a context was given")

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

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        self._refuse_context(context)
        dims = tuple(range(-len(self.event_shape), 0))
        standard = (z - self.loc) * torch.exp(-self.log_scale)
        log_norm = self.log_scale.sum() + 0.5 * math.log(2 * math.pi) * self.event_shape.numel()
        return -0.5 * standard.square().sum(dims) - log_norm

    def rsample(self, sample_shape: Shape, temperature: float = 1.0, context: Tensor | None = None) -> Tensor:
        self._refuse_context(context)
        eps = torch.randn(*sample_shape, *self.event_shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + eps * (temperature * self.log_scale.exp())


class StandardNormal(DiagonalNormal):
    r"""The standard normal :math:`\mathcal N(0, I)` over ``event_shape``, with no parameters."""

    def __init__(self, event_shape: ShapeLike) -> None:
        super().__init__(event_shape, learnable=False)

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        self._refuse_context(context)
        dims = tuple(range(-len(self.event_shape), 0))
        return -0.5 * z.square().sum(dims) - 0.5 * math.log(2 * math.pi) * self.event_shape.numel()

    def rsample(self, sample_shape: Shape, temperature: float = 1.0, context: Tensor | None = None) -> Tensor:
        self._refuse_context(context)
        eps = torch.randn(*sample_shape, *self.event_shape, dtype=self.loc.dtype, device=self.loc.device)
        return eps if temperature == 1.0 else temperature * eps


class ConditionalDiagonalNormal(BaseDistribution):
    r"""A normal distribution whose mean and scales are functions of a context (Winkler et al. 2019, *Learning
    likelihoods with conditional normalizing flows*, arXiv:1912.00042):

    .. math::

        z \mid c \sim \mathcal N\big(\mu(c), \operatorname{diag}\sigma(c)^2\big), \qquad
        (\mu(c), s(c)) = \mathrm{MLP}(\operatorname{vec} c), \qquad \log\sigma(c) = B \tanh\big(s(c) / B\big).

    The soft bound :math:`B` keeps the scales finite for contexts far outside the training range. The network's
    last layer starts at zero, so an untrained distribution is :math:`\mathcal N(0, I)` for every context.

    Args:
        event_shape: shape of one point.
        context_shape: shape of one context (the embedding's output when the flow has one).
        hidden: widths of the network's hidden layers.
        activation: the nonlinearity's name (``"relu"``, ``"elu"``, ``"tanh"``, ...).
        log_scale_bound: :math:`B`.

    Example:
        >>> import torch
        >>> base = ConditionalDiagonalNormal(2, context_shape=3)
        >>> base.rsample((5,), context=torch.randn(3)).shape
        torch.Size([5, 2])
        >>> base.log_prob(torch.zeros(4, 2), torch.randn(4, 3)).shape
        torch.Size([4])
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        log_scale_bound: float = 8.0,
    ) -> None:
        super().__init__(event_shape)
        if not log_scale_bound > 0:
            raise ValueError(f"log_scale_bound must be positive, got {log_scale_bound!r}")
        self.context_shape = as_shape(context_shape)
        self.log_scale_bound = float(log_scale_bound)
        n = self.event_shape.numel()
        self.net = MLP(self.context_shape.numel(), 2 * n, tuple(hidden), activation_factory(activation), False, True)

    def parameters_of(self, context: Tensor) -> tuple[Tensor, Tensor]:
        r"""The mean :math:`\mu(c)` and log-scale :math:`\log\sigma(c)`, each ``(*context_batch, *event_shape)``."""
        if context is None:
            raise ValueError(
                f"this base distribution is conditional: pass a context of shape {tuple(self.context_shape)}"
            )
        h = self.net(context.flatten(context.dim() - len(self.context_shape)))
        loc, raw = h.unflatten(-1, (2, *self.event_shape)).unbind(-1 - len(self.event_shape))
        bound = self.log_scale_bound
        return loc, bound * torch.tanh(raw / bound)

    def log_prob(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        loc, log_scale = self.parameters_of(context)
        dims = tuple(range(-len(self.event_shape), 0))
        standard = (z - loc) * torch.exp(-log_scale)
        log_norm = log_scale.sum(dims) + 0.5 * math.log(2 * math.pi) * self.event_shape.numel()
        return -0.5 * standard.square().sum(dims) - log_norm

    def rsample(self, sample_shape: Shape, temperature: float = 1.0, context: Tensor | None = None) -> Tensor:
        loc, log_scale = self.parameters_of(context)
        eps = torch.randn(*sample_shape, *self.event_shape, dtype=loc.dtype, device=loc.device)
        return loc + eps * (temperature * log_scale.exp())

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, context_shape={tuple(self.context_shape)}"
