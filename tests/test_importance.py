r"""Importance-sampling diagnostics (``torchnf.importance``, ``torchnf.psis``) on Gaussian flows and targets with

The proposal :math:`q = \mathcal N(0, s^2 I_d)` is a :class:`~torchnf.flow.Flow` of one elementwise affine layer;
the target is :math:`\tilde\pi = e^c\,\mathcal N(\mu, I_d)`, so :math:`\log Z = c`. For :math:`\mu = 0` and
normalized weights :math:`w = \pi/q`,

.. math::

    \mathbb E_q[w^2] = \int\frac{\pi^2}{q} = \Big(\frac{s^2}{\sqrt{2s^2 - 1}}\Big)^d \ (s^2 > 1/2),
    \qquad \frac{\mathrm{ESS}}n \to \frac{\mathbb E_q[w]^2}{\mathbb E_q[w^2]}
    = \Big(\frac{\sqrt{2s^2 - 1}}{s^2}\Big)^d,

.. math:: \mathbb E_q[\log w] = c - \mathrm{KL}(q\,\|\,\pi) = c - \tfrac d2\,(s^2 - 1 - \log s^2),

and for :math:`s < 1` the weights :math:`w \propto e^{a |x|^2}`, :math:`a = (1/s^2 - 1)/2`, have the tail
:math:`P_q(w > t) = P_q(|x|^2 > \log(t/C) / a)`, where :math:`|x|^2/s^2 \sim \chi^2_d`: a Pareto tail
:math:`\propto t^{-1/k}` of shape :math:`k = 2 a s^2 = 1 - s^2` in any dimension, up to the slowly varying factor
:math:`(\log t)^{d/2 - 1}`, and exactly Pareto for :math:`d = 2` (:math:`\chi^2_2` is exponential). For :math:`s > 1`
the weights are bounded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.stats import genpareto
from torch import Tensor

from torchnf import Flow, RealNVP
from torchnf.bijections import ElementwiseAffine
from torchnf.dequantization import UniformDequantization
from torchnf.importance import (
    ImportanceDiagnostics,
    diagnose,
    effective_sample_size,
    expectation,
    log_normalizer,
    log_weights,
)
from torchnf.psis import MIN_PARETO_DRAWS, fit_generalized_pareto, pareto_k_threshold, pareto_khat, pareto_smooth

LOG_Z = 1.7  # the targets' log-normalizer c


def gaussian_flow(dim: int, scale: float) -> Flow:
    """A float64 flow with density N(0, scale² I): z = x / scale, x = scale z."""
    bijection = ElementwiseAffine(dim)
    with torch.no_grad():
        bijection.log_scale.fill_(-math.log(scale))
    return Flow(bijection).double()


def gaussian_target(loc: float | Tensor = 0.0, log_z: float = LOG_Z) -> Callable[[Tensor], Tensor]:
    """The unnormalized log-density log N(x; loc, I) + log_z."""

    def log_target(x: Tensor) -> Tensor:
        return -0.5 * (x - loc).square().sum(-1) - 0.5 * x.shape[-1] * math.log(2 * math.pi) + log_z

    return log_target


def kl_to_standard(dim: int, scale: float) -> float:
    """KL(N(0, scale² I) || N(0, I))."""
    return 0.5 * dim * (scale**2 - 1 - math.log(scale**2))


# -- log_weights -----------------------------------------------------------------------------------------------------


def test_log_weights_are_target_minus_flow_density() -> None:
    """Batches of any size give n draws, and log w = log π̃(x) - log q(x) with q the flow's known Gaussian."""
    torch.manual_seed(0)
    flow, target = gaussian_flow(3, 1.3), gaussian_target()
    x, log_w = log_weights(flow, target, 10, batch_size=3)
    assert x.shape == (10, 3) and log_w.shape == (10,) and log_w.dtype == torch.float64
    log_q = -0.5 * (x / 1.3).square().sum(-1) - 3 * math.log(1.3) - 1.5 * math.log(2 * math.pi)
    torch.testing.assert_close(log_w, target(x) - log_q)
    assert not log_w.requires_grad


def test_log_weights_restores_the_flow_mode() -> None:
    """Sampling happens in evaluation mode and the flow's mode is restored afterwards."""
    flow = gaussian_flow(2, 1.0).train()
    log_weights(flow, gaussian_target(), 5)
    assert flow.training
    log_weights(flow.eval(), gaussian_target(), 5)
    assert not flow.training


# -- log Z, its standard error, ESS and the ELBO against closed forms --------------------------------------------------


def test_log_normalizer_within_three_standard_errors() -> None:
    torch.manual_seed(1)
    _, log_w = log_weights(gaussian_flow(2, 1.5), gaussian_target(), 20_000)
    log_z, se = log_normalizer(log_w)
    assert 0 < se < 0.02
    assert abs(log_z - LOG_Z) < 3 * se


def test_log_normalizer_z_scores_are_standard_normal() -> None:
    """Over 400 independent estimates from 2,000 draws each, (log Ẑ - log Z) / se has mean 0 and sd 1 (the proposal
    is wider than the target, so the weights' variance is finite and the delta method applies)."""
    torch.manual_seed(2)
    reps, n = 400, 2000
    _, log_w = log_weights(gaussian_flow(2, 1.5), gaussian_target(), reps * n, batch_size=100_000)
    z = torch.tensor([(est - LOG_Z) / se for est, se in map(log_normalizer, log_w.view(reps, n))])
    assert abs(float(z.mean())) < 0.2, f"z-score mean {float(z.mean()):.3f}"
    assert abs(float(z.std()) - 1) < 0.15, f"z-score sd {float(z.std()):.3f}"


def test_standard_error_is_the_ess_formula() -> None:
    """se(log Ẑ)² = 1/ESS - 1/n (the plug-in variance convention)."""
    log_w = torch.randn(500, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    _, se = log_normalizer(log_w)
    assert se**2 == pytest.approx(1 / effective_sample_size(log_w) - 1 / 500, rel=1e-10)
    w = log_w.exp()
    assert se**2 == pytest.approx(float(w.var(unbiased=False) / w.mean() ** 2) / 500, rel=1e-10)


def test_exact_flow_gives_exact_answers() -> None:
    """q = π: all weights equal Z, so ESS = n, log Ẑ = c with zero error and the largest weights tie (k̂ = -inf)."""
    torch.manual_seed(4)
    _, log_w = log_weights(gaussian_flow(2, 1.0), gaussian_target(), 1000)
    torch.testing.assert_close(log_w, torch.full_like(log_w, LOG_Z))
    assert effective_sample_size(log_w) == pytest.approx(1000, rel=1e-9)
    log_z, se = log_normalizer(log_w)
    assert log_z == pytest.approx(LOG_Z, abs=1e-9) and se < 1e-6
    constant = torch.full((1000,), LOG_Z, dtype=torch.float64)
    assert pareto_khat(constant) == -math.inf
    smoothed, k = pareto_smooth(constant)
    assert k == -math.inf and torch.equal(smoothed, constant)


def test_untrained_realnvp_is_the_standard_normal() -> None:
    """A fresh RealNVP is the identity, so against N(0, I) + c the reverse ESS is 1 and log Ẑ = c."""
    torch.manual_seed(5)
    report = diagnose(Flow(RealNVP(2)), gaussian_target(), 2000)
    assert report.ess_fraction == pytest.approx(1.0, abs=1e-6)
    assert report.log_normalizer == pytest.approx(LOG_Z, abs=1e-5)


@pytest.mark.parametrize(("dim", "scale"), [(2, 1.5), (2, 0.9), (1, 2.0)])
def test_ess_matches_the_closed_form(dim: int, scale: float) -> None:
    """ESS/n → ((2s² - 1)^(1/2) / s²)^d for q = N(0, s² I), π = N(0, I) (s² > 3/4: E[w⁴] finite, so the ratio of
    sample moments converges at the usual rate)."""
    torch.manual_seed(6)
    _, log_w = log_weights(gaussian_flow(dim, scale), gaussian_target(), 100_000, batch_size=50_000)
    expected = (math.sqrt(2 * scale**2 - 1) / scale**2) ** dim
    assert effective_sample_size(log_w) / 100_000 == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("scale", [0.8, 1.5])
def test_elbo_is_log_z_minus_kl(scale: float) -> None:
    """The ELBO estimates c - KL(q || π) ≤ log Z, within 4 standard errors."""
    torch.manual_seed(7)
    report = diagnose(gaussian_flow(2, scale), gaussian_target(), 20_000)
    assert report.elbo < LOG_Z
    assert abs(report.elbo - (LOG_Z - kl_to_standard(2, scale))) < 4 * report.elbo_se
    assert report.elbo <= report.log_normalizer  # Jensen, for every sample


# -- Pareto k ----------------------------------------------------------------------------------------------------------


def test_pareto_k_small_for_a_wide_flow() -> None:
    """Bounded weights (q wider than π) give a negative k̂: reliable."""
    torch.manual_seed(8)
    report = diagnose(gaussian_flow(2, 1.5), gaussian_target(), 10_000)
    assert report.pareto_k < 0 and report.reliable


def test_pareto_k_large_for_a_narrow_flow() -> None:
    """q = N(0, 0.25² I) against N(0, I): heavy-tailed weights (k = 0.94), k̂ > 0.7, unreliable."""
    torch.manual_seed(9)
    report = diagnose(gaussian_flow(2, 0.25), gaussian_target(), 100_000, batch_size=100_000)
    assert report.pareto_k > 0.7 and not report.reliable
    assert "UNRELIABLE" in str(report)


@pytest.mark.parametrize("scale", [0.6, 0.8])
def test_pareto_k_matches_the_gaussian_tail_shape(scale: float) -> None:
    """In two dimensions |x|²/s² is exponential, so the weights are exactly Pareto of shape k = 1 - s²: the mean k̂
    over 16 runs of 100,000 draws (each k̂ with a standard deviation of about 0.05) is within 0.05 of k."""
    torch.manual_seed(10)
    reps, n = 16, 100_000
    _, log_w = log_weights(gaussian_flow(2, scale), gaussian_target(), reps * n, batch_size=400_000)
    k = torch.tensor([pareto_khat(row) for row in log_w.view(reps, n)])
    assert abs(float(k.mean()) - (1 - scale**2)) < 0.05, f"mean k̂ {float(k.mean()):.3f}, theory {1 - scale**2}"


def test_pareto_k_in_one_dimension_runs_slightly_low() -> None:
    """In one dimension the tail carries a slowly varying factor 1/sqrt(log t), and k̂ runs low before the
    asymptotics: about 0.61 for s = 0.6 (k = 0.64) at 100,000 draws."""
    torch.manual_seed(18)
    reps, n = 16, 100_000
    _, log_w = log_weights(gaussian_flow(1, 0.6), gaussian_target(), reps * n, batch_size=400_000)
    k = torch.tensor([pareto_khat(row) for row in log_w.view(reps, n)])
    assert 0.64 - 0.1 < float(k.mean()) < 0.64 + 0.03


@pytest.mark.parametrize("k", [0.2, 0.5, 0.8])
def test_zhang_stephens_fit_recovers_a_generalized_pareto(k: float) -> None:
    """On 20,000 genuine GPD draws (scipy's genpareto, shape c = k) the fit is within 0.05 of k and 5% of σ, and
    agrees with scipy's maximum-likelihood fit."""
    x = genpareto.rvs(c=k, scale=2.0, size=20_000, random_state=np.random.default_rng(11))
    k_hat, sigma_hat = fit_generalized_pareto(torch.from_numpy(x))
    assert k_hat == pytest.approx(k, abs=0.05)
    assert sigma_hat == pytest.approx(2.0, rel=0.05)
    c_mle, _, scale_mle = genpareto.fit(x, floc=0)
    assert k_hat == pytest.approx(c_mle, abs=0.02) and sigma_hat == pytest.approx(scale_mle, rel=0.02)


@pytest.mark.parametrize("k", [0.3, 0.8])
def test_pareto_khat_of_generalized_pareto_weights(k: float) -> None:
    """Weights that are GPD draws have a GPD tail of the same shape above any threshold, so k̂ estimates k."""
    x = genpareto.rvs(c=k, size=200_000, random_state=np.random.default_rng(12))
    assert pareto_khat(torch.from_numpy(np.log(x))) == pytest.approx(k, abs=0.12)


def test_pareto_k_threshold() -> None:
    assert pareto_k_threshold(100) == pytest.approx(0.5)
    assert pareto_k_threshold(1000) == pytest.approx(2 / 3)
    assert pareto_k_threshold(10_000) == 0.7
    with pytest.raises(ValueError, match="at least 2"):
        pareto_k_threshold(1)


# -- Pareto smoothing --------------------------------------------------------------------------------------------------


def test_pareto_smooth_replaces_only_the_tail_by_gpd_order_statistics() -> None:
    """Of n = 10,000 heavy-tailed log-weights, the M = 300 largest are replaced, in rank order and never above the
    largest raw weight, by log(u + F⁻¹((z - 1/2)/M)) of the fitted GPD (checked against scipy's quantile function);
    all other log-weights are returned bit for bit."""
    torch.manual_seed(13)
    _, log_w = log_weights(gaussian_flow(1, 0.5), gaussian_target(), 10_000)
    smoothed, k = pareto_smooth(log_w)
    n, m = 10_000, 300
    assert smoothed.shape == log_w.shape and smoothed.dtype == log_w.dtype
    values, order = torch.sort(log_w)
    tail = order[n - m :]
    body = torch.ones(n, dtype=torch.bool)
    body[tail] = False
    assert torch.equal(smoothed[body], log_w[body])
    assert bool((smoothed[tail] != log_w[tail]).any())
    assert float(smoothed.max()) <= float(log_w.max())
    assert bool((smoothed[tail].diff() >= 0).all()), "smoothing must keep the ranks"

    top = float(values[-1])
    cutoff = math.exp(float(values[n - m - 1]) - top)
    k_fit, sigma = fit_generalized_pareto((values[n - m :] - top).exp() - cutoff)
    assert k == pytest.approx((m * k_fit + 5) / (m + 10), rel=1e-6)
    quantiles = genpareto.ppf((np.arange(1, m + 1) - 0.5) / m, c=k, scale=sigma)
    expected = np.minimum(np.log(cutoff + quantiles), 0.0) + top
    np.testing.assert_allclose(smoothed[tail].numpy(), expected, rtol=1e-6)
    assert k == pareto_khat(log_w)


def test_pareto_smooth_keeps_dtype_and_ignores_zero_weights() -> None:
    """float32 in, float32 out; -inf log-weights (zero weights) stay -inf and are never in the fitted tail."""
    generator = torch.Generator().manual_seed(14)
    log_w = torch.randn(2000, generator=generator)
    log_w[:1900] = -math.inf  # 100 positive weights among 2,000 draws: the cutoff is a zero weight
    smoothed, k = pareto_smooth(log_w)
    assert smoothed.dtype == torch.float32 and math.isfinite(k)
    assert bool(torch.isneginf(smoothed[:1900]).all()) and bool(torch.isfinite(smoothed[1900:]).all())


def test_pareto_degenerate_tails() -> None:
    """Tied largest weights: bounded, k̂ = -inf. One to four weights above the cutoff: too few to fit, k̂ = +inf.
    Nothing is smoothed in either case."""
    tied = torch.zeros(100, dtype=torch.float64)
    tied[:50] = -1.0  # the 20 largest (M = 20) all equal the cutoff
    assert pareto_khat(tied) == -math.inf
    few = torch.zeros(100, dtype=torch.float64)
    few[:3] = torch.tensor([1.0, 2.0, 3.0])
    smoothed, k = pareto_smooth(few)
    assert k == math.inf and torch.equal(smoothed, few)


# -- expectations ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smooth", [True, False])
def test_expectation_recovers_the_target_moments(smooth: bool) -> None:
    """Draws from q = N(0, 2² I) weighted towards π = N(μ, I) give E_π[x] = μ and E_π[x²] = μ² + 1."""
    torch.manual_seed(15)
    mu = torch.tensor([1.0, -0.5], dtype=torch.float64)
    x, log_w = log_weights(gaussian_flow(2, 2.0), gaussian_target(mu), 20_000)
    torch.testing.assert_close(expectation(x, log_w, smooth=smooth), mu, atol=0.05, rtol=0)
    torch.testing.assert_close(expectation(x.square(), log_w, smooth=smooth), mu.square() + 1, atol=0.1, rtol=0)
    constant = expectation(torch.full((20_000, 2, 3), 2.5), log_w, smooth=smooth)
    assert constant.shape == (2, 3) and constant.dtype == torch.float32
    torch.testing.assert_close(constant, torch.full((2, 3), 2.5))


def test_expectation_with_a_zero_density_region() -> None:
    """A target with -inf log-density on half the space: those draws get weight 0, the ELBO is -inf, Z = 1/2."""
    torch.manual_seed(16)

    def half_normal(x: Tensor) -> Tensor:
        log_p = -0.5 * x.square().sum(-1) - 0.5 * math.log(2 * math.pi)
        return torch.where(x[:, 0] > 0, log_p, -math.inf)

    x, log_w = log_weights(gaussian_flow(1, 1.0), half_normal, 10_000)
    report = ImportanceDiagnostics.from_log_weights(log_w)
    assert report.elbo == -math.inf and math.isnan(report.elbo_se)
    assert report.log_normalizer == pytest.approx(math.log(0.5), abs=4 * report.log_normalizer_se)
    assert report.ess_fraction == pytest.approx(0.5, abs=0.02)
    assert report.pareto_k == -math.inf and report.reliable  # the positive weights are all equal
    assert float(expectation(x, log_w)) == pytest.approx(math.sqrt(2 / math.pi), abs=0.03)  # half-normal mean


# -- the report --------------------------------------------------------------------------------------------------------


def test_diagnostics_report() -> None:
    torch.manual_seed(17)
    report = diagnose(gaussian_flow(2, 1.2), gaussian_target(), 5000, batch_size=1000)
    assert report.n == 5000 and 0 < report.ess_fraction < 1 and report.ess == pytest.approx(5000 * report.ess_fraction)
    assert report.pareto_k_threshold == 0.7 and report.reliable
    text = str(report)
    for label in ("ELBO", "log Z", "effective sample size", "Pareto k", "reliable", "5000"):
        assert label in text
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.n = 3  # type: ignore[misc]


# -- errors ------------------------------------------------------------------------------------------------------------

BAD_LOG_WEIGHTS = [
    (torch.tensor([0.0, math.nan, 1.0]), ValueError, "NaN"),
    (torch.tensor([0.0, math.inf, 1.0]), ValueError, r"\+inf"),
    (torch.zeros(3, 2), ValueError, "1-D"),
    (torch.zeros(0), ValueError, "empty"),
    (torch.zeros(5, dtype=torch.long), TypeError, "floating point"),
    (torch.full((5,), -math.inf), ValueError, "-inf"),
]


@pytest.mark.parametrize(
    ("log_w", "error", "message"), BAD_LOG_WEIGHTS, ids=["nan", "inf", "2-d", "empty", "integer", "all-zero"]
)
@pytest.mark.parametrize(
    "function",
    [log_normalizer, effective_sample_size, pareto_khat, pareto_smooth, ImportanceDiagnostics.from_log_weights],
)
def test_bad_log_weights_are_refused(function: Callable, log_w: Tensor, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        function(log_w)


def test_too_few_draws_for_the_pareto_fit() -> None:
    with pytest.raises(ValueError, match=str(MIN_PARETO_DRAWS)):
        pareto_khat(torch.randn(MIN_PARETO_DRAWS - 1))
    with pytest.raises(ValueError, match=str(MIN_PARETO_DRAWS)):
        diagnose(gaussian_flow(2, 1.0), gaussian_target(), n=10)
    with pytest.raises(ValueError, match=str(MIN_PARETO_DRAWS)):
        expectation(torch.zeros(10), torch.zeros(10))
    assert math.isfinite(pareto_khat(torch.randn(MIN_PARETO_DRAWS, generator=torch.Generator().manual_seed(0))))
    assert expectation(torch.arange(4.0), torch.zeros(4), smooth=False) == 1.5


def test_bad_targets_are_refused() -> None:
    flow = gaussian_flow(2, 1.0)
    with pytest.raises(ValueError, match=r"shape \(5,\).*got shape \(5, 1\)"):
        log_weights(flow, lambda x: gaussian_target()(x)[:, None], 5)
    with pytest.raises(ValueError, match="log_target returned nan for 5 of 5 points"):
        log_weights(flow, lambda x: torch.full((x.shape[0],), math.nan), 5)
    with pytest.raises(ValueError, match="log_target returned inf for 1 of 5 points"):
        log_weights(flow, lambda x: torch.where(torch.arange(x.shape[0]) == 2, math.inf, 0.0).double(), 5)
    with pytest.raises(TypeError, match="tensor"):
        log_weights(flow, lambda x: x.sum(-1).numpy(), 5)
    with pytest.raises(TypeError, match="callable"):
        log_weights(flow, "not a function", 5)  # type: ignore[arg-type]

    class WrongShape:
        event_shape = torch.Size([3])

        def __call__(self, x: Tensor) -> Tensor:
            return x.sum(-1)

    with pytest.raises(ValueError, match=r"event_shape \(3,\).*\(2,\)"):
        log_weights(flow, WrongShape(), 5)


def test_bad_flows_and_sizes_are_refused() -> None:
    target = gaussian_target()
    with pytest.raises(ValueError, match="dequantized"):
        log_weights(Flow(RealNVP(2), dequantization=UniformDequantization(2, 4)), target, 5)
    with pytest.raises(ValueError, match="unconditional flow"):
        log_weights(Flow(RealNVP(2, context_shape=3)), target, 5)
    with pytest.raises(TypeError, match="Flow"):
        log_weights(RealNVP(2), target, 5)  # type: ignore[arg-type]
    flow = gaussian_flow(2, 1.0)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n must be a positive int"):
            log_weights(flow, target, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        log_weights(flow, target, 5, batch_size=0)


def test_bad_values_are_refused() -> None:
    log_w = torch.zeros(30)
    with pytest.raises(ValueError, match=r"one row per log-weight, shape \(30, \.\.\.\)"):
        expectation(torch.zeros(29, 2), log_w)
    with pytest.raises(TypeError, match="floating point"):
        expectation(torch.zeros(30, dtype=torch.long), log_w)
    with pytest.raises(ValueError, match="NaN"):
        expectation(torch.full((30,), math.nan), log_w)
    with pytest.raises(ValueError, match="positive finite"):
        fit_generalized_pareto(torch.tensor([1.0, 2.0, 0.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match="at least 5"):
        fit_generalized_pareto(torch.tensor([1.0, 2.0]))
