r"""Convergence diagnostics of MCMC chains: effective sample size and :math:`\hat R` (summary tables and ArviZ
export: :mod:`torchnf.mcmc.summaries`).

Every function takes ``samples`` of shape ``(draws, chains, *event_shape)`` (a tensor or a NumPy array) and returns
one float64 value per coordinate, a tensor of shape ``event_shape`` on the device of ``samples``.

**Split chains.** Each of the :math:`C` chains of :math:`D` draws is cut into its first and second halves (the middle
draw is dropped when :math:`D` is odd), giving :math:`M = 2C` chains of :math:`N = \lfloor D/2\rfloor` draws
:math:`\theta^{(n,m)}`, so that a chain still drifting disagrees with itself. One chain is enough: it splits in two.

**Split** :math:`\hat R` (Gelman & Rubin 1992; Gelman et al. 2013, *BDA3* §11.4). With chain means
:math:`\bar\theta^{(\cdot,m)}`, chain variances :math:`s_m^2` (divisor :math:`N-1`),

.. math::
    B = \frac{N}{M-1}\sum_m \big(\bar\theta^{(\cdot,m)} - \bar\theta^{(\cdot,\cdot)}\big)^2, \qquad
    W = \frac1M\sum_m s_m^2, \qquad
    \widehat{\operatorname{var}}^+ = \frac{N-1}{N}W + \frac1N B, \qquad
    \hat R = \sqrt{\widehat{\operatorname{var}}^+ / W}.

**Rank normalization and folding** (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021, "Rank-normalization,
folding, and localization: an improved :math:`\hat R` for assessing convergence of MCMC", *Bayesian Analysis*
16(2), §4). The :math:`S = MN` pooled draws are replaced by normal scores of their ranks :math:`r` (ties get their
average rank), :math:`z = \Phi^{-1}\big((r - 3/8)/(S + 1/4)\big)`, which makes the diagnostics invariant to monotone
transformations and well defined for heavy tails; folding, :math:`\zeta = |\theta - \operatorname{median}\theta|`,
before ranking turns differences of scale between chains into differences of location. The recommended
:math:`\hat R` is the larger of split-:math:`\hat R` of :math:`z` and of the rank-normalized :math:`\zeta`.

**Effective sample size** (Geyer 1992, "Practical Markov chain Monte Carlo", *Statistical Science* 7(4); the
multi-chain form of Vehtari et al. 2021 §3.2, as in the Stan reference manual). From each chain's autocovariance
:math:`\hat\gamma_{t,m}` (divisor :math:`N`, computed with the FFT), the combined autocorrelation is

.. math:: \hat\rho_t = 1 - \frac{W - \frac1M\sum_m \hat\gamma_{t,m}}{\widehat{\operatorname{var}}^+},
    \qquad \hat\rho_0 = 1,

which uses the between-chain variance, so chains that disagree lower the ESS. Geyer's initial positive sequence
sums the pairs :math:`\hat P_k = \hat\rho_{2k} + \hat\rho_{2k+1}` up to the first :math:`K` with
:math:`\hat P_K \le 0` (or the last pair available, with :math:`2K + 2 < N`); the initial monotone sequence replaces
each :math:`\hat P_k` by :math:`\min_{j \le k}\hat P_j`. Then

.. math:: \hat\tau = -1 + 2\sum_{k<K}\hat P_k + \hat\rho_{2K}^{(+)}, \qquad
    \widehat{\mathrm{ESS}} = \frac{S}{\max\big(\hat\tau, 1/\log_{10} S\big)},

where the last term, :math:`\hat\rho_{2K}` (its positive part when :math:`\hat P_K < 0`), lowers the variance of
the estimate for antithetic chains, and the bound caps the ESS at :math:`S\log_{10}S`. These are the definitions
ArviZ implements, and the values agree with ``arviz.ess`` / ``arviz.rhat`` to rounding, but where ArviZ returns the
draw count for a constant coordinate (here ``nan``) or ``nan`` for :math:`\hat R` of one chain (here the
split-chain value).

**Bulk and tail ESS** (Vehtari et al. 2021 §4.3). The bulk ESS is the ESS of the rank-normalized split chains; the
tail ESS is the smaller of the ESS of the indicators :math:`I(\theta \le q_{0.05})` and :math:`I(\theta \le
q_{0.95})`, the split chains' efficiency at estimating the 5% and 95% quantiles. Rule of thumb from the paper: trust
the chains when :math:`\hat R < 1.01` and both ESS exceed about 100 per chain (400 for four chains).

Edge cases: a coordinate whose draws are all equal has ESS and :math:`\hat R` ``nan`` (undefined, not an error); if
every chain is constant but the chains differ, :math:`\hat R` is ``inf``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .._validation import as_tensor

__all__ = ["EssKind", "RhatKind", "effective_sample_size", "rhat"]

EssKind = Literal["bulk", "tail", "basic"]
RhatKind = Literal["rank", "basic"]
ESS_KINDS: tuple[str, ...] = ("bulk", "tail", "basic")
RHAT_KINDS: tuple[str, ...] = ("rank", "basic")
MIN_DRAWS = 4
TAIL_PROBS = (0.05, 0.95)


# --------------------------------------------------------------------------------------------------- input checks
def _as_chains(samples: Any, name: str = "samples") -> tuple[Tensor, torch.Size]:
    """``samples`` as float64 ``(draws, chains, coordinates)``, and its event shape; checks the shape and values."""
    t = as_tensor(samples, name)
    if t.is_complex():
        raise TypeError(f"{name} must be real, got complex dtype {t.dtype}")
    if t.dim() < 2:
        raise ValueError(f"{name} must have shape (draws, chains, *event_shape), got shape {tuple(t.shape)}")
    draws, chains = t.shape[0], t.shape[1]
    if draws < MIN_DRAWS:
        raise ValueError(f"{name} must have at least {MIN_DRAWS} draws per chain (dimension 0), got {draws}")
    if chains < 1:
        raise ValueError(f"{name} must have at least one chain (dimension 1), got shape {tuple(t.shape)}")
    event_shape = t.shape[2:]
    if event_shape.numel() == 0:
        raise ValueError(f"{name} has an empty event shape {tuple(event_shape)}; expected at least one coordinate")
    x = t.detach().to(torch.float64).reshape(draws, chains, -1)
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.reshape(t.shape).nonzero()[0])
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or infinite value(s), the first at index {first}")
    return x, event_shape


def _check_kind(kind: str, options: tuple[str, ...], name: str = "kind") -> None:
    if kind not in options:
        raise ValueError(f"unknown {name} {kind!r}; expected one of {', '.join(map(repr, options))}")


# ------------------------------------------------------------------------------------------------ building blocks
def _split(x: Tensor) -> Tensor:
    """``(draws, chains, d)`` → ``(draws // 2, 2 * chains, d)``: first halves, then second halves (an odd count
    drops the middle draw)."""
    half = x.shape[0] // 2
    return torch.cat([x[:half], x[x.shape[0] - half :]], dim=1)


def _constant(y: Tensor) -> Tensor:
    """``(d,)`` mask of the coordinates whose draws (over all chains) are all equal."""
    flat = y.reshape(-1, y.shape[-1])
    return flat.amax(0) == flat.amin(0)


def _sorted_quantile(sorted_values: Tensor, q: float) -> Tensor:
    """Quantile ``q`` of each column of ``sorted_values`` ``(S, d)`` by linear interpolation (NumPy's default)."""
    pos = q * (sorted_values.shape[0] - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, sorted_values.shape[0] - 1)
    return torch.lerp(sorted_values[lo], sorted_values[hi], pos - lo)


def _sorted_median(sorted_values: Tensor) -> Tensor:
    """Median of each column of ``sorted_values`` ``(S, d)``: the middle value, or the mean of the two middle ones
    (rounded as NumPy rounds it, so that folded draws tie where NumPy's do)."""
    size = sorted_values.shape[0]
    if size % 2:
        return sorted_values[size // 2]
    return (sorted_values[size // 2 - 1] + sorted_values[size // 2]) / 2


def _rank_normalize(y: Tensor) -> Tensor:
    r"""Normal scores :math:`\Phi^{-1}((r - 3/8)/(S + 1/4))` of the ranks over all draws of each coordinate of
    ``y`` ``(n, m, d)``; tied values share their average rank."""
    flat = y.reshape(-1, y.shape[-1])
    size = flat.shape[0]
    values, order = flat.sort(dim=0)
    index = torch.arange(size, device=y.device).unsqueeze(1).expand_as(values)
    new = torch.ones_like(values, dtype=torch.bool)
    new[1:] = values[1:] != values[:-1]  # position i starts a run of equal values
    last = torch.ones_like(new)
    last[:-1] = new[1:]  # position i ends a run
    first_of_run = torch.where(new, index, torch.zeros_like(index)).cummax(dim=0).values
    last_of_run = torch.where(last, index, torch.full_like(index, size - 1)).flip(0).cummin(dim=0).values.flip(0)
    sorted_ranks = (first_of_run + last_of_run).to(torch.float64) / 2 + 1
    ranks = torch.empty_like(sorted_ranks).scatter_(0, order, sorted_ranks)
    return torch.special.ndtri((ranks - 0.375) / (size + 0.25)).reshape(y.shape)


def _autocovariance(y: Tensor) -> Tensor:
    r"""Autocovariances :math:`\hat\gamma_{t,m} = \frac1N\sum_{n<N-t}(\theta_n - \bar\theta)(\theta_{n+t} -
    \bar\theta)` of each chain of ``y`` ``(N, m, d)``, for lags :math:`t < N`, by FFT (zero-padded against wrap)."""
    n = y.shape[0]
    centered = y - y.mean(dim=0)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = torch.fft.rfft(centered, n=size, dim=0)
    power = spectrum.real.square() + spectrum.imag.square()
    return torch.fft.irfft(power, n=size, dim=0)[:n] / n


def _split_rhat(y: Tensor) -> Tensor:
    """Split-R̂ (the module docstring's formula) of already split chains ``y`` ``(N, M, d)``."""
    n = y.shape[0]
    chain_const = y.amax(0) == y.amin(0)
    within = torch.where(chain_const, torch.zeros((), dtype=y.dtype, device=y.device), y.var(dim=0, correction=1))
    w = within.mean(0)
    between = n * y.mean(0).var(dim=0, correction=1)  # M >= 2 always, after splitting
    result = torch.sqrt(((n - 1) * w + between) / (n * w))
    return torch.where(_constant(y), torch.full_like(result, math.nan), result)


def _split_ess(y: Tensor) -> Tensor:
    """Multi-chain ESS with Geyer's initial monotone sequence (the module docstring's formulas) of already split
    chains ``y`` ``(N, M, d)``; ``nan`` for constant coordinates."""
    n, m, _ = y.shape
    total = n * m
    acov = _autocovariance(y)
    mean_var = acov[0].mean(0) * n / (n - 1)
    var_plus = mean_var * (n - 1) / n
    if m > 1:
        var_plus = var_plus + y.mean(0).var(dim=0, correction=1)
    rho = 1 - (mean_var - acov.mean(1)) / var_plus  # (N, d)
    rho[0] = 1.0
    last = max(0, (n - 3) // 2)  # the last pair k with 2k + 2 < N (pair 0 always counts)
    pairs = rho[0 : 2 * last + 2 : 2] + rho[1 : 2 * last + 2 : 2]  # (last + 1, d)
    stop = pairs <= 0
    stop[-1] = True
    k_stop = stop.to(torch.uint8).argmax(dim=0)  # first non-positive pair, else the last one: (d,)
    monotone = pairs.cummin(dim=0).values
    before = torch.arange(pairs.shape[0], device=y.device).unsqueeze(1) < k_stop
    head = torch.where(before, monotone, torch.zeros_like(monotone)).sum(0)
    rho_even = rho[2 * k_stop, torch.arange(rho.shape[1], device=y.device)]
    pair_stop = pairs.gather(0, k_stop.unsqueeze(0)).squeeze(0)
    tail = torch.where(pair_stop >= 0, rho_even, rho_even.clamp(min=0))
    tau = (-1 + 2 * head + tail).clamp(min=1 / math.log10(total))
    ess = total / tau
    return torch.where(_constant(y) | ~torch.isfinite(ess), torch.full_like(ess, math.nan), ess)


def _ess(x: Tensor, kind: str) -> Tensor:
    if kind == "basic":
        return _split_ess(_split(x))
    if kind == "bulk":
        return _split_ess(_rank_normalize(_split(x)))
    pooled = x.reshape(-1, x.shape[-1]).sort(dim=0).values
    per_quantile = [_split_ess(_split((x <= _sorted_quantile(pooled, q)).to(x.dtype))) for q in TAIL_PROBS]
    return torch.minimum(*per_quantile)


def _rhat(x: Tensor, kind: str) -> Tensor:
    y = _split(x)
    if kind == "basic":
        return _split_rhat(y)
    median = _sorted_median(y.reshape(-1, y.shape[-1]).sort(dim=0).values)
    # fmax: a folded sample can be constant (two values symmetric about the median) while the raw one is not.
    return torch.fmax(_split_rhat(_rank_normalize(y)), _split_rhat(_rank_normalize((y - median).abs())))


# --------------------------------------------------------------------------------------------------- public API
def effective_sample_size(samples: Tensor | np.ndarray, kind: EssKind = "bulk") -> Tensor:
    r"""Effective sample size of each coordinate of MCMC chains.

    .. math:: \widehat{\mathrm{ESS}} = \frac{MN}{\hat\tau}, \qquad
        \hat\tau = -1 + 2\sum_{k<K}\min_{j\le k}(\hat\rho_{2j} + \hat\rho_{2j+1}) + \hat\rho_{2K}^{(+)},

    with the multi-chain autocorrelations :math:`\hat\rho_t` of the split chains truncated by Geyer's (1992) initial
    positive and monotone sequence estimators (see the module docstring); Vehtari, Gelman, Simpson, Carpenter &
    Bürkner (2021), *Bayesian Analysis* 16(2), §3.2 and §4.3.

    Args:
        samples: draws of shape ``(draws, chains, *event_shape)``, at least 4 draws, finite.
        kind: ``"bulk"`` (default): ESS of the rank-normalized split chains, for the location of the bulk of the
            distribution; ``"tail"``: the smaller ESS of the indicators of the 5% and 95% quantiles, for the tails
            and interval estimates; ``"basic"``: ESS of the raw split chains, the classic (Stan's ``n_eff``,
            ArviZ's ``"mean"``) efficiency at estimating the mean, which needs a finite variance.

    Returns:
        float64 tensor of shape ``event_shape``; ``nan`` where a coordinate is constant. Values up to
        :math:`S\log_{10}S` are possible for antithetic chains.

    Example:
        >>> torch.manual_seed(0) and None
        >>> x = torch.randn(1000, 4)  # 1,000 independent draws of 4 chains
        >>> 3600 < float(effective_sample_size(x)) < 4400
        True
    """
    _check_kind(kind, ESS_KINDS)
    x, event_shape = _as_chains(samples)
    return _ess(x, kind).reshape(event_shape)


def rhat(samples: Tensor | np.ndarray, kind: RhatKind = "rank") -> Tensor:
    r"""Potential scale reduction :math:`\hat R` of each coordinate of MCMC chains: close to 1 (below 1.01) when the
    chains have mixed.

    .. math:: \hat R = \sqrt{\frac{\frac{N-1}{N}W + \frac1N B}{W}}

    with the within-chain variance :math:`W` and between-chain variance :math:`B` of the split chains (Gelman &
    Rubin 1992; the rank-normalized and folded form of Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021,
    *Bayesian Analysis* 16(2), §4.1–4.2).

    Args:
        samples: draws of shape ``(draws, chains, *event_shape)``, at least 4 draws, finite. One chain is
            accepted: its two halves are compared, which detects drift but not chains stuck in different modes.
        kind: ``"rank"`` (default): the larger of split-:math:`\hat R` of the rank-normalized draws and of the
            rank-normalized folded draws :math:`|\theta - \operatorname{median}\theta|`, which also catches chains
            that differ in scale or have heavy tails; ``"basic"``: split-:math:`\hat R` of the raw draws.

    Returns:
        float64 tensor of shape ``event_shape``; ``nan`` where a coordinate is constant, ``inf`` where every chain
        is constant but they differ.

    Example:
        >>> torch.manual_seed(0) and None
        >>> x = torch.randn(1000, 4, 2)
        >>> bool((rhat(x) < 1.01).all())
        True
        >>> x[:, 0] += 2.0  # one chain off target
        >>> bool((rhat(x) > 1.1).all())
        True
    """
    _check_kind(kind, RHAT_KINDS)
    x, event_shape = _as_chains(samples)
    return _rhat(x, kind).reshape(event_shape)
