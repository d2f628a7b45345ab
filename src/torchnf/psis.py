r"""Pareto-smoothed importance sampling (PSIS): the :math:`\hat k` diagnostic of importance weights and the
smoothing of their tail.

Vehtari, Simpson, Gelman, Yao and Gabry (2024, *Pareto smoothed importance sampling*, JMLR 25) fit a generalized
Pareto distribution to the largest importance weights. Its shape :math:`\hat k` says how heavy the weights' tail
is (if :math:`P(w > t) \sim t^{-1/k}`, :math:`\mathbb E[w^r]` exists for :math:`r < 1/k`), hence whether
importance-sampling estimates can be trusted; replacing the largest weights by the fitted distribution's
quantiles lowers the variance of the estimates. :mod:`torchnf.importance` uses both.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ._validation import as_tensor
from .optimization import check_positive_ints

__all__ = [
    "MIN_PARETO_DRAWS",
    "check_enough_draws",
    "check_log_weights",
    "fit_generalized_pareto",
    "pareto_k_threshold",
    "pareto_khat",
    "pareto_smooth",
]

MIN_TAIL = 5
"""The fewest tail draws the generalized Pareto fit takes (as in the reference implementation, R package loo)."""

MIN_PARETO_DRAWS = 21
"""The fewest draws for the Pareto diagnostic: the smallest :math:`n` whose tail length
:math:`M = \\min(\\lceil n/5\\rceil, \\lceil 3\\sqrt n\\rceil)` reaches :data:`MIN_TAIL`."""

_PRIOR_DRAWS = 10
"""Weight (in tail draws) of the weakly informative prior that shrinks :math:`\\hat k` towards 1/2."""


def check_log_weights(log_w: Any, name: str = "log_w") -> Tensor:
    """A detached float64 CPU copy of 1-D log-weights, each finite or :math:`-\\infty`, not all :math:`-\\infty`."""
    t = as_tensor(log_w, name)
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, one log-weight per draw; got shape {tuple(t.shape)}")
    if t.is_complex() or not t.is_floating_point():
        raise TypeError(f"{name} must be real floating point, got dtype {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty: it must hold at least one log-weight")
    t = t.detach().to(device="cpu", dtype=torch.float64)
    bad = torch.isnan(t) | (t == math.inf)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or +inf value(s), the first at index {first} "
            f"({float(t[first])}); log-weights must be finite or -inf (a zero weight)"
        )
    if not bool(torch.isfinite(t).any()):
        raise ValueError(
            f"every value of {name} is -inf: all {t.numel()} weights are zero, so nothing can be estimated"
        )
    return t


def check_enough_draws(n: int, name: str) -> None:
    if n < MIN_PARETO_DRAWS:
        raise ValueError(
            f"{name} has {n} draw(s); the Pareto diagnostic needs at least {MIN_PARETO_DRAWS} (a tail of "
            f"{MIN_TAIL} draws for the generalized Pareto fit)"
        )


def pareto_k_threshold(n: int) -> float:
    r"""The sample-size-dependent threshold :math:`\min(1 - 1/\log_{10} n,\ 0.7)` on :math:`\hat k` below which a PSIS
    estimate from ``n`` draws is reliable (Vehtari et al. 2024); 0.7 from about 2,200 draws on.

    Example:
        >>> pareto_k_threshold(100), pareto_k_threshold(10_000)
        (0.5, 0.7)
    """
    check_positive_ints(n=n)
    if n < 2:
        raise ValueError(f"n must be at least 2 for a Pareto k threshold, got {n}")
    return min(1.0 - 1.0 / math.log10(n), 0.7)


def _tail_length(n: int) -> int:
    """:math:`M = \\min(\\lceil 0.2 n\\rceil, \\lceil 3\\sqrt n\\rceil)`, in exact integer arithmetic."""
    root = math.isqrt(9 * n)
    return min(-(-n // 5), root if root * root == 9 * n else root + 1)


def fit_generalized_pareto(x: Tensor) -> tuple[float, float]:
    r"""Fit a generalized Pareto distribution with location 0 to positive values by the method of Zhang and Stephens.

    The distribution (shape :math:`k`, scale :math:`\sigma`; :math:`k > 0` a heavy tail with
    :math:`P(X > x) \sim x^{-1/k}`, :math:`k < 0` a bounded one) has

    .. math:: F(x) = 1 - \Big(1 + \frac{k x}{\sigma}\Big)^{-1/k}, \qquad
        F^{-1}(p) = \frac\sigma k\Big((1 - p)^{-k} - 1\Big).

    Zhang and Stephens (2009, *A new and efficient estimation method for the generalized Pareto distribution*,
    Technometrics 51(3), section 4; their :math:`k` is :math:`-k` here) reparameterize by :math:`\theta = -k/\sigma`,
    for which the likelihood maximized over :math:`k` is :math:`\ell(\theta) = m\big(\log(\theta/\hat k(\theta)) -
    \hat k(\theta) - 1\big)` with :math:`\hat k(\theta) = -\frac1m\sum_i\log(1 - \theta x_i)`, and estimate
    :math:`\theta` by its posterior mean over the grid

    .. math:: \theta_j = \frac1{x_{(m)}} + \frac{1 - \sqrt{J / (j - \tfrac12)}}{3\,x^*}, \quad j = 1..J,

    with weights :math:`\propto e^{\ell(\theta_j)}`, where :math:`x^*` is the first quartile
    :math:`x_{(\lfloor m/4 + 1/2\rfloor)}` and :math:`J = 30 + \lfloor\sqrt m\rfloor` (the R package loo's grid;
    Zhang and Stephens used :math:`20 + \lfloor\sqrt m\rfloor`); then :math:`k = \frac1m\sum_i\log(1 - \hat\theta
    x_i)` and :math:`\sigma = -k/\hat\theta`. No prior on :math:`k` is applied here (:func:`pareto_khat` applies
    one).

    Args:
        x: at least 5 positive finite values, 1-D.

    Returns:
        ``(k, sigma)``; :math:`k` is ``inf`` where the fit fails numerically.
    """
    t = as_tensor(x, "x")
    if t.dim() != 1 or t.is_complex() or not t.is_floating_point():
        raise ValueError(f"x must be a 1-D floating-point tensor, got shape {tuple(t.shape)} and dtype {t.dtype}")
    t = t.detach().to(device="cpu", dtype=torch.float64)
    if t.numel() < MIN_TAIL:
        raise ValueError(f"x has {t.numel()} value(s); the generalized Pareto fit needs at least {MIN_TAIL}")
    if not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
        raise ValueError("x must hold positive finite values (exceedances over a threshold)")
    return _zhang_stephens(torch.sort(t).values)


def _zhang_stephens(x: Tensor) -> tuple[float, float]:
    """The fit of :func:`fit_generalized_pareto` for sorted positive float64 values."""
    m = x.numel()
    grid = 30 + math.isqrt(m)
    j = torch.arange(1, grid + 1, dtype=torch.float64)
    x_star = x[math.floor(m / 4 + 0.5) - 1]  # the first quartile
    theta = 1.0 / x[-1] + (1.0 - torch.sqrt(grid / (j - 0.5))) / (3.0 * x_star)  # all below 1 / max(x)
    k_theta = -torch.log1p(-theta[:, None] * x[None, :]).mean(1)  # Zhang-Stephens' k (the negative of ours)
    profile = m * (torch.log(theta / k_theta) + k_theta - 1.0)
    profile = torch.nan_to_num(profile, nan=-math.inf)  # theta = 0 exactly: no information
    theta_hat = float((theta * torch.softmax(profile, 0)).sum())
    k = float(torch.log1p(-theta_hat * x).mean())
    sigma = -k / theta_hat if theta_hat != 0 else math.nan
    if not (math.isfinite(k) and math.isfinite(sigma) and sigma > 0):
        return math.inf, math.nan
    return k, sigma


def _gpd_quantile(p: Tensor, k: float, sigma: float) -> Tensor:
    r""":math:`F^{-1}(p) = \frac\sigma k\big((1-p)^{-k} - 1\big)` (:math:`-\sigma\log(1-p)` at :math:`k = 0`)."""
    log_tail = torch.log1p(-p)
    if abs(k) < 1e-12:
        return -sigma * log_tail
    return sigma * torch.expm1(-k * log_tail) / k


def _psis(lw: Tensor) -> tuple[float, Tensor | None, Tensor | None]:
    """PSIS of validated float64 log-weights: ``(k_hat, tail indices, smoothed tail log-weights)``; the indices and
    values are ``None`` where nothing is smoothed."""
    n = lw.numel()
    check_enough_draws(n, "log_w")
    shift = lw.max()
    s = lw - shift  # the largest is 0; -inf stays -inf
    values, order = torch.sort(s)
    tail_length = _tail_length(n)
    cutoff = values[n - tail_length - 1]  # the (M + 1)-th largest
    start = int(torch.searchsorted(values, cutoff, right=True))  # the tail: strictly above the cutoff
    count = n - start
    if count == 0:
        return -math.inf, None, None  # the largest weights are tied: bounded weights, no tail
    if count < MIN_TAIL:
        return math.inf, None, None  # too few distinct tail weights to fit: assume the worst
    tail = values[start:]
    exp_cutoff = float(torch.exp(cutoff))
    # exp(tail) - exp(cutoff), accurate even for weights close to the cutoff; a cutoff of -inf is a zero weight
    exceedances = exp_cutoff * torch.expm1(tail - cutoff) if exp_cutoff > 0 else torch.exp(tail)
    exceedances = exceedances.clamp_min(torch.finfo(torch.float64).tiny)
    k_fit, sigma = _zhang_stephens(exceedances)
    if not math.isfinite(k_fit):
        return math.inf, None, None
    # The weakly informative prior of Vehtari et al. (2024): a normal prior on k centred at 1/2 worth
    # _PRIOR_DRAWS tail draws. As in the reference implementation, sigma stays that of the unadjusted fit.
    k = (count * k_fit + _PRIOR_DRAWS * 0.5) / (count + _PRIOR_DRAWS)
    p = (torch.arange(1, count + 1, dtype=torch.float64) - 0.5) / count
    smoothed = torch.log(exp_cutoff + _gpd_quantile(p, k, sigma)).clamp_max(0.0)  # truncated at the largest raw weight
    return k, order[start:], smoothed + shift


def pareto_smooth(log_w: Tensor) -> tuple[Tensor, float]:
    r"""Pareto-smoothed importance sampling (Vehtari, Simpson, Gelman, Yao and Gabry 2024, JMLR 25).

    With :math:`n` draws, the :math:`M = \min(\lceil 0.2 n\rceil, \lceil 3\sqrt n\rceil)` largest weights
    :math:`w_{(n-M+1)} \le \dots \le w_{(n)}` are modelled by a generalized Pareto distribution of their exceedances
    over the cutoff :math:`u = w_{(n-M)}`, the :math:`(M+1)`-th largest weight, fitted by
    :func:`fit_generalized_pareto`; its shape is then shrunk towards :math:`\tfrac12` by a weakly informative prior
    worth 10 draws, :math:`\hat k = (M k + 10\cdot 0.5)/(M + 10)`. The tail weights are replaced, rank for rank, by
    the fitted distribution's expected order statistics

    .. math:: \tilde w_{(n-M+z)} = \min\Big(u + F^{-1}\Big(\frac{z - 1/2}{M}\Big),\ \max_i w_i\Big),
        \qquad z = 1, \dots, M,

    truncated at the largest raw weight; the other weights are returned unchanged (bit for bit). The fit is in
    float64 with the log-weights shifted by their maximum.

    Degenerate cases: weights of :math:`-\infty` count as draws (of weight 0) but never as tail exceedances; only
    weights strictly above the cutoff form the tail. Without any (the largest weights are tied, e.g. all weights
    equal) the weights are bounded and :math:`\hat k = -\infty`; with 1 to 4, too few to fit, :math:`\hat k =
    +\infty` (the conservative verdict); in both cases, and where the fit fails numerically
    (:math:`\hat k = +\infty`), nothing is smoothed.

    Args:
        log_w: log-weights ``(n,)``, finite or :math:`-\infty`, with :math:`n \ge` :data:`MIN_PARETO_DRAWS` (21).

    Returns:
        The smoothed log-weights (same shape, dtype and device as ``log_w``, unnormalized, on the scale of
        ``log_w``) and :math:`\hat k` (see :func:`pareto_khat`).
    """
    lw = check_log_weights(log_w)
    k, index, smoothed = _psis(lw)
    out = torch.as_tensor(log_w).detach().clone()
    if index is not None and smoothed is not None:
        out[index.to(out.device)] = smoothed.to(device=out.device, dtype=out.dtype)
    return out, k


def pareto_khat(log_w: Tensor) -> float:
    r"""The Pareto :math:`\hat k` diagnostic: the estimated shape of the weights' right tail.

    :math:`\hat k` is the prior-adjusted generalized Pareto shape of :func:`pareto_smooth` (Vehtari et al. 2024).
    If the weights' tail is :math:`P_q(w > t) \sim t^{-1/k}`, :math:`\mathbb E_q[w^r]` exists for :math:`r < 1/k`,
    and the paper reads :math:`\hat k` as follows:

    * :math:`\hat k < 1/2`: the weights have finite variance; plain importance sampling works and the central limit
      theorem applies to :func:`log_normalizer` and :func:`effective_sample_size`;
    * :math:`\hat k < \min(1 - 1/\log_{10} n,\ 0.7)` (:func:`pareto_k_threshold`): PSIS estimates from these
      :math:`n` draws are reliable, although for :math:`\hat k > 1/2` plain importance sampling converges slowly;
    * :math:`0.7 \le \hat k < 1`: the number of draws needed for a reliable estimate grows impractically fast;
    * :math:`\hat k \ge 1`: the weights have no mean; importance sampling is not to be trusted at all.

    Returns :math:`-\infty` where the largest weights are tied (bounded weights, e.g. a flow equal to the target)
    and :math:`+\infty` where the tail has fewer than 5 distinct weights (see :func:`pareto_smooth`).

    Args:
        log_w: log-weights ``(n,)``, finite or :math:`-\infty`, with :math:`n \ge` :data:`MIN_PARETO_DRAWS` (21).

    Example:
        >>> import torch
        >>> u = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000
        >>> round(pareto_khat(-0.8 * torch.log1p(-u)), 1)  # the quantiles of a Pareto tail of shape 0.8
        0.8
        >>> pareto_khat(torch.zeros(100))
        -inf
    """
    return _psis(check_log_weights(log_w))[0]
