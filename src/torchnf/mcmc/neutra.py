r"""NeuTra: a local kernel run in the latent space of a flow ("neural transport").

A flow maps data to latent, :math:`z = f(x)`; write :math:`g = f^{-1}` for the map back (here including the flow's
fixed standardization). If :math:`X \sim \pi` then :math:`Z = f(X)` has the density

.. math::

    \log\pi_Z(z) = \log\tilde\pi\big(g(z)\big) + \log\Big|\det\frac{\partial g(z)}{\partial z}\Big| + \text{const},

and when the flow approximates :math:`\pi` well, :math:`\pi_Z` is close to the flow's base (a standard normal):
round, of unit scale, without the correlations and funnels that make :math:`\pi` hard for HMC. NeuTra runs a local
kernel (HMC by default) on :math:`\pi_Z` and maps each draw back, :math:`x = g(z)`; the chain on :math:`z` is
exact for :math:`\pi_Z`, so the mapped chain is exact for :math:`\pi`, whatever the quality of the flow (Hoffman,
Sountsov, Dillon, Langmore, Tran and Vasudevan 2019, *NeuTra-lizing bad geometry in Hamiltonian Monte Carlo using
neural transport*, arXiv:1903.03704). The flow is not trained here: it is evaluated with its parameters frozen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .adaptation import LocalKernel, LocalState
from .base import Sampler, check_flow, evaluate, frozen

if TYPE_CHECKING:
    from ..flow import Flow
    from ..targets.base import LogDensity

__all__ = ["LatentDensity", "NeuTra"]


def to_data(flow: Flow, z: Tensor) -> tuple[Tensor, Tensor]:
    r"""The data points :math:`x = g(z)` of latent points and :math:`\log|\det\partial g(z) / \partial z|`."""
    y, log_det = flow.bijection.inverse(z)
    x, log_det_standardization = flow.standardization.inverse(y)
    return x, log_det + log_det_standardization


def to_latent(flow: Flow, x: Tensor) -> Tensor:
    """The latent points :math:`z = f(x)` of data points (standardization, then the bijection)."""
    return flow.bijection(flow.standardization(x)[0])[0]


class LatentDensity:
    r"""The pulled-back density :math:`\log\pi_Z(z) = \log\tilde\pi(g(z)) + \log|\det\partial g/\partial z|`,
    differentiable in :math:`z`, with the flow's parameters frozen at every call.

    Args:
        flow: the flow whose inverse is :math:`g`.
        log_target: :math:`\log\tilde\pi` over the data space.
    """

    def __init__(self, flow: Flow, log_target: LogDensity) -> None:
        self.flow, self.log_target = flow, log_target

    def __call__(self, z: Tensor) -> Tensor:
        with frozen(self.flow):
            x, log_det = to_data(self.flow, z)
            return evaluate(self.log_target, x) + log_det


class NeuTra(Sampler):
    r"""A local kernel on the flow's latent density :math:`\pi_Z` (Hoffman et al. 2019), draws mapped back to the
    data space by :math:`x = g(z)`.

    The step size is adapted in the latent space, where a well-fitted flow makes one scale right for every
    direction. :attr:`Chains.acceptance` records the kernel's move (``"hmc"`` by default).

    Args:
        flow: an unconditional, continuous :class:`~torchnf.Flow` fitted to (an approximation of) the target.
        kernel: the local kernel run on :math:`\pi_Z` (default :class:`~torchnf.mcmc.HMC`).

    Example:
        >>> import torch
        >>> from torchnf import Flow
        >>> from torchnf.bijections import ElementwiseAffine
        >>> from torchnf.mcmc import HMC, NeuTra, sample
        >>> flow = Flow(ElementwiseAffine(2))
        >>> chains = sample(lambda x: -0.5 * x.square().sum(-1), NeuTra(flow, HMC(leapfrog_steps=3)), chains=4,
        ...                 draws=10, warmup=10, seed=0, progress=False)
        >>> sorted(chains.acceptance)
        ['hmc']
    """

    flow: Flow

    def __init__(self, flow: Flow, kernel: LocalKernel | None = None) -> None:
        from .hmc import HMC

        self.flow = check_flow(flow)
        kernel = HMC() if kernel is None else kernel
        if not isinstance(kernel, LocalKernel):
            raise TypeError(f"kernel must be a local kernel such as HMC() or MALA(), got {kernel!r}")
        self.kernel = kernel
        self.name = f"neutra-{kernel.name}"

    def init(self, x: Tensor, log_target: LogDensity) -> LocalState:
        with torch.no_grad(), frozen(self.flow):
            z = to_latent(self.flow, x)
        return self.kernel.init(z, LatentDensity(self.flow, log_target))

    def step(self, state: LocalState, adapt: bool) -> LocalState:  # type: ignore[override]
        return self.kernel.step(state, adapt)

    def end_warmup(self, state: LocalState) -> None:  # type: ignore[override]
        self.kernel.end_warmup(state)

    def position(self, state: LocalState) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        with torch.no_grad(), frozen(self.flow):
            x, log_det = to_data(self.flow, state.x)
        return x, state.log_prob - log_det

    def step_size(self, state: LocalState) -> Tensor | None:  # type: ignore[override]
        return self.kernel.step_size(state)

    def info(self, state: LocalState) -> dict[str, Any]:  # type: ignore[override]
        return self.kernel.info(state)
