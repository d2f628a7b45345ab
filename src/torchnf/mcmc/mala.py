r"""The Metropolis-adjusted Langevin algorithm (MALA).

The Langevin diffusion :math:`dX_t = \nabla\log\pi(X_t)\,dt + \sqrt2\,dW_t` has :math:`\pi` as its invariant law;
one Euler–Maruyama step of length :math:`\tau` gives the proposal

.. math::

    x' = x + \tau\,\nabla\log\tilde\pi(x) + \sqrt{2\tau}\,\xi, \qquad \xi \sim \mathcal N(0, I),

a Gaussian :math:`q(x' \mid x) \propto \exp\big(-\lVert x' - x - \tau\nabla\log\tilde\pi(x)\rVert^2 / 4\tau\big)`.
The discretization error is removed exactly by Metropolis–Hastings with both proposal densities,

.. math::

    \log r = \log\tilde\pi(x') - \log\tilde\pi(x) + \log q(x \mid x') - \log q(x' \mid x)

(Roberts and Tweedie 1996, *Exponential convergence of Langevin distributions and their discrete
approximations*, Bernoulli 2). In high dimension the optimal acceptance rate is about 0.574 (Roberts and Rosenthal
1998, *Optimal scaling of discrete approximations to Langevin diffusions*, JRSS B 60), the default target of the
step-size adaptation.
"""

from __future__ import annotations

from torch import Tensor

from .adaptation import LocalKernel, LocalState
from .base import per_chain, squared_norm, value_and_grad

__all__ = ["MALA"]


class MALA(LocalKernel):
    r"""The Metropolis-adjusted Langevin algorithm, vectorized over chains.

    Args:
        step_size: a fixed :math:`\tau`; ``None`` (the default) finds one and adapts it during warm-up (see
            :mod:`torchnf.mcmc.adaptation`).
        target_acceptance: the mean acceptance probability the adaptation aims at (Roberts and Rosenthal 1998).

    Example:
        >>> import torch
        >>> from torchnf.mcmc import MALA, sample
        >>> chains = sample(lambda x: -0.5 * x.square().sum(-1), MALA(), chains=4, draws=20, warmup=20,
        ...                 initial=torch.zeros(4, 2), seed=0, progress=False)
        >>> chains.samples.shape, sorted(chains.acceptance)
        (torch.Size([20, 4, 2]), ['mala'])
    """

    name = "mala"

    def __init__(self, step_size: float | None = None, target_acceptance: float = 0.574) -> None:
        super().__init__(step_size, target_acceptance)

    def propose(
        self, state: LocalState, step_size: Tensor, trial: bool = False
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        tau = per_chain(step_size, state.x)
        noise = state.x.new_empty(state.x.shape).normal_()
        x = state.x + tau * state.grad + (2 * tau).sqrt() * noise
        log_prob, grad = value_and_grad(state.log_target, x)
        # log q(x'|x) = -|sqrt(2 tau) xi|^2 / (4 tau) = -|xi|^2 / 2; the normalizers of q cancel (same tau both ways)
        log_forward = -0.5 * squared_norm(noise)
        log_backward = -squared_norm(state.x - x - tau * grad) / (4 * step_size)
        return x, log_prob, grad, log_prob - state.log_prob + log_backward - log_forward
