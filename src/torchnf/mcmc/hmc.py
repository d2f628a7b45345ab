r"""Hamiltonian Monte Carlo (HMC) with an identity mass matrix.

The target is extended by a momentum :math:`p \sim \mathcal N(0, I)` to the density :math:`e^{-H(x, p)}` with
Hamiltonian :math:`H(x, p) = -\log\tilde\pi(x) + \tfrac12\lVert p\rVert^2`. Each transition draws a fresh momentum
and follows the dynamics :math:`\dot x = p`, :math:`\dot p = \nabla\log\tilde\pi(x)` for :math:`L` leapfrog steps of
size :math:`\epsilon`,

.. math::

    p_{1/2} = p_0 + \tfrac\epsilon2\nabla\log\tilde\pi(x_0), \qquad
    x_{k+1} = x_k + \epsilon\,p_{k+1/2}, \qquad
    p_{k+3/2} = p_{k+1/2} + \epsilon\,\nabla\log\tilde\pi(x_{k+1}),

with a half step for the last momentum update. The leapfrog map is reversible (with a momentum flip) and preserves
volume, so accepting the end point with probability :math:`\min(1, e^{H(x_0, p_0) - H(x_L, p_L)})` leaves the
target invariant (Duane, Kennedy, Pendleton and Roweth 1987, *Hybrid Monte Carlo*, Phys. Lett. B 195; Neal 2011,
*MCMC using Hamiltonian dynamics*, Handbook of MCMC, chapter 5). A non-finite energy (a diverging trajectory)
rejects.

With a fixed trajectory length :math:`L\epsilon` the chain can be nearly periodic in some direction (on a Gaussian,
when :math:`L\epsilon` is close to a multiple of half a period), and the acceptance can vary unevenly with
:math:`\epsilon`, which misleads the step-size adaptation. Each transition therefore draws its step size uniformly
from :math:`\epsilon\,[1 - j, 1 + j]` (Neal 2011, section 5.4.2, after Mackenzie 1989, *An improved hybrid Monte
Carlo method*); the jitter is independent of the state, so the transition is a mixture of kernels that each leave
:math:`\pi` invariant. The default target acceptance 0.65 is the optimum of Beskos et al. (2013, *Optimal tuning of
the hybrid Monte Carlo algorithm*, Bernoulli 19), about 0.651 in high dimension.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .adaptation import LocalKernel, LocalState
from .base import per_chain, squared_norm, value_and_grad

__all__ = ["HMC"]


class HMC(LocalKernel):
    r"""Hamiltonian Monte Carlo with ``leapfrog_steps`` leapfrog steps of size :math:`\epsilon`, vectorized over
    chains.

    Args:
        step_size: a fixed :math:`\epsilon`; ``None`` (the default) finds one and adapts it during warm-up (see
            :mod:`torchnf.mcmc.adaptation`).
        leapfrog_steps: the number of leapfrog steps :math:`L` of each trajectory (each costs one gradient).
        target_acceptance: the mean acceptance probability the adaptation aims at.
        jitter: each transition draws its step size uniformly from :math:`\epsilon\,[1 - j, 1 + j]` (0: fixed).

    Example:
        >>> import torch
        >>> from torchnf.mcmc import HMC, sample
        >>> chains = sample(lambda x: -0.5 * x.square().sum(-1), HMC(leapfrog_steps=3), chains=4, draws=20,
        ...                 warmup=20, initial=torch.zeros(4, 2), seed=0, progress=False)
        >>> chains.step_size.shape
        torch.Size([4])
    """

    name = "hmc"

    def __init__(
        self,
        step_size: float | None = None,
        leapfrog_steps: int = 10,
        target_acceptance: float = 0.65,
        jitter: float = 0.2,
    ) -> None:
        super().__init__(step_size, target_acceptance)
        if isinstance(leapfrog_steps, bool) or not isinstance(leapfrog_steps, int) or leapfrog_steps < 1:
            raise ValueError(f"leapfrog_steps must be a positive int, got {leapfrog_steps!r}")
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter < 1:
            raise ValueError(f"jitter must be a number in [0, 1), got {jitter!r}")
        self.leapfrog_steps, self.jitter = leapfrog_steps, float(jitter)

    def propose(
        self, state: LocalState, step_size: Tensor, trial: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if not trial and self.jitter:
            step_size = step_size * (1 + self.jitter * (2 * torch.rand_like(step_size) - 1))
        eps = per_chain(step_size, state.x)
        momentum = state.x.new_empty(state.x.shape).normal_()
        initial_energy = -state.log_prob + 0.5 * squared_norm(momentum)
        x, log_prob, grad = state.x, state.log_prob, state.grad
        p = momentum + 0.5 * eps * grad
        steps = 1 if trial else self.leapfrog_steps
        for k in range(steps):
            x = x + eps * p
            log_prob, grad = value_and_grad(state.log_target, x)
            p = p + (eps if k < steps - 1 else 0.5 * eps) * grad
        final_energy = -log_prob + 0.5 * squared_norm(p)
        return x, log_prob, grad, initial_energy - final_energy

    def info(self, state: LocalState) -> dict[str, float]:  # type: ignore[override]
        return {"leapfrog_steps": self.leapfrog_steps, "jitter": self.jitter}
