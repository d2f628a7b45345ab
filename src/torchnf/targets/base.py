r"""The contract of a target density: what variational fitting and the samplers of :mod:`torchnf.mcmc` take.

A target is a density :math:`\pi(x) = \tilde\pi(x) / Z` over points of shape ``event_shape`` that can be evaluated up
to its normalizer :math:`Z = \int \tilde\pi(x)\,dx` but, in general, not sampled. Anything callable as
``log_target(x) -> log_density`` works as a target (a function, a :class:`Target`, a ``Flow``'s ``log_prob``); the
built-in :class:`Target` s add what tests and benchmarks need: the true :math:`\log Z` where it is known, exact
samples and moments where they are known.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..bijections.base import Shape, ShapeLike, as_shape

__all__ = ["LogDensity", "Target"]

LogDensity = Callable[[Tensor], Tensor]
"""An unnormalized log-density: points ``(*batch, *event_shape)`` to values ``(*batch,)``, differentiable in ``x``."""


class Target(nn.Module):
    r"""An unnormalized density :math:`\tilde\pi(x)` with what is known about it.

    Subclasses implement :meth:`log_prob` for points ``(*batch, *event_shape)`` (returning ``(*batch,)``,
    differentiable with respect to ``x``, finite or :math:`-\infty` at every finite point) and, where they are known,
    :attr:`log_normalizer`, :meth:`sample`, :attr:`mean` and :attr:`variance`. Targets are :class:`torch.nn.Module` s
    whose tensors are buffers, so ``.to(device)`` and ``.double()`` move them; calling a target calls
    :meth:`log_prob`.

    Args:
        event_shape: the shape of one point.
    """

    event_shape: Shape

    def __init__(self, event_shape: ShapeLike) -> None:
        super().__init__()
        self.event_shape = as_shape(event_shape)
        # A 0-dim tensor that .to(device) and .double() move like any buffer, so that every target knows its dtype and
        # device, even one with no tensors of its own; not part of the state dict.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def dim(self) -> int:
        """The number of coordinates of one point."""
        return self.event_shape.numel()

    def log_prob(self, x: Tensor) -> Tensor:
        r"""The unnormalized log-density :math:`\log\tilde\pi(x)` of points ``(*batch, *event_shape)``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x)

    @property
    def log_normalizer(self) -> float | None:
        r""":math:`\log Z = \log\int\tilde\pi(x)\,dx`, or ``None`` where it is not known (0 for a normalized
        density)."""
        return None

    @property
    def mean(self) -> Tensor | None:
        """The mean of :math:`\\pi`, shape ``event_shape``, or ``None`` where it is not known."""
        return None

    @property
    def variance(self) -> Tensor | None:
        """The variance of each coordinate of :math:`\\pi`, shape ``event_shape``, or ``None`` where it is not
        known."""
        return None

    def sample(self, n: int | Sequence[int], generator: torch.Generator | None = None) -> Tensor:
        """Exact samples ``(*n, *event_shape)`` from :math:`\\pi`, for targets that have a sampler."""
        raise NotImplementedError(f"{type(self).__name__} has no exact sampler")

    @property
    def has_sampler(self) -> bool:
        """Whether :meth:`sample` draws exact samples."""
        return type(self).sample is not Target.sample

    def _reference(self) -> Tensor:
        """A 0-dim tensor with the target's dtype and device: the default dtype on the CPU until the target is moved
        or converted (``.to``, ``.double()``)."""
        return self._anchor

    def _check_points(self, x: Tensor, name: str = "x") -> None:
        """Refuse ``x`` unless it is a floating-point tensor of shape ``(*batch, *event_shape)``."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a tensor of shape (*batch, *event_shape), got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be floating point, got dtype {x.dtype}; convert it, e.g. with .float()")
        n = len(self.event_shape)
        if x.dim() < n or x.shape[x.dim() - n :] != self.event_shape:
            raise ValueError(
                f"{name} must have shape (*batch, {', '.join(map(str, self.event_shape))}): batch dimensions followed "
                f"by the event shape {tuple(self.event_shape)}; got shape {tuple(x.shape)}"
            )

    def _as_tensor(self, values: Sequence[float] | float) -> Tensor:
        """``values`` as a tensor in the target's dtype and on its device (for the known moments)."""
        ref = self._reference()
        return torch.as_tensor(values, dtype=ref.dtype, device=ref.device)

    def extra_repr(self) -> str:
        log_z = self.log_normalizer
        known = "" if log_z is None else f", log_normalizer={log_z:.4g}"
        return f"event_shape={tuple(self.event_shape)}{known}"


def gaussian_log_normalizer(dim: int, log_scale_sum: float = 0.0) -> float:
    r"""The log-normalizer :math:`\tfrac d2\log 2\pi + \sum_i\log\sigma_i` of a diagonal Gaussian."""
    return 0.5 * dim * math.log(2 * math.pi) + log_scale_sum


def check_positive(value: float, name: str) -> float:
    """``value`` as a float, refusing what is not a finite positive number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return float(value)


def check_finite(value: float, name: str) -> float:
    """``value`` as a float, refusing what is not a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def check_dim(dim: int, minimum: int, name: str = "dim") -> int:
    """``dim`` as an int, refusing what is not an integer of at least ``minimum``."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {dim!r}")
    return int(dim)
