r"""The independence sampler: Metropolis–Hastings with a normalizing flow as proposal.

The proposal :math:`x' \sim q` ignores the current point, so the Metropolis–Hastings ratio becomes a ratio of
importance weights :math:`w = \tilde\pi / q`:

.. math::

    \alpha(x, x') = \min\Big(1, \frac{\tilde\pi(x')\, q(x)}{\tilde\pi(x)\, q(x')}\Big)
    = \min\Big(1, \frac{w(x')}{w(x)}\Big)

(Hastings 1970, *Monte Carlo sampling methods using Markov chains and their applications*, Biometrika 57; Tierney
1994, *Markov chains for exploring posterior distributions*, Ann. Statist. 22, section 2.3.3). The chain is exact
for any proposal whose support covers the target's, however poorly the flow fits: a poor flow only lowers the
acceptance rate. When :math:`w` is bounded, :math:`w \le M`, the chain is uniformly ergodic with rate
:math:`1 - 1/M` (Mengersen and Tweedie 1996); a flow much narrower than the target mixes slowly in the tails.
Because the flow gives :math:`\log q` of its samples in the same pass, each transition costs one flow sample and one
target evaluation; :math:`\log q` of the current points is cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .base import Sampler, State, check_flow, evaluate, frozen, metropolis, select, value_and_grad

if TYPE_CHECKING:
    from ..flow import Flow
    from ..targets.base import LogDensity

__all__ = ["IndependentMetropolisHastings", "flow_jump"]


@dataclass(kw_only=True)
class FlowState(State):
    """The state of an independence sampler: :class:`State` plus the flow's log-density ``log_q`` at ``x``."""

    log_q: Tensor


def flow_log_prob(flow: Flow, x: Tensor) -> Tensor:
    """The flow's log-density of points ``x`` in evaluation mode, without gradients."""
    with torch.no_grad(), frozen(flow):
        return flow.unchecked_log_prob(x)


def flow_jump(
    flow: Flow,
    log_target: LogDensity,
    x: Tensor,
    log_prob: Tensor,
    log_q: Tensor,
    grad: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor]:
    r"""One independence Metropolis–Hastings transition of every chain with the flow as proposal.

    Args:
        flow: the proposal :math:`q`.
        log_target: :math:`\log\tilde\pi`.
        x: the current points ``(chains, *event_shape)``, with ``log_prob`` :math:`\log\tilde\pi(x)` and
            ``log_q`` :math:`\log q(x)`.
        grad: the gradient of :math:`\log\tilde\pi` at ``x``, for a local kernel that needs it at the new points;
            ``None`` skips gradients.

    Returns:
        The new ``x``, ``log_prob``, ``log_q``, ``grad`` (``None`` when not given) and the acceptance probability of
        each chain.
    """
    with torch.no_grad(), frozen(flow):
        proposal, proposal_log_q = flow.unchecked_sample_and_log_prob(x.shape[:1])
    proposal, proposal_log_q = proposal.to(x.dtype), proposal_log_q.to(x.dtype)
    if grad is None:
        proposal_log_prob, proposal_grad = evaluate(log_target, proposal), None
    else:
        proposal_log_prob, proposal_grad = value_and_grad(log_target, proposal)
    log_ratio = proposal_log_prob - log_prob + log_q - proposal_log_q
    accept, prob = metropolis(log_ratio)
    new_grad = None if grad is None or proposal_grad is None else select(accept, proposal_grad, grad)
    return (
        select(accept, proposal, x),
        torch.where(accept, proposal_log_prob, log_prob),
        torch.where(accept, proposal_log_q, log_q),
        new_grad,
        prob,
    )


class IndependentMetropolisHastings(Sampler):
    r"""Independence Metropolis–Hastings with a flow as proposal: accept :math:`x' \sim q` with probability
    :math:`\min\big(1, \tilde\pi(x')\,q(x) / (\tilde\pi(x)\,q(x'))\big)` (Hastings 1970; Tierney 1994).

    The flow is used as it is, in evaluation mode and without gradients; its move is recorded as ``"flow"`` in
    :attr:`Chains.acceptance`. Runs start from flow samples unless ``initial`` is given.

    Args:
        flow: an unconditional, continuous :class:`~torchnf.Flow` over the target's space.

    Example:
        >>> import torch
        >>> from torchnf import Flow
        >>> from torchnf.bijections import ElementwiseAffine
        >>> from torchnf.mcmc import IndependentMetropolisHastings, sample
        >>> flow = Flow(ElementwiseAffine(2))  # a standard normal
        >>> chains = sample(flow.log_prob, IndependentMetropolisHastings(flow), chains=4, draws=10, warmup=0,
        ...                 seed=0, progress=False)
        >>> float(chains.acceptance["flow"].mean())  # a perfect proposal is always accepted
        1.0
    """

    name = "flow"
    flow: Flow

    def __init__(self, flow: Flow) -> None:
        self.flow = check_flow(flow)

    def init(self, x: Tensor, log_target: LogDensity) -> FlowState:
        return FlowState(x, evaluate(log_target, x).detach(), log_target, log_q=flow_log_prob(self.flow, x))

    def step(self, state: FlowState, adapt: bool) -> FlowState:  # type: ignore[override]
        state.x, state.log_prob, state.log_q, _, prob = flow_jump(
            self.flow, state.log_target, state.x, state.log_prob, state.log_q
        )
        state.accept = {self.name: prob}
        return state
