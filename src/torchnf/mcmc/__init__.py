r"""Markov chain Monte Carlo that uses normalizing flows.

Sample an unnormalized density :math:`\tilde\pi(x) \propto \pi(x)`, given as a callable ``log_target(x)``, with
:func:`sample` and one of these samplers, all Metropolis–Hastings kernels that leave :math:`\pi` invariant exactly,
whatever the quality of the flow (a poor flow costs efficiency, not correctness):

* :class:`MALA` and :class:`HMC`: local, gradient-based kernels, with step sizes adapted during warm-up
  (:mod:`~torchnf.mcmc.adaptation`).
* :class:`IndependentMetropolisHastings`: the flow as an independent proposal.
* :class:`NeuTra`: a local kernel in the flow's latent space, where a fitted flow has removed the target's bad
  geometry (Hoffman et al. 2019).
* :class:`FlowMCMC`: local moves interleaved with flow jumps, the flow optionally refitted on the chains during
  warm-up (Gabrié, Rotskoff and Vanden-Eijnden 2022): it crosses between modes that local kernels cannot.

All chains run together, vectorized; the result is a :class:`Chains` of draws ``(draws, chains, *event_shape)``
with acceptance rates and diagnostics (:mod:`torchnf.mcmc.diagnostics`).

Example:
    >>> import torch
    >>> from torchnf import Flow
    >>> from torchnf.bijections import ElementwiseAffine
    >>> from torchnf.mcmc import FlowMCMC, sample
    >>> def log_target(x):  # two modes at -2 and +2
    ...     return torch.logaddexp(-0.5 * (x + 2).square(), -0.5 * (x - 2).square()).sum(-1)
    >>> flow = Flow(ElementwiseAffine(1))
    >>> sampler = FlowMCMC(flow, local_steps=2, refit=True, refit_steps=5)
    >>> chains = sample(log_target, sampler, chains=8, draws=50, warmup=20, seed=0, progress=False)
    >>> chains.samples.shape
    torch.Size([50, 8, 1])
"""

from .adaptation import DualAveraging, LocalKernel, initial_step_size
from .base import Sampler, State
from .chains import Chains
from .diagnostics import effective_sample_size, rhat
from .flow_mcmc import FlowMCMC
from .hmc import HMC
from .independent import IndependentMetropolisHastings
from .mala import MALA
from .neutra import NeuTra
from .sample import sample
from .summaries import ChainSummary, summary, to_arviz

__all__ = [
    "HMC",
    "MALA",
    "ChainSummary",
    "Chains",
    "DualAveraging",
    "FlowMCMC",
    "IndependentMetropolisHastings",
    "LocalKernel",
    "NeuTra",
    "Sampler",
    "State",
    "effective_sample_size",
    "initial_step_size",
    "rhat",
    "sample",
    "summary",
    "to_arviz",
]
