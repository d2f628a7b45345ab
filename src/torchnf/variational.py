r"""Variational fitting (reverse KL): fit a flow to a density known only up to its normalizer.

Given an unnormalized target :math:`\tilde\pi(x) = Z\,\pi(x)`, :func:`fit_variational` maximizes the evidence lower
bound

.. math::

    \mathrm{ELBO}(\theta) = \mathbb E_{x \sim q_\theta}\big[\log\tilde\pi(x) - \log q_\theta(x)\big]
    = \log Z - \mathrm{KL}(q_\theta \,\|\, \pi) \le \log Z

with reparameterized samples :math:`x = T_\theta(u)`, :math:`u \sim p_U` from the base distribution, whose gradient
flows through the samples into the target (Rezende and Mohamed 2015, *Variational inference with normalizing
flows*; Kingma and Welling 2014). With annealing the objective is at first the tempered
:math:`\mathbb E_q[\beta_t\log\tilde\pi(x) - \log q_\theta(x)]`, :math:`\beta_t` rising geometrically from
``initial_beta`` to 1: a flat target first spreads the flow over every mode, which reverse KL alone, being mode
seeking, tends to miss. :mod:`torchnf.importance` measures how good the fit is (importance-sampling
:math:`\log Z`, effective sample size, Pareto :math:`\hat k`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .optimization import History, OptimizerSpec, ScheduleSpec, check_positive_ints, check_settings, optimize
from .targets.checks import check_density_flow, check_log_target, evaluate_log_target
from .training import bijections_of, regularization_loss

if TYPE_CHECKING:
    from .flow import Flow

__all__ = ["fit_variational"]


def fit_variational(
    flow: Flow,
    log_target: Callable[[Tensor], Tensor],
    *,
    steps: int = 5000,
    samples: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: OptimizerSpec = "adam",
    lr_schedule: ScheduleSpec = None,
    max_grad_norm: float | None = 10.0,
    annealing_steps: int = 0,
    initial_beta: float = 0.01,
    patience: int | None = 10,
    eval_every: int = 100,
    max_nonfinite: int = 10,
    max_loss_jump: float | None = 30.0,
    seed: int | None = None,
    progress: bool | None = None,
) -> History:
    r"""Fit ``flow`` to the unnormalized density ``exp(log_target(x))`` by minimizing the reverse KL divergence.

    Each step draws ``samples`` reparameterized points from the flow and takes a gradient step on
    :math:`-\frac1S\sum_s\big[\beta_t\log\tilde\pi(x_s) - \log q_\theta(x_s)\big]` (the negative ELBO once
    :math:`\beta_t = 1`).

    It runs in one process: under ``torchrun`` each process fits alone (alike, given the same initial weights and
    ``seed``), unlike :func:`torchnf.fit`, which trains in parallel (:mod:`torchnf.distributed`).

    Args:
        flow: the flow to train, in place (continuous and unconditional); left in evaluation mode.
        log_target: the unnormalized log-density, mapping points ``(n, *event_shape)`` to ``(n,)``,
            differentiable in its input: a function, a :class:`torchnf.targets.Target`, another flow's
            ``log_prob``. It may return :math:`-\infty` outside its support (a step that draws such a point is
            skipped) but never NaN or :math:`+\infty`.
        steps: the maximum number of optimizer steps.
        samples: points drawn per step.
        lr, weight_decay, optimizer, lr_schedule, max_grad_norm: as for :func:`torchnf.fit`.
        annealing_steps: steps over which the inverse temperature :math:`\beta_t` rises geometrically from
            ``initial_beta`` to 1 (0: no annealing).
        initial_beta: the inverse temperature at the start of annealing, in (0, 1].
        patience: stop after this many evaluations, once annealing is over, without a better smoothed objective
            (the negative ELBO averaged over the steps since the previous evaluation); the best weights are
            restored at the end either way (``None``: never stop early).
        eval_every: steps between evaluations (the history's resolution).
        max_nonfinite: after this many consecutive skipped steps (non-finite loss or gradient, or a loss jumping
            ``max_loss_jump`` robust standard deviations above its recent level), restore the last good weights
            and halve the learning rate; after three such rollbacks, stop.
        max_loss_jump: the divergence guard's threshold (``None``: only non-finite losses are skipped).
        seed: seed for the samples, drawn without touching the global random state (``None``: draw from it).
        progress: show a progress bar (``None``: only when the output is a terminal).

    Returns:
        The :class:`~torchnf.History`, also kept in ``flow.history``: ``train_loss`` is the objective minimized
        (tempered during annealing), ``val_loss`` the smoothed negative ELBO that early stopping compares, and
        ``metrics`` holds ``"elbo"`` (its negation, :attr:`History.elbo`), ``"beta"`` and ``"ess"`` (the
        importance-sampling effective sample size of each step's samples as a fraction of ``samples``, averaged
        over the interval: 1 for a perfect fit).

    Example:
        >>> import torch
        >>> from torchnf import Flow, RealNVP
        >>> target = lambda x: -0.5 * ((x - 1.0) / 0.5).square().sum(-1)  # N(1, 0.25 I), unnormalized
        >>> flow = Flow(RealNVP(2, layers=2, hidden=(16,)))
        >>> history = flow.fit_variational(target, steps=300, seed=0, progress=False)
        >>> bool(abs(flow.sample(2000).mean() - 1.0) < 0.1)
        True
    """
    check_density_flow(flow, "fit_variational")
    check_log_target(log_target, flow.event_shape)
    check_positive_ints(steps=steps, samples=samples, eval_every=eval_every)
    check_settings(lr, optimizer, lr_schedule, max_grad_norm, patience, max_nonfinite)
    if isinstance(annealing_steps, bool) or not isinstance(annealing_steps, int) or annealing_steps < 0:
        raise ValueError(f"annealing_steps must be a non-negative int, got {annealing_steps!r}")
    if not 0 < initial_beta <= 1:
        raise ValueError(f"initial_beta must lie in (0, 1], got {initial_beta}")
    if not any(p.requires_grad for p in flow.parameters()):
        raise ValueError(f"{type(flow.bijection).__name__} has no trainable parameters")

    step = 0
    history = History()
    bijections = bijections_of(flow)

    def batch_loss() -> tuple[Tensor, dict[str, float]]:
        nonlocal step
        step += 1
        beta = initial_beta ** max(1 - step / annealing_steps, 0.0) if annealing_steps else 1.0
        x, log_q = flow.unchecked_sample_and_log_prob((samples,))
        log_p = evaluate_log_target(log_target, x)
        log_w = (log_p - log_q).detach()
        ess = 2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)
        statistics = {"elbo": float(log_w.mean()), "beta": beta, "ess": float(ess.exp()) / samples}
        return (log_q - beta * log_p).mean() + regularization_loss(flow, bijections), statistics

    def smoothed_negative_elbo() -> float:  # the mean over the steps since the previous evaluation
        elbo = history.elbo[-1] if history.elbo else math.nan
        return -elbo if math.isfinite(elbo) else math.inf

    devices = [flow.device] if flow.device.type == "cuda" else []
    with torch.random.fork_rng(devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        flow.history = optimize(
            flow,
            batch_loss,
            max_steps=steps,
            eval_every=min(eval_every, steps),
            validation_loss=smoothed_negative_elbo,
            lr=lr,
            weight_decay=weight_decay,
            optimizer=optimizer,
            lr_schedule=lr_schedule,
            max_grad_norm=max_grad_norm,
            patience=patience,
            max_nonfinite=max_nonfinite,
            max_loss_jump=max_loss_jump,
            warmup=annealing_steps,
            history=history,
            progress=progress,
        )
    return flow.history
