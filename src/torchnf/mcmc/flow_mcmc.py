r"""Local MCMC augmented with flow jumps, and a flow refitted on the chains during warm-up.

Each iteration applies, to every chain, ``local_steps`` transitions of a local kernel :math:`K_{\text{loc}}`
(MALA by default) and then one independence Metropolis–Hastings jump :math:`K_q` with the flow :math:`q` as
proposal:

.. math::

    K = K_{\text{loc}}^{\,n} \, K_q, \qquad
    \alpha_q(x, x') = \min\Big(1, \frac{\tilde\pi(x')\,q(x)}{\tilde\pi(x)\,q(x')}\Big).

Both kernels leave :math:`\pi` invariant, so their composition does. The local moves explore each basin
efficiently; the flow jumps cross between basins that a local kernel would take exponentially long to leave, so
the chains equilibrate the weights of the modes (Gabrié, Rotskoff and Vanden-Eijnden 2022, *Adaptive Monte Carlo
augmented with normalizing flows*, PNAS 119, e2109420119; Samsonov, Lagutin, Gabrié, Durmus, Naumov and Moulines
2022, *Local-global MCMC kernels: the best of both worlds*, NeurIPS).

During warm-up the flow learns from the chains: every ``refit_every`` iterations it takes ``refit_steps`` Adam
steps of maximum likelihood (forward KL, :math:`-\frac1B\sum_b\log q(x_b)`) on a buffer of the recent states of
all chains. Better flows make more jumps accepted, which makes the buffer closer to :math:`\pi`. After warm-up
the flow is frozen: a proposal that keeps adapting to the chain's own history makes the process non-Markovian, and
such adaptive chains can converge to the wrong law unless the adaptation vanishes (Roberts and Rosenthal 2007,
*Coupling and ergodicity of adaptive MCMC*); with a fixed flow the kept draws come from a Markov chain that leaves
:math:`\pi` invariant.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..optimization import check_positive_ints, make_optimizer
from .adaptation import LocalKernel, LocalState
from .base import Sampler, State, check_flow
from .independent import flow_jump, flow_log_prob

if TYPE_CHECKING:
    from ..flow import Flow
    from ..targets.base import LogDensity

__all__ = ["FlowMCMC"]

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class FlowMCMCState(State):
    """The state of a :class:`FlowMCMC` run: the local kernel's state and the warm-up's refitting machinery."""

    local: LocalState
    iteration: int = 0
    optimizer: torch.optim.Optimizer | None = None
    buffer: Tensor | None = None
    stored: int = 0
    refits: int = 0
    skipped_steps: int = 0
    interval: list[Tensor] = field(default_factory=list)
    flow_acceptance: list[float] = field(default_factory=list)
    refit_loss: list[float] = field(default_factory=list)


class FlowMCMC(Sampler):
    r"""A local kernel interleaved with flow jumps; the flow can be refitted on the chains during warm-up (Gabrié,
    Rotskoff and Vanden-Eijnden 2022; Samsonov et al. 2022).

    Refitting (``refit=True``) is for a flow that has not been fitted to the target, or only roughly: it then
    learns from the chains. It is off by default because it spoils a flow already fitted by reverse KL: on the
    benchmarks of ``benchmarks/sampling.py`` the refits, on a few hundred correlated chain states, lowered the
    flow-jump acceptance (from 0.80 to 0.39 on a 10-D funnel, from 0.57 to 0.07 on a 31-D posterior) and the
    effective sample size by 2-22 times. A refitting flow is trained **in place** during warm-up (pass
    ``copy.deepcopy(flow)`` to keep the original); a second run starts from the refitted flow. Its
    standardization stays as it is: give the flow a rough idea of the target's extent (by its base, a first affine
    layer or a first fit) so that its first proposals reach every mode.

    The flow's :math:`\log q` of the current points is recomputed before each jump, since the local moves have
    changed them. :attr:`Chains.acceptance` records the local move (``"mala"``) and the flow jumps (``"flow"``);
    :attr:`Chains.info` the number of refits, the mean flow-jump acceptance over each interval of ``refit_every``
    warm-up iterations (``flow_acceptance``) and the mean loss of each refit (``refit_loss``).

    Args:
        flow: an unconditional, continuous :class:`~torchnf.Flow` over the target's space.
        local: the local kernel (default :class:`~torchnf.mcmc.MALA`).
        local_steps: local transitions before each flow jump (0: flow jumps only).
        refit: refit the flow on the chains during warm-up.
        refit_every: warm-up iterations between refits.
        refit_steps: Adam steps per refit.
        lr: Adam's learning rate (the optimizer is kept across refits).
        buffer: the number of recent warm-up iterations whose states (of all chains) the flow is refitted on.
        batch_size: points per Adam step, drawn at random from the buffer.
        max_grad_norm: clip the gradient norm of each step to this value.

    Example:
        >>> import torch
        >>> from torchnf import Flow
        >>> from torchnf.bijections import ElementwiseAffine
        >>> from torchnf.mcmc import FlowMCMC, sample
        >>> flow = Flow(ElementwiseAffine(1))
        >>> sampler = FlowMCMC(flow, local_steps=2, refit=True, refit_every=5, refit_steps=2)
        >>> chains = sample(lambda x: -0.5 * (x - 1).square().sum(-1), sampler, chains=4, draws=10, warmup=10,
        ...                 seed=0, progress=False)
        >>> sorted(chains.acceptance), chains.info["refits"]
        (['flow', 'mala'], 2)
    """

    flow: Flow

    def __init__(
        self,
        flow: Flow,
        local: LocalKernel | None = None,
        local_steps: int = 10,
        refit: bool = False,
        refit_every: int = 10,
        refit_steps: int = 20,
        lr: float = 1e-3,
        buffer: int = 50,
        batch_size: int = 256,
        max_grad_norm: float = 10.0,
    ) -> None:
        from .mala import MALA

        self.flow = check_flow(flow)
        local = MALA() if local is None else local
        if not isinstance(local, LocalKernel):
            raise TypeError(f"local must be a local kernel such as MALA() or HMC(), got {local!r}")
        if isinstance(local_steps, bool) or not isinstance(local_steps, int) or local_steps < 0:
            raise ValueError(f"local_steps must be a non-negative int, got {local_steps!r}")
        if not isinstance(refit, bool):
            raise TypeError(f"refit must be True or False, got {refit!r}")
        check_positive_ints(refit_every=refit_every, refit_steps=refit_steps, buffer=buffer, batch_size=batch_size)
        for name, value in (("lr", lr), ("max_grad_norm", max_grad_norm)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if refit and not any(p.requires_grad for p in flow.parameters()):
            raise ValueError("refit=True needs a flow with trainable parameters; this one has none (use refit=False)")
        self.local, self.local_steps, self.refit = local, local_steps, refit
        self.refit_every, self.refit_steps, self.lr = refit_every, refit_steps, float(lr)
        self.buffer, self.batch_size, self.max_grad_norm = buffer, batch_size, float(max_grad_norm)
        self.name = f"flow-{local.name}"

    def init(self, x: Tensor, log_target: LogDensity) -> FlowMCMCState:
        local = self.local.init(x, log_target)
        return FlowMCMCState(local.x, local.log_prob, log_target, local=local)

    def step(self, state: FlowMCMCState, adapt: bool) -> FlowMCMCState:  # type: ignore[override]
        local, probs = state.local, []
        for _ in range(self.local_steps):
            local = self.local.step(local, adapt)
            probs.append(local.accept[self.local.name])
        log_q = flow_log_prob(self.flow, local.x)
        grad = local.grad if self.local_steps else None
        local.x, local.log_prob, _, grad, prob = flow_jump(
            self.flow, local.log_target, local.x, local.log_prob, log_q, grad
        )
        if grad is not None:
            local.grad = grad
        state.local, state.x, state.log_prob = local, local.x, local.log_prob
        state.accept = {self.local.name: torch.stack(probs).mean(0)} if probs else {}
        state.accept["flow"] = prob
        if adapt:
            self._learn(state, prob)
        return state

    def _learn(self, state: FlowMCMCState, prob: Tensor) -> None:
        """Store the states of this warm-up iteration; every ``refit_every`` iterations, log the flow's acceptance
        and refit it."""
        if state.buffer is None:
            state.buffer = state.x.new_empty((self.buffer, *state.x.shape))
        state.buffer[state.iteration % self.buffer] = state.x
        state.stored = min(state.stored + 1, self.buffer)
        state.interval.append(prob.mean())
        state.iteration += 1
        if state.iteration % self.refit_every:
            return
        state.flow_acceptance.append(float(torch.stack(state.interval).mean()))
        state.interval = []
        if self.refit:
            self._refit(state)

    def _refit(self, state: FlowMCMCState) -> None:
        """``refit_steps`` Adam steps of maximum likelihood on the buffer; non-finite steps are skipped."""
        if state.buffer is None:
            return
        data = state.buffer[: state.stored].flatten(0, 1)
        params = [p for p in self.flow.parameters() if p.requires_grad]
        if state.optimizer is None:
            state.optimizer = make_optimizer("adam", params, self.lr, 0.0)
        optimizer, losses = state.optimizer, []
        self.flow.train()
        with torch.enable_grad():
            for _ in range(self.refit_steps):
                index = torch.randint(data.shape[0], (min(self.batch_size, data.shape[0]),), device=data.device)
                loss = -self.flow.unchecked_log_prob(data[index]).mean()
                optimizer.zero_grad(set_to_none=True)
                if not bool(torch.isfinite(loss)):
                    state.skipped_steps += 1
                    continue
                loss.backward()
                if not bool(torch.isfinite(torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm))):
                    optimizer.zero_grad(set_to_none=True)
                    state.skipped_steps += 1
                    continue
                optimizer.step()
                losses.append(float(loss.detach()))
        self.flow.eval()
        state.refits += 1
        state.refit_loss.append(sum(losses) / len(losses) if losses else math.nan)
        logger.debug(
            "refit %d: loss %.4f, flow acceptance %.3f", state.refits, state.refit_loss[-1], state.flow_acceptance[-1]
        )

    def end_warmup(self, state: FlowMCMCState) -> None:  # type: ignore[override]
        self.local.end_warmup(state.local)
        if state.interval:
            state.flow_acceptance.append(float(torch.stack(state.interval).mean()))
        state.interval, state.buffer, state.optimizer = [], None, None
        self.flow.eval()

    def step_size(self, state: FlowMCMCState) -> Tensor | None:  # type: ignore[override]
        return self.local.step_size(state.local)

    def info(self, state: FlowMCMCState) -> dict[str, Any]:  # type: ignore[override]
        return {
            **self.local.info(state.local),
            "refits": state.refits,
            "flow_acceptance": state.flow_acceptance,
            "refit_loss": state.refit_loss,
            "skipped_refit_steps": state.skipped_steps,
        }
