r"""The protocol every sampler of :mod:`torchnf.mcmc` follows, and the pieces the samplers share.

A sampler simulates a Markov chain whose transition kernel :math:`K` leaves the target :math:`\pi` invariant,
:math:`\int \pi(x)\,K(x, y)\,dx = \pi(y)`. All of them are Metropolis–Hastings kernels (Metropolis et al. 1953;
Hastings 1970, *Monte Carlo sampling methods using Markov chains and their applications*): a proposal
:math:`y \sim Q(x, \cdot)` is accepted with probability

.. math::

    \alpha(x, y) = \min\Big(1, \frac{\tilde\pi(y)\, Q(y, x)}{\tilde\pi(x)\, Q(x, y)}\Big),

which makes the chain reversible with respect to :math:`\pi` and needs the target only up to its normalizer.
Every chain has its own state, and one call of the target evaluates all chains: positions are
``(chains, *event_shape)``, log-densities ``(chains,)``.

A :class:`Sampler` holds settings only, so one object serves several runs; :meth:`Sampler.init` builds the state of
one run, which :meth:`Sampler.step` advances by one transition. :func:`torchnf.mcmc.sample` drives them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..targets.checks import check_density_flow, evaluate_log_target

if TYPE_CHECKING:
    from ..flow import Flow
    from ..targets.base import LogDensity

__all__ = ["Sampler", "State", "check_flow", "evaluate", "frozen", "metropolis", "select", "value_and_grad"]


@dataclass
class State:
    """The state of one run of a sampler: current positions and what the sampler carries along.

    Attributes:
        x: the positions ``(chains, *shape)`` the sampler moves (latent points for :class:`~torchnf.mcmc.NeuTra`).
        log_prob: the log-density the sampler targets at ``x``, ``(chains,)``.
        log_target: that log-density, a callable.
        accept: the acceptance probability of each move of the last transition, by move name, ``(chains,)``.
    """

    x: Tensor
    log_prob: Tensor
    log_target: LogDensity
    accept: dict[str, Tensor] = field(default_factory=dict)


class Sampler:
    """The protocol of a sampler: settings in the object, the state of a run in a :class:`State`.

    Subclasses implement :meth:`init` and :meth:`step`; those that work in another space than the target's
    override :meth:`position`. A sampler that holds a flow sets :attr:`flow`: runs then start from flow samples by
    default and work in the flow's dtype and device.
    """

    name: str = "sampler"
    flow: Flow | None = None

    def init(self, x: Tensor, log_target: LogDensity) -> State:
        """The state of a run started at ``x`` of shape ``(chains, *event_shape)`` (checked, finite)."""
        raise NotImplementedError

    def step(self, state: State, adapt: bool) -> State:
        """One transition of every chain; ``adapt`` is true during warm-up, when the sampler may tune itself."""
        raise NotImplementedError

    def end_warmup(self, state: State) -> None:
        """Freeze every adapted setting: from here on the kernel is fixed, so the chain is a Markov chain."""

    def position(self, state: State) -> tuple[Tensor, Tensor]:
        """The current points in the target's space and the target's log-density there."""
        return state.x, state.log_prob

    def step_size(self, state: State) -> Tensor | None:
        """The current step size of each chain, ``(chains,)``, or ``None`` for a sampler without one."""
        return None

    def info(self, state: State) -> dict[str, Any]:
        """What the run learned besides the samples (refits, timings...), for :attr:`Chains.info`."""
        return {}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "flow")
        return f"{type(self).__name__}({settings})"


def check_flow(flow: Any) -> Flow:
    """Refuse what cannot serve as a proposal or a transport map: a dequantized or a conditional flow."""
    return check_density_flow(flow, "MCMC")


@contextmanager
def frozen(flow: Flow) -> Iterator[Flow]:
    """The flow in evaluation mode with no parameter requiring a gradient; both restored on exit."""
    trainable = [p for p in flow.parameters() if p.requires_grad]
    training = flow.training
    for p in trainable:
        p.requires_grad_(False)
    if training:
        flow.eval()
    try:
        yield flow
    finally:
        for p in trainable:
            p.requires_grad_(True)
        if training:
            flow.train()


def evaluate(log_target: LogDensity, x: Tensor) -> Tensor:
    """``log_target(x)`` for points ``(chains, *shape)``, checked to be one value per chain, in ``x``'s dtype (NaN
    and infinities pass: the Metropolis test rejects them)."""
    return evaluate_log_target(log_target, x, strict=False).to(x.dtype)


def value_and_grad(log_target: LogDensity, x: Tensor) -> tuple[Tensor, Tensor]:
    r"""The log-density and its gradient :math:`\nabla_x \log\tilde\pi(x)` for every chain, by one backward pass
    (the chains are independent, so the gradient of the sum is the stack of the gradients)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        log_prob = evaluate(log_target, x)
        if not log_prob.requires_grad:
            raise ValueError(
                "log_target's output does not depend differentiably on x; gradient-based kernels (MALA, HMC, "
                "NeuTra) need a target built from differentiable torch operations"
            )
        (grad,) = torch.autograd.grad(log_prob.sum(), x)
    return log_prob.detach(), grad


def metropolis(log_ratio: Tensor) -> tuple[Tensor, Tensor]:
    r"""Accept each chain's proposal with probability :math:`\alpha = \min(1, e^{\log r})`.

    A non-finite ratio (a NaN or infinite energy, a proposal outside the support) rejects. Returns the mask of
    accepted chains and :math:`\alpha`, whose mean is the expected acceptance rate.
    """
    log_ratio = torch.where(torch.isfinite(log_ratio), log_ratio, -math.inf)
    prob = log_ratio.clamp(max=0.0).exp()
    return torch.rand_like(prob) < prob, prob


def select(accept: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """Per chain, ``new`` where ``accept`` and ``old`` elsewhere (``accept`` is ``(chains,)``)."""
    return torch.where(accept.view(-1, *[1] * (new.dim() - 1)), new, old)


def per_chain(values: Tensor, like: Tensor) -> Tensor:
    """Per-chain values ``(chains,)`` shaped to broadcast against points ``(chains, *shape)``."""
    return values.view(-1, *[1] * (like.dim() - 1))


def squared_norm(x: Tensor) -> Tensor:
    """:math:`\\lVert x\\rVert^2` of each chain's point: the sum over every dimension but the first."""
    return x.square().flatten(1).sum(1)
