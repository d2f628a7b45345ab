r"""The contract of a simulator: a prior, a stochastic model of the data, and the posterior that they imply.

Simulation-based inference (Cranmer, Brehmer and Louppe 2020, "The frontier of simulation-based inference", *PNAS*)
learns :math:`p(\theta \mid x)` from pairs :math:`(\theta_i, x_i)` drawn from the joint distribution
:math:`p(\theta)\,p(x \mid \theta)`, without evaluating the likelihood. A conditional flow fitted to such pairs by
maximum likelihood (neural posterior estimation, Papamakarios and Murray 2016, "Fast ε-free inference of simulation
models with Bayesian conditional density estimation") is *amortized*: once fitted, it gives the posterior of any
observation with one network pass. The simulators here also know their exact posterior, so that the fitted flow can
be checked against it (:mod:`torchnf.c2st`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._validation import as_points, as_sample_shape
from ..bijections.base import Shape
from ..targets.base import check_dim

__all__ = ["Seed", "Simulator", "make_generator"]

Seed = int | torch.Generator | None
"""A source of randomness: an ``int`` seeds a fresh CPU :class:`torch.Generator` (reproducible, and the global
random state is left alone), a generator is used as it is (advanced by the call), ``None`` draws from torch's global
random state."""


def make_generator(seed: Seed) -> torch.Generator | None:
    """The generator that ``seed`` stands for (see :data:`Seed`); refuses what is none of them.

    Example:
        >>> a, b = make_generator(3), make_generator(3)
        >>> bool(torch.rand(2, generator=a).equal(torch.rand(2, generator=b)))
        True
    """
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, a torch.Generator or None, got {seed!r}")
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return generator


def check_count(n: Any, name: str = "n") -> int:
    """``n`` as an int, refusing what is not a positive integer."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


class Simulator(nn.Module):
    r"""A prior :math:`p(\theta)` over parameters of shape ``theta_shape``, a simulator of data of shape ``x_shape``
    from :math:`p(x \mid \theta)`, and what is known about the posterior
    :math:`p(\theta \mid x) \propto p(\theta)\,p(x \mid \theta)`.

    Subclasses implement :meth:`prior_sample`, :meth:`prior_log_prob`, :meth:`simulate`, :meth:`log_likelihood`
    and :meth:`reference_posterior_samples` (exact draws from the posterior). Inputs are tensors or NumPy arrays,
    checked (shape, finite values) and converted to the simulator's dtype and device; outputs are tensors in that
    dtype (the default dtype until ``.double()`` or ``.to``). Randomness comes from a :data:`Seed`.

    Args:
        theta_dim: the number of parameters.
        x_dim: the number of data coordinates.
    """

    theta_shape: Shape
    x_shape: Shape

    def __init__(self, theta_dim: int, x_dim: int) -> None:
        super().__init__()
        self.theta_shape = torch.Size([check_dim(theta_dim, 1, "theta_dim")])
        self.x_shape = torch.Size([check_dim(x_dim, 1, "x_dim")])
        # a 0-dim tensor that .to(device) and .double() move, so that every simulator knows its dtype and device
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def theta_dim(self) -> int:
        """The number of parameters."""
        return self.theta_shape[0]

    @property
    def x_dim(self) -> int:
        """The number of data coordinates."""
        return self.x_shape[0]

    # -- what subclasses implement -------------------------------------------------------------------------------

    def prior_sample(self, n: int | Sequence[int], seed: Seed = None) -> Tensor:
        r"""Draws :math:`\theta \sim p(\theta)`, shape ``(*n, theta_dim)``."""
        raise NotImplementedError

    def prior_log_prob(self, theta: Any) -> Tensor:
        r""":math:`\log p(\theta)` of parameters ``(*batch, theta_dim)``, shape ``(*batch,)`` (:math:`-\infty`
        outside the prior's support)."""
        raise NotImplementedError

    def simulate(self, theta: Any, seed: Seed = None) -> Tensor:
        r"""One draw :math:`x \sim p(x \mid \theta)` per parameter of ``theta`` ``(*batch, theta_dim)``: shape
        ``(*batch, x_dim)``."""
        raise NotImplementedError

    def log_likelihood(self, theta: Any, x: Any) -> Tensor:
        r""":math:`\log p(x \mid \theta)` for ``theta`` ``(*batch, theta_dim)`` and ``x`` ``(*batch, x_dim)``, whose
        batch shapes broadcast; shape ``(*batch,)``."""
        raise NotImplementedError

    def reference_posterior_samples(self, x_obs: Any, n: int, seed: Seed = None) -> Tensor:
        r"""``n`` exact draws from :math:`p(\theta \mid x_\text{obs})`: shape ``(n, theta_dim)`` for one observation
        ``(x_dim,)`` and ``(n, *batch, theta_dim)`` for observations ``(*batch, x_dim)``, as
        :meth:`torchnf.Flow.sample` returns them for a batch of contexts."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------------------------

    def sample_joint(self, n: int, seed: Seed = None) -> tuple[Tensor, Tensor]:
        r"""``n`` pairs from the joint :math:`p(\theta)\,p(x \mid \theta)`: ``theta`` ``(n, theta_dim)`` and
        ``x`` ``(n, x_dim)``, the training data of a conditional flow :math:`q(\theta \mid x)`
        (``flow.fit(theta, context=x)``)."""
        generator = make_generator(seed)
        theta = self.prior_sample(check_count(n), generator)
        return theta, self.simulate(theta, generator)

    def _reference(self) -> Tensor:
        return self._anchor

    def _check(self, value: Any, name: str, shape: Shape) -> Tensor:
        """``value`` as finite points ``(*batch, *shape)`` in the simulator's dtype and on its device."""
        ref = self._reference()
        return as_points(value, name, shape, ref.dtype, ref.device)

    def _check_theta(self, theta: Any, name: str = "theta") -> Tensor:
        return self._check(theta, name, self.theta_shape)

    def _check_x(self, x: Any, name: str = "x") -> Tensor:
        return self._check(x, name, self.x_shape)

    def _noise(self, kind: str, shape: Sequence[int], generator: torch.Generator | None) -> Tensor:
        """Standard normal (``kind="normal"``) or uniform on [0, 1) draws of ``shape`` in the simulator's dtype and
        on its device, drawn on the generator's device (the global random state's on the simulator's device)."""
        ref = self._reference()
        device = ref.device if generator is None else generator.device
        draw = torch.randn if kind == "normal" else torch.rand
        return draw(*shape, generator=generator, dtype=ref.dtype, device=device).to(ref.device)

    @staticmethod
    def _sample_shape(n: int | Sequence[int]) -> Shape:
        return as_sample_shape(n)

    def extra_repr(self) -> str:
        return f"theta_dim={self.theta_dim}, x_dim={self.x_dim}"
