r"""The one driver of every sampler: :func:`sample`.

A run has two phases. During the ``warmup`` iterations the sampler may adapt itself (step sizes by dual averaging,
the flow of :class:`~torchnf.mcmc.FlowMCMC` by refitting); these draws are discarded. Then every adapted setting is
frozen (:meth:`Sampler.end_warmup`) and ``draws * thin`` iterations of a fixed Markov kernel follow, of which every
``thin``-th is kept. With :math:`K` leaving :math:`\pi` invariant, the kept draws of each chain are a Markov chain
with stationary law :math:`\pi`, and averages over them converge to expectations under :math:`\pi`.

The protocol a sampler follows is that of :class:`~torchnf.mcmc.base.Sampler`: ``init(x, log_target)`` builds the
state of a run from starting points, ``step(state, adapt)`` advances every chain by one transition and records the
acceptance probability of each move, ``end_warmup(state)`` freezes the adaptation, ``position(state)`` returns the
current points in the target's space and their log-densities.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .._validation import as_points, as_tensor
from ..optimization import check_positive_ints
from .base import Sampler, check_flow, evaluate
from .chains import Chains

if TYPE_CHECKING:
    from ..targets.base import LogDensity

__all__ = ["sample"]

logger = logging.getLogger(__name__)


def _check_settings(log_target: Any, sampler: Any, chains: Any, draws: Any, warmup: Any, thin: Any, seed: Any) -> None:
    """Refuse bad arguments before anything runs, naming the argument."""
    if not callable(log_target):
        raise TypeError(f"log_target must be a callable x -> log-density, got {type(log_target).__name__}")
    if not isinstance(sampler, Sampler):
        raise TypeError(f"sampler must be a torchnf.mcmc sampler (MALA, HMC, FlowMCMC...), got {sampler!r}")
    check_positive_ints(chains=chains, draws=draws, thin=thin)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative int, got {warmup!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    if sampler.flow is not None:
        check_flow(sampler.flow)


def _starting_points(sampler: Sampler, initial: Any, chains: int) -> Tensor:
    """Checked starting points ``(chains, *event_shape)``: ``initial``, or flow samples for a flow sampler."""
    flow = sampler.flow
    if initial is None:
        if flow is None:
            raise ValueError(
                f"{type(sampler).__name__} has no flow to draw starting points from: pass initial, a tensor of "
                f"shape (chains, *event_shape) with chains={chains}"
            )
        training = flow.training
        flow.eval()
        x = flow.sample(chains)
        flow.train(training)
        return x
    if flow is not None:
        x, event_shape = as_points(initial, "initial", flow.event_shape, flow.dtype, flow.device), flow.event_shape
    else:
        t = as_tensor(initial, "initial")
        event_shape = t.shape[1:]
        x = as_points(t, "initial", event_shape, t.dtype, t.device) if t.dim() >= 2 else t
    expected = (chains, *event_shape)
    if x.dim() < 2 or x.shape != expected:
        raise ValueError(
            f"initial must have shape (chains, *event_shape) = {expected}: one starting point per chain; "
            f"got {tuple(x.shape)}"
        )
    return x.detach().clone()


def _check_start(log_target: LogDensity, x: Tensor) -> None:
    """The target must be finite at every starting point."""
    values = evaluate(log_target, x)
    for problem, bad in (
        ("NaN", values.isnan()),
        ("+inf (is the density normalizable?)", values == float("inf")),
        ("-inf (zero density: start inside the support)", values == float("-inf")),
    ):
        if bool(bad.any()):
            index = bad.nonzero().flatten().tolist()
            raise ValueError(
                f"log_target is {problem} at the starting point of chain(s) {index[:10]}"
                + (f" and {len(index) - 10} more" if len(index) > 10 else "")
            )


def sample(
    log_target: LogDensity,
    sampler: Sampler,
    *,
    chains: int = 16,
    draws: int = 1000,
    warmup: int = 500,
    initial: Any = None,
    thin: int = 1,
    seed: int | None = None,
    progress: bool | None = None,
) -> Chains:
    r"""Run ``chains`` chains of ``sampler`` on the unnormalized density :math:`\tilde\pi = e^{\text{log\_target}}`.

    Args:
        log_target: :math:`\log\tilde\pi`, a callable taking points ``(chains, *event_shape)`` and returning
            ``(chains,)``, differentiable in the points for gradient-based kernels; :math:`-\infty` outside the
            support.
        sampler: a :class:`~torchnf.mcmc.MALA`, :class:`~torchnf.mcmc.HMC`,
            :class:`~torchnf.mcmc.IndependentMetropolisHastings`, :class:`~torchnf.mcmc.NeuTra` or
            :class:`~torchnf.mcmc.FlowMCMC` (it holds settings only and can serve several runs).
        chains: the number of chains, simulated together.
        draws: the number of kept draws per chain.
        warmup: the number of adaptation iterations, discarded.
        initial: starting points ``(chains, *event_shape)``. Samplers that hold a flow start from flow samples
            when it is ``None``; the local kernels need it, and keep its dtype and device (flow samplers work in the
            flow's).
        thin: keep every ``thin``-th iteration after warm-up.
        seed: make the run reproducible. The run then draws from torch's default generators inside
            :func:`torch.random.fork_rng` seeded with ``seed``, so the global random state is the same afterwards
            (on CUDA, generators of other devices than the run's are reseeded). Without a seed the global generators
            are used and advance.
        progress: show a progress bar (``None``: only when the output is a terminal).

    Returns:
        The :class:`~torchnf.mcmc.Chains` of the kept draws, with acceptance rates, step sizes and run information.
    """
    _check_settings(log_target, sampler, chains, draws, warmup, thin, seed)
    if progress is not None and not isinstance(progress, bool):
        raise ValueError(f"progress must be True, False or None, got {progress!r}")
    if sampler.flow is not None:
        device = sampler.flow.device
    else:
        device = initial.device if isinstance(initial, Tensor) else torch.device("cpu")
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(cuda, enabled=seed is not None), torch.no_grad():
        if seed is not None:
            torch.manual_seed(seed)
        x = _starting_points(sampler, initial, chains)
        _check_start(log_target, x)
        return _run(log_target, sampler, x, draws, warmup, thin, progress, seed)


def _run(
    log_target: LogDensity,
    sampler: Sampler,
    x: Tensor,
    draws: int,
    warmup: int,
    thin: int,
    progress: bool | None,
    seed: int | None,
) -> Chains:
    chains = x.shape[0]
    samples = x.new_empty((draws, *x.shape))
    log_prob = x.new_empty((draws, chains))
    totals: dict[str, Tensor] = {}
    per_draw: dict[str, Tensor] = {}
    started = time.perf_counter()
    with tqdm(total=warmup + draws * thin, disable=None if progress is None else not progress, unit="it") as bar:
        bar.set_description(f"{sampler.name} warm-up")
        state = sampler.init(x, log_target)
        for _ in range(warmup):
            state = sampler.step(state, adapt=True)
            bar.update(1)
        sampler.end_warmup(state)
        warmed = time.perf_counter()
        bar.set_description(sampler.name)
        for d in range(draws):
            for _ in range(thin):
                state = sampler.step(state, adapt=False)
                for move, prob in state.accept.items():
                    if move not in totals:
                        totals[move], per_draw[move] = torch.zeros_like(prob), x.new_zeros((draws, chains))
                    totals[move] += prob
                    per_draw[move][d] += prob / thin
                bar.update(1)
            samples[d], log_prob[d] = sampler.position(state)
            if not bar.disable and d % 50 == 0:
                bar.set_postfix(
                    {move: f"{float(total.mean()) / ((d + 1) * thin):.2f}" for move, total in totals.items()}
                )
    finished = time.perf_counter()
    acceptance = {move: total / (draws * thin) for move, total in totals.items()}
    step_size = sampler.step_size(state)
    info = {
        "sampler": sampler.name,
        "warmup": warmup,
        "thin": thin,
        "seed": seed,
        "warmup_seconds": warmed - started,
        "sampling_seconds": finished - warmed,
        "accept_prob": per_draw,
        **sampler.info(state),
    }
    logger.info(
        "%s: %d draws of %d chains in %.1f s; mean acceptance %s",
        sampler.name,
        draws,
        chains,
        finished - started,
        ", ".join(f"{move} {float(rate.mean()):.3f}" for move, rate in acceptance.items()),
    )
    return Chains(samples, log_prob, acceptance, None if step_size is None else step_size.clone(), info)
