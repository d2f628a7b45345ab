r"""The result of a sampling run: the draws of every chain and what is known about them.

With :math:`D` kept draws of :math:`C` chains, the estimates pool all :math:`N = DC` draws,

.. math::

    \hat\mu = \frac1N\sum_{d, c} x_{dc}, \qquad \hat\sigma^2 = \frac1{N - 1}\sum_{d, c}(x_{dc} - \hat\mu)^2,

per coordinate; their Monte Carlo error depends on the autocorrelation of the chains, which the effective sample
size and :math:`\hat R` of :mod:`torchnf.mcmc.diagnostics` measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .diagnostics import EssKind, RhatKind, effective_sample_size, rhat
from .summaries import ChainSummary, summary, to_arviz

__all__ = ["Chains"]


@dataclass
class Chains:
    r"""The draws of a run of :func:`torchnf.mcmc.sample`.

    Attributes:
        samples: the kept draws, ``(draws, chains, *event_shape)``.
        log_prob: the target's (unnormalized) log-density of each draw, ``(draws, chains)``.
        acceptance: per move (``"mala"``, ``"hmc"``, ``"flow"``...), each chain's acceptance rate over the kept
            iterations ``(chains,)``: the mean of the Metropolis acceptance probabilities :math:`\alpha`, an unbiased
            and less noisy estimate of the fraction of accepted proposals.
        step_size: the frozen step size, one per chain ``(chains,)`` (the local kernels share one), or ``None`` for a
            sampler without one.
        info: everything else: the sampler, warm-up length, thinning, seed, timings, refits of the flow, and the
            acceptance probabilities of each kept draw (``info["accept_prob"]``, by move, ``(draws, chains)``).

    Example:
        >>> import torch
        >>> chains = Chains(torch.zeros(100, 4, 2), torch.zeros(100, 4))
        >>> len(chains), chains.num_chains, chains.event_shape, chains.flatten().shape
        (100, 4, torch.Size([2]), torch.Size([400, 2]))
    """

    samples: Tensor
    log_prob: Tensor
    acceptance: dict[str, Tensor] = field(default_factory=dict)
    step_size: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.samples, Tensor) or self.samples.dim() < 2:
            shape = tuple(self.samples.shape) if isinstance(self.samples, Tensor) else type(self.samples).__name__
            raise ValueError(f"samples must be a tensor of shape (draws, chains, *event_shape), got {shape}")
        if not isinstance(self.log_prob, Tensor) or self.log_prob.shape != self.samples.shape[:2]:
            shape = tuple(self.log_prob.shape) if isinstance(self.log_prob, Tensor) else type(self.log_prob).__name__
            raise ValueError(
                f"log_prob must have shape (draws, chains) = {tuple(self.samples.shape[:2])} like samples, got {shape}"
            )

    @property
    def draws(self) -> int:
        """The number of kept draws per chain."""
        return self.samples.shape[0]

    @property
    def num_chains(self) -> int:
        """The number of chains."""
        return self.samples.shape[1]

    @property
    def event_shape(self) -> torch.Size:
        """The shape of one draw."""
        return self.samples.shape[2:]

    def __len__(self) -> int:
        return self.draws

    def flatten(self) -> Tensor:
        """All draws of all chains pooled, ``(draws * chains, *event_shape)`` (draw-major)."""
        return self.samples.reshape(-1, *self.event_shape)

    def mean(self) -> Tensor:
        r"""The pooled mean :math:`\hat\mu` of each coordinate, ``event_shape``."""
        return self.samples.mean((0, 1))

    def variance(self) -> Tensor:
        r"""The pooled (unbiased) variance :math:`\hat\sigma^2` of each coordinate, ``event_shape``."""
        return self.flatten().var(0)

    def ess(self, kind: EssKind = "bulk") -> Tensor:
        """The effective sample size of each coordinate (``"bulk"``, ``"tail"``...); see
        :func:`torchnf.mcmc.diagnostics.effective_sample_size`."""
        return effective_sample_size(self.samples, kind=kind)

    def rhat(self, kind: RhatKind = "rank") -> Tensor:
        r"""The potential scale reduction :math:`\hat R` of each coordinate (``"rank"`` or ``"basic"``); see
        :func:`torchnf.mcmc.diagnostics.rhat`."""
        return rhat(self.samples, kind=kind)

    def summary(self, names: str | Sequence[str] | None = None) -> ChainSummary:
        """A table of the mean, spread, ESS and :math:`\\hat R` of each coordinate (printable); see
        :func:`torchnf.mcmc.summaries.summary`."""
        return summary(self.samples, names=names)

    def to_arviz(self, names: Sequence[str] | None = None) -> Any:
        """An ArviZ ``InferenceData`` with the draws, their log-densities and the acceptance probabilities of each
        draw; see :func:`torchnf.mcmc.summaries.to_arviz`."""
        per_draw: dict[str, Tensor] = self.info.get("accept_prob", {})
        if len(per_draw) == 1:
            stats = {"acceptance_rate": next(iter(per_draw.values()))}
        else:
            stats = {f"acceptance_rate_{move}": values for move, values in per_draw.items()}
        return to_arviz(self.samples, names=names, log_prob=self.log_prob, sample_stats=stats or None)
