r"""Step-size adaptation during warm-up, and the local kernels (MALA, HMC) that use it.

The step size :math:`\epsilon` is tuned so that the mean acceptance probability :math:`\alpha` matches a target
:math:`\delta`, by the dual averaging of Hoffman and Gelman (2014, *The No-U-Turn sampler*, JMLR 15, section 3.2;
after Nesterov 2009). With :math:`H_m = \delta - \alpha_m`, after iteration :math:`m`

.. math::

    \bar H_m = \Big(1 - \frac{1}{m + t_0}\Big)\bar H_{m-1} + \frac{1}{m + t_0} H_m, \qquad
    \log\epsilon_m = \mu - \frac{\sqrt m}{\gamma}\bar H_m, \qquad
    \log\bar\epsilon_m = m^{-\kappa}\log\epsilon_m + (1 - m^{-\kappa})\log\bar\epsilon_{m-1},

with :math:`\gamma = 0.05`, :math:`t_0 = 10`, :math:`\kappa = 0.75`, :math:`\mu = \log(10\,\epsilon_0)`. The
iterates :math:`\epsilon_m` drive the warm-up; when it ends the step size is frozen at the averaged iterate
:math:`\bar\epsilon`, so the kept chain is a (time-homogeneous) Markov chain with the right invariant law.

All chains share one step size, driven by the mean of their acceptance probabilities. That mean over :math:`C`
chains is a :math:`C` times less noisy signal than one chain's :math:`\alpha_m`, which matters: the averaged iterate
of a noisy per-chain adaptation settles where the acceptance is well above :math:`\delta` when the acceptance falls
steeply with :math:`\epsilon`, as it does for HMC near its stability limit (HMC on a correlated 2-D Gaussian, 16
chains, a target of 0.65: about 0.8 after per-chain adaptation, 0.68–0.70 after the shared one with 500 warm-up
iterations; the averaged iterate errs on the side of smaller steps after a short warm-up). Once the chains have
reached the typical set they sample the same distribution, so the best step size is the same for all of them; a
target whose modes need very different step sizes is better served by a reparameterization
(:class:`~torchnf.mcmc.NeuTra`) than by per-chain tuning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .base import Sampler, State, metropolis, select, value_and_grad

if TYPE_CHECKING:
    from ..targets.base import LogDensity

__all__ = ["DualAveraging", "LocalKernel", "LocalState", "initial_step_size"]

logger = logging.getLogger(__name__)


class DualAveraging:
    r"""Dual averaging of :math:`\log\epsilon` towards the acceptance probability ``target``
    (Hoffman and Gelman 2014, *The No-U-Turn sampler*, section 3.2, Algorithm 5).

    The tensors may have any shape (a scalar for one shared step size); the update is elementwise.

    Args:
        step_size: the initial step size :math:`\epsilon_0`; :math:`\mu = \log(10\,\epsilon_0)`.
        target: the acceptance probability :math:`\delta` to reach.
        gamma, t0, kappa: the constants :math:`\gamma`, :math:`t_0`, :math:`\kappa` of the paper.

    Example:
        >>> import torch
        >>> adapter = DualAveraging(torch.ones(2), target=0.6)
        >>> step = adapter.update(torch.tensor([1.0, 0.0]))  # accepted: grow; rejected: shrink
        >>> bool(step[0] > step[1])
        True
    """

    def __init__(
        self, step_size: Tensor, target: float, gamma: float = 0.05, t0: float = 10.0, kappa: float = 0.75
    ) -> None:
        self.target, self.gamma, self.t0, self.kappa = target, gamma, t0, kappa
        self.log_step = step_size.log()
        self.mu = self.log_step + math.log(10.0)
        self.h_bar = torch.zeros_like(step_size)
        self.log_average = torch.zeros_like(step_size)
        self.count = 0
        self.bound = math.log(torch.finfo(step_size.dtype).max) / 4  # keeps exp(log_step) and its squares finite

    def update(self, accept_prob: Tensor) -> Tensor:
        r"""Take one iteration's acceptance probabilities :math:`\alpha_m`, ``(chains,)``; return :math:`\epsilon_m`."""
        self.count += 1
        m = self.count
        weight = 1.0 / (m + self.t0)
        self.h_bar = (1 - weight) * self.h_bar + weight * (self.target - accept_prob)
        self.log_step = (self.mu - math.sqrt(m) / self.gamma * self.h_bar).clamp(-self.bound, self.bound)
        eta = m**-self.kappa
        self.log_average = eta * self.log_step + (1 - eta) * self.log_average
        return self.log_step.exp()

    def final(self) -> Tensor:
        r"""The step size to freeze: the averaged iterate :math:`\bar\epsilon` (:math:`\epsilon_0` before any
        update)."""
        return (self.log_average if self.count else self.log_step).exp()


def initial_step_size(log_ratio: Callable[[Tensor], Tensor], step_size: Tensor, max_doublings: int = 50) -> Tensor:
    r"""A first step size, by the heuristic of Hoffman and Gelman (2014, Algorithm 4), on the mean over chains.

    With :math:`\bar\alpha(\epsilon)` the mean acceptance probability :math:`\min(1, r)` of one trial proposal per
    chain, double :math:`\epsilon` while :math:`\bar\alpha > 1/2` if the first trial had :math:`\bar\alpha > 1/2`,
    else halve it while :math:`\bar\alpha \le 1/2`: the result is within a factor of two of where the acceptance
    crosses one half. A non-finite ratio counts as a rejection.

    Args:
        log_ratio: maps a step size (a scalar tensor) to the log-ratios :math:`\log r` of fresh trial proposals,
            ``(chains,)``.
        step_size: where to start (the paper starts at 1).
        max_doublings: at most this many doublings or halvings (a factor :math:`2^{50}` either way).
    """

    def mean_acceptance(eps: Tensor) -> float:
        log_r = log_ratio(eps)
        return float(torch.where(torch.isfinite(log_r), log_r, -math.inf).clamp(max=0.0).exp().mean())

    larger = mean_acceptance(step_size) > 0.5
    for _ in range(max_doublings):
        step_size = step_size * (2.0 if larger else 0.5)
        if (mean_acceptance(step_size) > 0.5) != larger:
            return step_size
    logger.warning("the initial step-size search did not settle in %d doublings", max_doublings)
    return step_size


@dataclass(kw_only=True)
class LocalState(State):
    """The state of a gradient-based local kernel: :class:`State` plus the gradient at ``x``, the step size (shared
    by the chains, expanded to ``(chains,)``) and, during warm-up, its adapter."""

    grad: Tensor
    step_size: Tensor
    adapter: DualAveraging | None = None


class LocalKernel(Sampler):
    """A Metropolis-adjusted, gradient-based kernel with a step size (the base of :class:`~torchnf.mcmc.MALA` and
    :class:`~torchnf.mcmc.HMC`).

    Args:
        step_size: a fixed step size; ``None`` finds one by :func:`initial_step_size` and tunes it by
            :class:`DualAveraging` during warm-up towards ``target_acceptance``.
        target_acceptance: the mean acceptance probability the adaptation aims at, in (0, 1).
    """

    def __init__(self, step_size: float | None, target_acceptance: float) -> None:
        if step_size is not None and (
            isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not 0 < step_size < math.inf
        ):
            raise ValueError(f"step_size must be a positive finite number or None, got {step_size!r}")
        if isinstance(target_acceptance, bool) or not isinstance(target_acceptance, (int, float)):
            raise ValueError(f"target_acceptance must be a number in (0, 1), got {target_acceptance!r}")
        if not 0 < target_acceptance < 1:
            raise ValueError(f"target_acceptance must lie in (0, 1), got {target_acceptance!r}")
        self.initial_step_size = None if step_size is None else float(step_size)
        self.target_acceptance = float(target_acceptance)

    def propose(
        self, state: LocalState, step_size: Tensor, trial: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """A proposal for every chain: ``(x, log_prob, grad, log_ratio)``; ``trial`` asks for the cheapest
        proposal of this step size (one leapfrog step), used by the initial step-size search."""
        raise NotImplementedError

    def init(self, x: Tensor, log_target: LogDensity) -> LocalState:
        log_prob, grad = value_and_grad(log_target, x)
        fixed = self.initial_step_size
        chains = x.shape[0]
        state = LocalState(x, log_prob, log_target, grad=grad, step_size=x.new_full((chains,), fixed or 1.0))
        if fixed is None:

            def trial(eps: Tensor) -> Tensor:
                return self.propose(state, eps.expand(chains), trial=True)[3]

            step = initial_step_size(trial, x.new_tensor(1.0))
            state.step_size = step.expand(chains)
            state.adapter = DualAveraging(step, self.target_acceptance)
        return state

    def step(self, state: LocalState, adapt: bool) -> LocalState:  # type: ignore[override]
        x, log_prob, grad, log_ratio = self.propose(state, state.step_size)
        accept, prob = metropolis(log_ratio)
        state.x = select(accept, x, state.x)
        state.log_prob = torch.where(accept, log_prob, state.log_prob)
        state.grad = select(accept, grad, state.grad)
        state.accept = {self.name: prob}
        if adapt and state.adapter is not None:
            state.step_size = state.adapter.update(prob.mean()).expand(prob.shape)
        return state

    def end_warmup(self, state: LocalState) -> None:  # type: ignore[override]
        if state.adapter is not None:
            state.step_size = state.adapter.final().expand(state.step_size.shape)
            state.adapter = None

    def step_size(self, state: State) -> Tensor | None:
        return getattr(state, "step_size", None)

    def __repr__(self) -> str:
        settings = {"step_size": self.initial_step_size, **vars(self)}
        del settings["initial_step_size"]
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in settings.items())})"
