"""The simulators of :mod:`torchnf.simulators`: shapes, seeds, the closed-form Gaussian posterior against two
independent computations, the two-moons likelihood against its own simulator, and its inversion sampler against the
posterior density normalized by quadrature (with a check that the test would catch a wrong density)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chi2
from torch import Tensor
from torch.testing import assert_close

from torchnf.simulators import GaussianLinear, Simulator, TwoMoons, make_generator

pytestmark = pytest.mark.usefixtures("one_thread")

SIMULATORS = {"gaussian-linear": GaussianLinear, "gaussian-linear-3x2": lambda: _general(), "two-moons": TwoMoons}


def _general() -> GaussianLinear:
    """A linear-Gaussian model with a non-square matrix, full covariances, a prior mean and an offset."""
    return GaussianLinear(
        2,
        prior_loc=[0.5, -1.0],
        prior_covariance=[[1.0, 0.6], [0.6, 2.0]],
        matrix=[[1.0, 2.0], [0.5, -1.0], [0.0, 3.0]],
        offset=[0.1, 0.2, -0.3],
        noise_covariance=[[0.5, 0.1, 0.0], [0.1, 0.4, 0.05], [0.0, 0.05, 0.3]],
    )


@pytest.fixture(params=list(SIMULATORS))
def simulator(request: pytest.FixtureRequest) -> Simulator:
    return SIMULATORS[request.param]()


# -- shapes, dtypes and seeds --------------------------------------------------------------------------------------


def test_shapes(simulator: Simulator) -> None:
    d, k = simulator.theta_dim, simulator.x_dim
    assert simulator.prior_sample(7, seed=0).shape == (7, d)
    assert simulator.prior_sample((2, 3), seed=0).shape == (2, 3, d)
    theta, x = simulator.sample_joint(6, seed=0)
    assert theta.shape == (6, d) and x.shape == (6, k)
    assert simulator.simulate(theta.reshape(2, 3, d), seed=1).shape == (2, 3, k)
    assert simulator.prior_log_prob(theta).shape == (6,)
    assert simulator.log_likelihood(theta, x).shape == (6,)
    assert simulator.log_likelihood(theta, x[0]).shape == (6,)  # batch shapes broadcast
    assert simulator.reference_posterior_samples(x[0], 5, seed=0).shape == (5, d)
    assert simulator.reference_posterior_samples(x, 5, seed=0).shape == (5, 6, d)
    assert simulator.reference_posterior_samples(x.reshape(2, 3, k), 5, seed=0).shape == (5, 2, 3, d)
    assert simulator.reference_posterior_samples(x[:0], 5, seed=0).shape == (5, 0, d)
    assert all(t.dtype == torch.get_default_dtype() for t in (theta, x))


def test_numpy_input_and_double(simulator: Simulator) -> None:
    theta, x = simulator.sample_joint(4, seed=0)
    assert_close(simulator.log_likelihood(theta.numpy(), x.numpy()), simulator.log_likelihood(theta, x))
    double = simulator.double()
    theta, x = double.sample_joint(4, seed=0)
    assert theta.dtype == x.dtype == torch.float64
    assert double.reference_posterior_samples(x[0], 3, seed=0).dtype == torch.float64
    assert double.log_likelihood(theta, x).dtype == torch.float64


def test_seeds(simulator: Simulator) -> None:
    """An int seed repeats the draws and leaves the global random state alone; a generator is advanced."""
    state = torch.get_rng_state()
    first, second = simulator.sample_joint(5, seed=3), simulator.sample_joint(5, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    x = first[1]
    assert torch.equal(
        simulator.reference_posterior_samples(x, 4, seed=1), simulator.reference_posterior_samples(x, 4, seed=1)
    )
    generator = make_generator(3)
    a, b = simulator.prior_sample(5, generator), simulator.prior_sample(5, generator)
    assert torch.equal(a, first[0]) and not torch.equal(a, b)


def test_make_generator_refuses() -> None:
    for bad in (-1, 1.5, True, "0"):
        with pytest.raises(ValueError, match="seed must be"):
            make_generator(bad)  # type: ignore[arg-type]


# -- the Gaussian linear model -------------------------------------------------------------------------------------


def test_gaussian_linear_defaults() -> None:
    """The SBI benchmark's task: 10-D, N(0, 0.1 I) prior and noise, so the posterior is N(x / 2, 0.05 I)."""
    simulator = GaussianLinear()
    assert simulator.theta_dim == simulator.x_dim == 10
    x = simulator.sample_joint(3, seed=0)[1]
    posterior = simulator.posterior(x)
    assert posterior.batch_shape == (3,) and posterior.event_shape == (10,)
    assert_close(posterior.mean, x / 2)
    assert_close(posterior.covariance_matrix, 0.05 * torch.eye(10).expand(3, 10, 10))
    assert_close(simulator.posterior_covariance, 0.05 * torch.eye(10))


def test_gaussian_posterior_equals_joint_conditioning() -> None:
    r"""The posterior from precisions equals the conditional of the joint Gaussian of :math:`(\theta, x)`, computed
    with the Schur complement: :math:`m = \mu_0 + \Sigma_0 A^\top K^{-1}(x - A\mu_0 - b)`,
    :math:`S = \Sigma_0 - \Sigma_0 A^\top K^{-1} A \Sigma_0`, :math:`K = A\Sigma_0A^\top + \Sigma`."""
    simulator = _general().double()
    loc0, cov0, a, b, cov = (
        simulator.prior_loc,
        simulator.prior_covariance,
        simulator.matrix,
        simulator.offset,
        simulator.noise_covariance,
    )
    x = torch.tensor([[0.3, -1.0, 2.0], [1.0, 0.0, -0.5]], dtype=torch.float64)
    k = a @ cov0 @ a.T + cov
    gain = cov0 @ a.T @ torch.linalg.inv(k)
    mean = loc0 + (x - loc0 @ a.T - b) @ gain.T
    covariance = cov0 - gain @ a @ cov0
    posterior = simulator.posterior(x)
    assert_close(posterior.mean, mean)
    assert_close(posterior.covariance_matrix, covariance.expand(2, 2, 2))


def test_gaussian_posterior_equals_grid() -> None:
    """The closed-form posterior density equals prior times likelihood normalized on a grid (brute force)."""
    simulator = _general().double()
    x_obs = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    posterior = simulator.posterior(x_obs)
    center, sd = posterior.mean, posterior.covariance_matrix.diagonal().sqrt()
    step = 0.02
    axes = [torch.arange(-8, 8 + step / 2, step, dtype=torch.float64) * s + c for c, s in zip(center, sd, strict=True)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 2)
    log_joint = simulator.prior_log_prob(grid) + simulator.log_likelihood(grid, x_obs)
    log_evidence = torch.logsumexp(log_joint, 0) + math.log(step * step * float(sd.prod()))
    assert_close(log_joint - log_evidence, posterior.log_prob(grid), atol=1e-6, rtol=0)
    weights = torch.softmax(log_joint, 0)
    mean = weights @ grid
    assert_close(mean, center, atol=1e-8, rtol=0)
    centered = grid - mean
    assert_close((weights[:, None] * centered).T @ centered, posterior.covariance_matrix, atol=1e-8, rtol=0)


def test_gaussian_simulator_and_reference_moments() -> None:
    """Simulated data have mean A theta + b and covariance Sigma; reference draws have the posterior's moments."""
    simulator = _general().double()
    theta = torch.tensor([0.2, -0.4], dtype=torch.float64)
    x = simulator.simulate(theta.expand(200_000, 2), seed=0)
    assert_close(x.mean(0), simulator.matrix @ theta + simulator.offset, atol=0.006, rtol=0)
    assert_close(torch.cov(x.T), simulator.noise_covariance, atol=0.006, rtol=0)
    x_obs = torch.tensor([[0.3, -1.0, 2.0], [1.0, 0.0, -0.5]], dtype=torch.float64)
    draws = simulator.reference_posterior_samples(x_obs, 200_000, seed=0)
    posterior = simulator.posterior(x_obs)
    assert_close(draws.mean(0), posterior.mean, atol=0.003, rtol=0)
    for i in range(2):
        assert_close(torch.cov(draws[:, i].T), posterior.covariance_matrix[i], atol=0.003, rtol=0)


def test_gaussian_linear_refuses() -> None:
    with pytest.raises(ValueError, match="dim must be"):
        GaussianLinear(0)
    with pytest.raises(ValueError, match="positive definite"):
        GaussianLinear(2, prior_covariance=[[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="symmetric"):
        GaussianLinear(2, noise_covariance=[[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match="positive definite"):
        GaussianLinear(2, noise_covariance=-1.0)
    with pytest.raises(ValueError, match=r"matrix must have shape \(k, 2\)"):
        GaussianLinear(2, matrix=[[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match=r"prior_loc must be a number or have shape \(2,\)"):
        GaussianLinear(2, prior_loc=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="finite"):
        GaussianLinear(2, offset=math.nan)
    with pytest.raises(TypeError, match="numeric"):
        GaussianLinear(2, offset="zero")


# -- two moons -----------------------------------------------------------------------------------------------------


def _polar_cells(simulator: TwoMoons, theta: Tensor, x: Tensor, radii: Tensor, angles: int) -> Tensor:
    r"""The cell of each pair: the branch (the sign of :math:`\theta_1 + \theta_2`), the bin of the radius
    :math:`\rho` of :math:`p = x - g(\theta)` around :math:`(c, 0)` among ``radii`` (below, between, above), and one
    of ``angles`` equal bins of its angle in :math:`(-\pi/2, \pi/2)`."""
    p = x - simulator._g(theta)
    u, v = p[..., 0] - simulator.offset, p[..., 1]
    radius = torch.bucketize(torch.hypot(u, v), radii)
    angle = ((torch.atan2(v, u) / math.pi + 0.5) * angles).floor().clamp(0, angles - 1).long()
    branch = (theta[..., 0] + theta[..., 1] > 0).long()
    return (branch * (len(radii) + 1) + radius) * angles + angle


def _chi_square(counts: Tensor, probabilities: Tensor) -> tuple[float, int]:
    """Pearson's statistic of ``counts`` against ``probabilities`` over the cells expected to hold at least 5
    counts (the rest pooled into one), and its degrees of freedom."""
    n = float(counts.sum())
    expected = n * probabilities
    big = expected >= 5
    observed = torch.cat([counts[big], counts[~big].sum().unsqueeze(0)])
    expected = torch.cat([expected[big], expected[~big].sum().unsqueeze(0)])
    keep = expected > 0
    statistic = float(((observed[keep] - expected[keep]).square() / expected[keep]).sum())
    return statistic, int(keep.sum()) - 1


RADII = torch.tensor([0.085, 0.095, 0.1, 0.105, 0.115], dtype=torch.float64)
ANGLES = 6


def _cell_probabilities(simulator: TwoMoons, log_density: Tensor, theta: Tensor, x: Tensor) -> Tensor:
    """The probability of each cell under a density given on a uniform grid (the midpoint rule, normalized)."""
    weights = torch.softmax(log_density, 0)
    cells = _polar_cells(simulator, theta, x, RADII, ANGLES)
    return torch.bincount(cells, weights, minlength=2 * (len(RADII) + 1) * ANGLES)


def test_two_moons_likelihood_is_normalized() -> None:
    r"""For fixed :math:`\theta`, :math:`\int p(x \mid \theta)\,dx = 1` by quadrature over the moon, which the
    density without the polar Jacobian :math:`1/(\pi\rho)` (as the SBI benchmark's code writes it) misses by far."""
    simulator = TwoMoons().double()
    theta = torch.tensor([0.3, -0.5], dtype=torch.float64)
    step = 5e-4
    axis = torch.arange(-0.25, 0.25, step, dtype=torch.float64) + step / 2
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)
    x = grid + torch.tensor([simulator.offset, 0.0], dtype=torch.float64) + simulator._g(theta)
    log_likelihood = simulator.log_likelihood(theta, x)
    assert abs(float(log_likelihood.exp().sum()) * step**2 - 1) < 1e-4
    rho = torch.hypot(grid[:, 0], grid[:, 1])
    assert float((log_likelihood + torch.log(math.pi * rho)).exp().sum()) * step**2 < 0.5


def test_two_moons_simulator_matches_likelihood() -> None:
    """Simulated data fall into polar cells as often as the likelihood, integrated over each cell, says."""
    simulator = TwoMoons().double()
    theta = torch.tensor([0.3, -0.5], dtype=torch.float64)
    x = simulator.simulate(theta.expand(100_000, 2), seed=0)
    counts = torch.bincount(
        _polar_cells(simulator, theta, x, RADII, ANGLES), minlength=2 * (len(RADII) + 1) * ANGLES
    ).double()
    step = 5e-4
    axis = torch.arange(-0.2, 0.2, step, dtype=torch.float64) + step / 2
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)
    x_grid = grid + torch.tensor([simulator.offset, 0.0], dtype=torch.float64) + simulator._g(theta)
    probabilities = _cell_probabilities(simulator, simulator.log_likelihood(theta, x_grid), theta, x_grid)
    statistic, dof = _chi_square(counts, probabilities)
    assert chi2.sf(statistic, dof) > 1e-3, (statistic, dof)


def _posterior_grid(simulator: TwoMoons, x_obs: Tensor, step: float) -> tuple[Tensor, Tensor]:
    r"""Midpoints of a uniform grid of :math:`\theta` over the region where the posterior lives, and the unnormalized
    log-posterior :math:`\log p(\theta) + \log p(x \mid \theta)` there.

    The grid is one over the noise :math:`p` within 0.2 of :math:`(c, 0)` (ten standard deviations of the radius
    beyond the crescent), mapped to both branches by the rotation :math:`\theta = R^\top z`, an isometry: a uniform
    grid of :math:`\theta` with the same cell area. The density itself is then evaluated from :math:`\theta` alone.
    """
    axis = torch.arange(-0.2, 0.2, step, dtype=torch.float64) + step / 2
    p = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)
    p = p + torch.tensor([simulator.offset, 0.0], dtype=torch.float64)
    p = p[p[:, 0] >= x_obs[0]]
    z = torch.cat([torch.stack([sign * (p[:, 0] - x_obs[0]), x_obs[1] - p[:, 1]], dim=-1) for sign in (1.0, -1.0)])
    theta = torch.stack([z[:, 0] - z[:, 1], z[:, 0] + z[:, 1]], dim=-1) / math.sqrt(2)
    return theta, simulator.prior_log_prob(theta) + simulator.log_likelihood(theta, x_obs)


# an observation whose crescents lie well inside the prior's box, and one whose crescents the box cuts
OBSERVATIONS = {"inside": [0.0, 0.0], "cut-by-the-box": [-1.1, 0.1]}


@pytest.mark.parametrize("name", list(OBSERVATIONS))
def test_two_moons_reference_sampler_is_exact(name: str) -> None:
    r"""The inversion sampler's draws fall into cells (branch, radius, angle) as often as the posterior density
    :math:`\propto p(\theta)\,p(x \mid \theta)`, normalized on a grid, says; the same draws against the density
    without the polar Jacobian fail the test by far, so it has the power to see a wrong density."""
    simulator = TwoMoons().double()
    x_obs = torch.tensor(OBSERVATIONS[name], dtype=torch.float64)
    draws = simulator.reference_posterior_samples(x_obs, 100_000, seed=0)
    assert bool((draws.abs() <= 1).all())
    minlength = 2 * (len(RADII) + 1) * ANGLES
    counts = torch.bincount(_polar_cells(simulator, draws, x_obs, RADII, ANGLES), minlength=minlength).double()
    theta, log_posterior = _posterior_grid(simulator, x_obs, 5e-4)
    finite = torch.isfinite(log_posterior)
    outside = float(torch.softmax(simulator.log_likelihood(theta, x_obs), 0)[~finite].sum())
    assert outside < 1e-6 if name == "inside" else 0.5 < outside < 0.95  # the likelihood's mass the box cuts off
    theta, log_posterior = theta[finite], log_posterior[finite]
    probabilities = _cell_probabilities(simulator, log_posterior, theta, x_obs)
    statistic, dof = _chi_square(counts, probabilities)
    assert chi2.sf(statistic, dof) > 1e-3, (statistic, dof)
    p = x_obs - simulator._g(theta)
    rho = torch.hypot(p[:, 0] - simulator.offset, p[:, 1])
    wrong = _cell_probabilities(simulator, log_posterior + torch.log(rho), theta, x_obs)
    assert chi2.sf(*_chi_square(counts, wrong)) < 1e-20
    # the mirror image across theta_1 + theta_2 = 0 maps the box onto itself: the crescents weigh the same
    assert abs(float((draws.sum(-1) > 0).double().mean()) - 0.5) < 0.01
    # the posterior mean by quadrature
    weights = torch.softmax(log_posterior, 0)
    assert_close(draws.mean(0), weights @ theta, atol=0.01, rtol=0)


def test_two_moons_prior() -> None:
    simulator = TwoMoons(prior_bound=2.0)
    theta = simulator.prior_sample(10_000, seed=0)
    assert float(theta.abs().max()) <= 2 and float(theta.abs().max()) > 1.9
    inside = simulator.prior_log_prob(torch.tensor([[2.0, -2.0], [0.0, 0.0]]))
    assert_close(inside, torch.full((2,), -2 * math.log(4.0)))
    assert simulator.prior_log_prob(torch.tensor([2.01, 0.0])).item() == -math.inf


def test_two_moons_impossible_observation() -> None:
    with pytest.raises(ValueError, match="nearly\\) impossible"):
        TwoMoons().reference_posterior_samples(torch.tensor([5.0, 5.0]), 10, seed=0)


def test_two_moons_refuses() -> None:
    with pytest.raises(ValueError, match="radius_std must be"):
        TwoMoons(radius_std=0.0)
    with pytest.raises(ValueError, match="prior_bound must be"):
        TwoMoons(prior_bound=-1.0)
    with pytest.raises(ValueError, match="offset must be"):
        TwoMoons(offset=math.inf)


# -- input checks shared by every simulator -------------------------------------------------------------------------


def test_input_errors(simulator: Simulator) -> None:
    d, k = simulator.theta_dim, simulator.x_dim
    with pytest.raises(ValueError, match="theta must have shape"):
        simulator.simulate(torch.zeros(3, d + 1))
    with pytest.raises(ValueError, match="NaN or infinite"):
        simulator.simulate(torch.full((2, d), math.nan))
    with pytest.raises(ValueError, match="x_obs must have shape"):
        simulator.reference_posterior_samples(torch.zeros(k + 1), 3)
    with pytest.raises(ValueError, match="x_obs contains 1 NaN"):
        simulator.reference_posterior_samples(torch.tensor([math.nan] + [0.0] * (k - 1)), 3)
    with pytest.raises(ValueError, match="x must have shape"):
        simulator.log_likelihood(torch.zeros(d), torch.zeros(k + 2))
    with pytest.raises(TypeError, match="floating point"):
        simulator.prior_log_prob(torch.zeros(2, d, dtype=torch.long))
    with pytest.raises(TypeError, match="numeric"):
        simulator.prior_log_prob(np.array(["a"] * d))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            simulator.reference_posterior_samples(torch.zeros(k), bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="n must be a positive integer"):
            simulator.sample_joint(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="number of samples"):
        simulator.prior_sample(-1)
    with pytest.raises(ValueError, match="seed must be"):
        simulator.prior_sample(3, seed=-2)
