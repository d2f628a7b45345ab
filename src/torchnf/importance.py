r"""Importance-sampling diagnostics of a flow against an unnormalized target density.

A flow :math:`q` fitted to a target :math:`\pi(x) = \tilde\pi(x) / Z`, known only up to its normalizer
:math:`Z = \int \tilde\pi(x)\,dx`, is checked by importance sampling: draws :math:`x_i \sim q`, :math:`i = 1..n`,
carry the weights

.. math::

    w_i = \frac{\tilde\pi(x_i)}{q(x_i)}, \qquad \mathbb E_q[w] = Z, \qquad
    \mathbb E_\pi[f] = \frac{\mathbb E_q[w f]}{\mathbb E_q[w]} \approx \frac{\sum_i w_i f(x_i)}{\sum_i w_i},

from which this module computes (all in log space, in float64):

* the **ELBO** :math:`\frac1n\sum_i \log w_i`, an unbiased estimate of
  :math:`\mathbb E_q[\log w] = \log Z - \mathrm{KL}(q\,\|\,\pi) \le \log Z`;
* the **importance-sampling estimate of the normalizer** :math:`\log\hat Z = \log\frac1n\sum_i w_i` (itself a
  lower bound in expectation, :math:`\mathbb E[\log\hat Z] \le \log Z`, by Jensen's inequality: the
  importance-weighted bound of Burda, Grosse and Salakhutdinov 2016) with its delta-method standard error;
* **Kish's effective sample size** :math:`\mathrm{ESS} = (\sum_i w_i)^2 / \sum_i w_i^2`, which papers on flows
  for unnormalized targets (Boltzmann distributions, lattice field theories) report as the *reverse ESS*, the
  fraction :math:`\mathrm{ESS}/n` of draws from the flow;
* the **Pareto** :math:`\hat k` diagnostic of Pareto-smoothed importance sampling (PSIS; Vehtari, Simpson, Gelman,
  Yao and Gabry 2024, *Pareto smoothed importance sampling*, JMLR 25), the shape of a generalized Pareto
  distribution fitted to the largest weights, which says whether the weights' distribution has the moments the
  estimates above need (Yao, Vehtari, Simpson and Gelman 2018, *Yes, but did it work?: evaluating variational
  inference*, use it to check variational approximations, of which a flow fitted by reverse KL is one).

The weights' right tail decides everything: if :math:`P_q(w > t) \sim t^{-1/k}` then :math:`\mathbb E_q[w^r]` is
finite exactly for :math:`r < 1/k`, so the variance of :math:`\hat Z` (and the standard errors here) exists only
for :math:`k < \tfrac12`, and the estimates converge at all only for :math:`k < 1`. Vehtari et al. (2024)
read :math:`\hat k` as follows: below :math:`\min(1 - 1/\log_{10} n,\ 0.7)`
(:func:`~torchnf.psis.pareto_k_threshold`), the PSIS estimate is reliable with :math:`n` draws; above 0.7 the
draws needed for a useful estimate grow impractically fast; at 1 and above the mean of the raw weights does not
exist. A flow that is *wider* than the target everywhere
has bounded weights (:math:`\hat k < 0`); one that misses part of the target's mass, or has lighter tails, has
heavy-tailed weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .optimization import check_positive_ints
from .psis import check_enough_draws, check_log_weights, pareto_k_threshold, pareto_khat, pareto_smooth
from .targets.checks import check_density_flow, check_log_target, evaluate_log_target

if TYPE_CHECKING:
    from .flow import Flow
    from .targets.base import LogDensity

__all__ = [
    "ImportanceDiagnostics",
    "diagnose",
    "effective_sample_size",
    "expectation",
    "log_normalizer",
    "log_weights",
]

# -- validation ----------------------------------------------------------------------------------------------------


# -- sampling ------------------------------------------------------------------------------------------------------


def log_weights(flow: Flow, log_target: LogDensity, n: int, *, batch_size: int = 4096) -> tuple[Tensor, Tensor]:
    r"""Draw :math:`x_i \sim q` from the flow and return them with their log-weights
    :math:`\log w_i = \log\tilde\pi(x_i) - \log q(x_i)`.

    Draws are made in batches of at most ``batch_size``, without autograd and in evaluation mode (the flow's mode is
    restored afterwards).

    Args:
        flow: an unconditional :class:`~torchnf.flow.Flow` without dequantization: the proposal :math:`q`.
        log_target: the unnormalized log-density :math:`\log\tilde\pi`, a callable from points
            ``(batch, *event_shape)`` to values ``(batch,)``, finite or :math:`-\infty` (zero density); for
            example a :class:`~torchnf.targets.base.Target`.
        n: the number of draws.
        batch_size: the most draws per call of the flow and the target.

    Returns:
        The draws ``(n, *event_shape)`` and their log-weights ``(n,)`` (in the dtype of the flow's log-density and
        the target's, promoted).

    Example:
        >>> import math, torch
        >>> from torchnf import Flow
        >>> from torchnf.bijections import ElementwiseAffine
        >>> flow = Flow(ElementwiseAffine(2))  # q = N(0, I)
        >>> x, log_w = log_weights(flow, lambda x: -0.5 * x.square().sum(-1), 10)
        >>> x.shape, log_w.shape
        (torch.Size([10, 2]), torch.Size([10]))
    """
    check_density_flow(flow, "importance sampling")
    check_log_target(log_target, flow.event_shape)
    check_positive_ints(n=n, batch_size=batch_size)
    draws: list[Tensor] = []
    weights: list[Tensor] = []
    was_training = flow.training
    flow.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                size = min(batch_size, n - start)
                x, log_q = flow.sample_and_log_prob(size)
                log_p = evaluate_log_target(log_target, x)
                if not bool(torch.isfinite(log_q).all()):
                    raise ValueError(
                        "the flow's log-density of its own samples is not finite (NaN or infinite); the flow is "
                        "numerically broken"
                    )
                draws.append(x)
                weights.append(log_p - log_q)
    finally:
        flow.train(was_training)
    return torch.cat(draws), torch.cat(weights)


# -- plain importance-sampling estimates ---------------------------------------------------------------------------


def log_normalizer(log_w: Tensor) -> tuple[float, float]:
    r"""The importance-sampling estimate of :math:`\log Z` and its delta-method standard error.

    .. math::

        \log\hat Z = \operatorname{logsumexp}_i(\log w_i) - \log n, \qquad
        \operatorname{se}(\log\hat Z) = \sqrt{\frac{\widehat{\operatorname{Var}}(w)}{n\,\bar w^2}}
        = \sqrt{\frac1{\mathrm{ESS}} - \frac1n}.

    :math:`\hat Z = \bar w` is unbiased for :math:`Z` with variance :math:`\operatorname{Var}_q(w)/n`, and to first
    order :math:`\operatorname{Var}(\log\hat Z) \approx \operatorname{Var}(\hat Z)/Z^2`. With the plug-in moments
    :math:`\bar w = \frac1n\sum_i w_i` and :math:`\widehat{\operatorname{Var}}(w) = \frac1n\sum_i w_i^2 - \bar w^2`
    (the :math:`1/n` convention; :math:`1/(n-1)` would multiply the variance by :math:`n/(n-1)`),
    :math:`\widehat{\operatorname{Var}}(w)/\bar w^2 = n\sum_i w_i^2/(\sum_i w_i)^2 - 1 = n/\mathrm{ESS} - 1`, which
    gives the second form. The error is meaningful only when :math:`\operatorname{Var}_q(w)` is finite (Pareto
    :math:`k < 1/2`, see :func:`~torchnf.psis.pareto_khat`); :math:`\log\hat Z` is biased low by about
    :math:`\operatorname{se}^2/2`.

    Args:
        log_w: log-weights ``(n,)``, finite or :math:`-\infty`.

    Returns:
        ``(log_z, se)``.

    Example:
        >>> import torch
        >>> log_z, se = log_normalizer(torch.tensor([1.0, 3.0]).log())  # mean 2, ESS 16/10
        >>> round(log_z, 6), round(se, 6)  # log 2 and sqrt(1/1.6 - 1/2)
        (0.693147, 0.353553)
    """
    lw = check_log_weights(log_w)
    n = lw.numel()
    shift = float(lw.max())
    log_z = shift + math.log(float(torch.exp(lw - shift).sum())) - math.log(n)
    variance = 1.0 / _ess(lw) - 1.0 / n
    return log_z, math.sqrt(max(variance, 0.0))


def _ess(lw: Tensor) -> float:
    w = torch.exp(lw - lw.max())  # the largest is 1: no overflow, and exact for equal weights
    return float(w.sum().square() / w.square().sum())


def effective_sample_size(log_w: Tensor) -> float:
    r"""Kish's effective sample size :math:`\mathrm{ESS} = (\sum_i w_i)^2 / \sum_i w_i^2`, between 1 and :math:`n`.

    Computed from the weights scaled by the largest, :math:`\tilde w_i = \exp(\log w_i - \max_j\log w_j) \le 1`,
    as :math:`(\sum_i\tilde w_i)^2 / \sum_i\tilde w_i^2`, which neither overflows nor loses the largest terms (Kish
    1965, *Survey sampling*; Kong 1992 relates it to the variance of importance-sampling estimates).
    :math:`\mathrm{ESS}/n` for draws from a flow is what the flow literature calls the *reverse ESS*: 1 when the flow
    is the target, near :math:`1/n` when one weight dominates. It estimates :math:`n\,\mathbb E_q[w]^2 /
    \mathbb E_q[w^2]` and is itself unreliable when :math:`\mathbb E_q[w^2]` is infinite (Pareto :math:`k \ge 1/2`).

    Args:
        log_w: log-weights ``(n,)``, finite or :math:`-\infty`.

    Example:
        >>> import torch
        >>> effective_sample_size(torch.zeros(100))
        100.0
        >>> effective_sample_size(torch.tensor([0.0, float("-inf"), float("-inf")]))
        1.0
    """
    return _ess(check_log_weights(log_w))


def expectation(values: Tensor, log_w: Tensor, *, smooth: bool = True) -> Tensor:
    r"""The self-normalized importance-sampling estimate of :math:`\mathbb E_\pi[f]`.

    .. math:: \widehat{\mathbb E}_\pi[f] = \frac{\sum_i w_i f(x_i)}{\sum_i w_i},

    with the weights of :func:`~torchnf.psis.pareto_smooth` when ``smooth`` (which lowers the variance at a small
    bias and needs :math:`n \ge 21`), else the raw weights.

    Args:
        values: :math:`f(x_i)`, shape ``(n, ...)``, real floating point and finite.
        log_w: log-weights ``(n,)`` of the same draws.
        smooth: use Pareto-smoothed weights.

    Returns:
        The estimate, shape ``values.shape[1:]``, in the dtype and on the device of ``values``.

    Example:
        >>> import torch
        >>> expectation(torch.tensor([[1.0], [3.0]]), torch.log(torch.tensor([3.0, 1.0])), smooth=False)
        tensor([1.5000])
    """
    lw = check_log_weights(log_w)
    if not isinstance(values, Tensor):
        raise TypeError(f"values must be a tensor, got {type(values).__name__}")
    if values.dim() < 1 or values.shape[0] != lw.numel():
        raise ValueError(
            f"values must have one row per log-weight, shape ({lw.numel()}, ...); got {tuple(values.shape)}"
        )
    if values.is_complex() or not values.is_floating_point():
        raise TypeError(f"values must be real floating point, got dtype {values.dtype}")
    if not bool(torch.isfinite(values).all()):
        raise ValueError("values contains NaN or infinite entries")
    if smooth:
        lw, _ = pareto_smooth(lw)
    weights = torch.softmax(lw, 0).to(device=values.device, dtype=values.dtype)
    return torch.tensordot(weights, values, dims=([0], [0]))


# -- the report ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportanceDiagnostics:
    r"""Importance-sampling diagnostics of a flow :math:`q` against a target :math:`\tilde\pi` (see the module
    docstring for the formulas and references).

    Attributes:
        n: the number of draws from the flow.
        elbo: :math:`\frac1n\sum_i\log w_i`, estimating :math:`\log Z - \mathrm{KL}(q\,\|\,\pi) \le \log Z`
            (:math:`-\infty` where some draw has zero target density).
        elbo_se: its standard error, :math:`s_{\log w}/\sqrt n` with the :math:`n - 1` sample standard deviation
            (NaN where the ELBO is :math:`-\infty`).
        log_normalizer: :math:`\log\hat Z` (:func:`log_normalizer`).
        log_normalizer_se: its delta-method standard error :math:`\sqrt{1/\mathrm{ESS} - 1/n}`.
        ess: Kish's effective sample size (:func:`effective_sample_size`).
        ess_fraction: :math:`\mathrm{ESS}/n`, the *reverse ESS*.
        pareto_k: the Pareto :math:`\hat k` (:func:`~torchnf.psis.pareto_khat`).
    """

    n: int
    elbo: float
    elbo_se: float
    log_normalizer: float
    log_normalizer_se: float
    ess: float
    ess_fraction: float
    pareto_k: float

    @classmethod
    def from_log_weights(cls, log_w: Tensor) -> ImportanceDiagnostics:
        """The diagnostics of log-weights ``(n,)`` of draws from a flow (:math:`n \\ge 21`)."""
        lw = check_log_weights(log_w)
        n = lw.numel()
        check_enough_draws(n, "log_w")
        if bool(torch.isfinite(lw).all()):
            elbo, elbo_se = float(lw.mean()), float(lw.std()) / math.sqrt(n)
        else:
            elbo, elbo_se = -math.inf, math.nan
        log_z, log_z_se = log_normalizer(lw)
        ess = _ess(lw)
        return cls(
            n=n,
            elbo=elbo,
            elbo_se=elbo_se,
            log_normalizer=log_z,
            log_normalizer_se=log_z_se,
            ess=ess,
            ess_fraction=ess / n,
            pareto_k=pareto_khat(lw),
        )

    @property
    def pareto_k_threshold(self) -> float:
        r""":math:`\min(1 - 1/\log_{10} n,\ 0.7)`, the largest :math:`\hat k` of a reliable estimate
        (:func:`~torchnf.psis.pareto_k_threshold`)."""
        return pareto_k_threshold(self.n)

    @property
    def reliable(self) -> bool:
        """Whether :attr:`pareto_k` is below :attr:`pareto_k_threshold`: importance-sampling estimates from these
        draws (Pareto-smoothed ones, at least) can be trusted."""
        return self.pareto_k < self.pareto_k_threshold

    def __str__(self) -> str:
        verdict = "reliable" if self.reliable else "UNRELIABLE"
        rows = [
            ("ELBO (mean log w)", f"{self.elbo:.6g} ± {self.elbo_se:.2g}"),
            ("log Z (importance sampling)", f"{self.log_normalizer:.6g} ± {self.log_normalizer_se:.2g}"),
            ("effective sample size", f"{self.ess:.1f} ({self.ess_fraction:.2%} of {self.n} draws)"),
            ("Pareto k", f"{self.pareto_k:.3f} ({verdict}: threshold {self.pareto_k_threshold:.2f})"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"Importance sampling of the target with {self.n} draws from the flow:"]
        lines += [f"  {name:<{width}}  {value}" for name, value in rows]
        return "\n".join(lines)


def diagnose(flow: Flow, log_target: LogDensity, n: int = 10_000, *, batch_size: int = 4096) -> ImportanceDiagnostics:
    r"""Draw ``n`` points from the flow, weight them by the target and report the importance-sampling diagnostics.

    Combines :func:`log_weights` and :meth:`ImportanceDiagnostics.from_log_weights`: the ELBO, :math:`\log\hat Z`
    with its standard error, the (reverse) effective sample size and the Pareto :math:`\hat k`.

    Args:
        flow: an unconditional :class:`~torchnf.flow.Flow` without dequantization.
        log_target: the unnormalized log-density, ``(batch, *event_shape) -> (batch,)``.
        n: the number of draws, at least :data:`~torchnf.psis.MIN_PARETO_DRAWS` (21).
        batch_size: the most draws per call of the flow and the target.

    Example:
        >>> import math
        >>> from torchnf import Flow
        >>> from torchnf.bijections import ElementwiseAffine
        >>> flow = Flow(ElementwiseAffine(2))  # q = N(0, I), the target itself
        >>> report = diagnose(flow, lambda x: -0.5 * x.square().sum(-1) - math.log(2 * math.pi), n=1000)
        >>> report.log_normalizer, report.ess_fraction, report.reliable
        (0.0, 1.0, True)
    """
    check_positive_ints(n=n)
    check_enough_draws(n, "n")
    _, lw = log_weights(flow, log_target, n, batch_size=batch_size)
    return ImportanceDiagnostics.from_log_weights(lw)
