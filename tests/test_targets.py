"""The test densities of :mod:`torchnf.targets`: shapes, dtypes, stability far away, normalizers checked by independent
quadratures and decompositions, exact samplers against the known moments, and argument checking."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal
from torch.testing import assert_close

from torchnf.targets import (
    Banana,
    BayesianLogisticRegression,
    GaussianMixture,
    ManyWell,
    NealFunnel,
    RezendePotential,
    Rosenbrock,
    Target,
)

pytestmark = pytest.mark.usefixtures("one_thread")

MAKERS: dict[str, Callable[[], Target]] = {
    "funnel": NealFunnel,
    "funnel-mild": lambda: NealFunnel(dim=4, scale=1.0),
    "banana": Banana,
    "banana-5d": lambda: Banana(dim=5, curvature=0.03, scale=3.0),
    "rosenbrock": Rosenbrock,
    "rosenbrock-3d": lambda: Rosenbrock(dim=3, a=0.5, b=2.0, mu=0.5),
    "rosenbrock-10d": lambda: Rosenbrock(dim=10),
    "two-modes": GaussianMixture.two_modes,
    "ring": GaussianMixture.ring,
    "mixture-3d": lambda: GaussianMixture(
        [[0.0, 1.0, -2.0], [3.0, -1.0, 0.5], [-2.0, 2.0, 2.0]],
        [[1.0, 0.5, 2.0], [0.3, 1.0, 1.0], [1.5, 1.5, 0.2]],
        weights=[0.2, 0.5, 0.3],
    ),
    "many-well": ManyWell,
    "many-well-2d": lambda: ManyWell(dim=2),
    "U1": lambda: RezendePotential("U1"),
    "U2": lambda: RezendePotential("U2"),
    "U3": lambda: RezendePotential("U3"),
    "U4": lambda: RezendePotential("U4"),
    "logistic": BayesianLogisticRegression,
    "logistic-iris": lambda: BayesianLogisticRegression(data="iris", prior_scale=10.0, intercept=False),
}
NAMES = list(MAKERS)
EXACT = ["funnel-mild", "banana", "banana-5d", "rosenbrock", "rosenbrock-3d", "two-modes", "ring", "mixture-3d"]
EXACT += ["many-well", "many-well-2d"]
"""Targets with an exact sampler and known moments light-tailed enough for a z-test from 100,000 samples."""


def make(name: str) -> Target:
    return MAKERS[name]()


def grid_log_z(target: Target, box: tuple[float, float, float, float], h: tuple[float, float]) -> float:
    """``log`` of the trapezoidal rule for ``exp(log_prob)`` of a 2-D target on a grid (float64, in row chunks)."""
    target = target.double()
    z1 = torch.arange(box[0], box[1] + h[0] / 2, h[0], dtype=torch.float64)
    z2 = torch.arange(box[2], box[3] + h[1] / 2, h[1], dtype=torch.float64)
    rows = [
        torch.logsumexp(target.log_prob(torch.stack(torch.meshgrid(chunk, z2, indexing="ij"), -1)).flatten(), 0)
        for chunk in z1.split(256)
    ]
    return float(torch.logsumexp(torch.stack(rows), 0)) + math.log(h[0] * h[1])


# -- shapes, dtypes and stability ------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_log_prob_shape(name: str, batch: tuple[int, ...]) -> None:
    target = make(name)
    x = torch.randn(*batch, *target.event_shape, generator=torch.Generator().manual_seed(0))
    value = target.log_prob(x)
    assert value.shape == batch and value.dtype == torch.float32 and bool(value.isfinite().all())
    assert_close(target(x), value)
    if batch == (2, 3):  # vectorized: the same values one point at a time
        assert_close(torch.stack([target.log_prob(p) for p in x.reshape(-1, target.dim)]).reshape(batch), value)


@pytest.mark.parametrize("name", NAMES)
def test_float64_follows_double(name: str) -> None:
    """After ``.double()`` values, moments and samples are float64 and agree with float32 evaluation."""
    target = make(name)
    x = torch.randn(7, target.dim, generator=torch.Generator().manual_seed(1))
    single = target.log_prob(x)
    target.double()
    double = target.log_prob(x.double())
    assert double.dtype == torch.float64
    assert_close(double, single.double(), rtol=1e-5, atol=1e-4)
    for moment in (target.mean, target.variance):
        assert moment is None or (moment.dtype == torch.float64 and moment.shape == target.event_shape)
    if target.has_sampler:
        assert target.sample(3).dtype == torch.float64
    assert "_anchor" not in target.state_dict()


def far_points(dim: int, dtype: torch.dtype) -> Tensor:
    signs = torch.tensor(
        [[1.0] * dim, [-1.0] * dim, [(-1.0) ** i for i in range(dim)], [-((-1.0) ** i) for i in range(dim)]]
    )
    return torch.cat([1e3 * signs, torch.zeros(1, dim)]).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_finite_values_and_gradients_far_away(name: str, dtype: torch.dtype) -> None:
    """At ±1e3 in every coordinate (and at 0) values and gradients are finite; the funnel's neck (v = -1e3 with
    x != 0), where the true log-density is below the dtype's range, is checked in the next test."""
    target = make(name).to(dtype)
    x = far_points(target.dim, dtype)
    if isinstance(target, NealFunnel):
        x = x[x[:, 0] >= 0]
    x.requires_grad_(True)
    value = target.log_prob(x)
    (grad,) = torch.autograd.grad(value.sum(), x)
    assert bool(value.isfinite().all()), value
    assert bool(grad.isfinite().all()), grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_funnel_neck_is_minus_infinity_never_nan(dtype: torch.dtype) -> None:
    target = NealFunnel(dim=3).to(dtype)
    x = torch.tensor([[-1e3, 1e3, -1e3], [-1e3, 0.0, 0.0], [-150.0, 0.0, 0.0]], dtype=dtype, requires_grad=True)
    value = target.log_prob(x)
    (grad,) = torch.autograd.grad(value.sum(), x)
    assert value[0] == -math.inf and not bool(value.isnan().any()) and not bool(grad.isnan().any())
    v = x[1:, 0].detach().double()  # x = 0: only the Gaussian of v and the -(d - 1) v / 2 term remain
    expected = -0.5 * (v / 3) ** 2 - v - math.log(3) - 1.5 * math.log(2 * math.pi)
    assert_close(value[1:].double(), expected, rtol=1e-6, atol=0.0)


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"shape \(\*batch, 2\)"):
        Banana().log_prob(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="floating point"):
        Banana().log_prob(torch.zeros(4, 2, dtype=torch.long))


# -- normalizers -----------------------------------------------------------------------------------------------------

QUADRATURE_CASES = [
    ("banana", (-80.0, 80.0, -650.0, 25.0), (0.2, 0.05)),
    ("rosenbrock-mild", (-8.0, 10.0, -5.0, 90.0), (0.05, 0.05)),
    ("two-modes", (-12.0, 12.0, -8.0, 8.0), (0.1, 0.1)),
    ("ring", (-9.0, 9.0, -9.0, 9.0), (0.05, 0.05)),
    ("many-well-2d", (-4.0, 4.0, -10.0, 10.0), (0.02, 0.1)),
]


@pytest.mark.parametrize(("name", "box", "h"), QUADRATURE_CASES, ids=[c[0] for c in QUADRATURE_CASES])
def test_log_normalizer_of_2d_targets_by_quadrature(
    name: str, box: tuple[float, float, float, float], h: tuple[float, float]
) -> None:
    target = Rosenbrock(a=0.5, b=1.0) if name == "rosenbrock-mild" else make(name)
    assert target.log_normalizer is not None
    assert abs(grid_log_z(target, box, h) - target.log_normalizer) < 1e-10


@pytest.mark.parametrize("name", RezendePotential.names)
def test_rezende_quadrature_against_a_finer_grid(name: str) -> None:
    """The library's grid (spacing 0.02 on [-7, 7] x [-9, 9]) against spacing 0.01 on a larger box."""
    target = RezendePotential(name)
    assert abs(grid_log_z(target, (-8.0, 8.0, -10.0, 10.0), (0.01, 0.01)) - target.log_normalizer) < 1e-9


def test_rezende_normalizers_in_closed_form() -> None:
    """U2 - U4 integrate in z2 to a constant c (one or two Gaussians), and in z1 to the width of [-4, 4] plus two
    half-Gaussian walls, :math:`8 + 0.2\\sqrt{2\\pi}`; the z1 marginal is that flat-topped density."""
    root = math.sqrt(2 * math.pi)
    width = 8 + 0.2 * root
    for name, c in [("U2", 0.4 * root), ("U3", 0.7 * root), ("U4", 0.75 * root)]:
        target = RezendePotential(name).double()
        assert abs(target.log_normalizer - math.log(width * c)) < 1e-11
        second = (2 * 4**3 / 3 + 2 * (16 * 0.1 * root + 2 * 4 * 0.04 + 0.1 * 0.04 * root)) / width
        assert_close(target.variance[0].item(), second, rtol=1e-8, atol=0.0)
        assert abs(target.mean[0].item()) < 1e-12


def test_log_probs_match_torch_distributions() -> None:
    """Normalized targets against the same densities built from :mod:`torch.distributions` (float64)."""
    gen = torch.Generator().manual_seed(2)
    x = 2 * torch.randn(50, 4, generator=gen, dtype=torch.float64)

    funnel = NealFunnel(dim=4, scale=3.0).double()
    v, rest = x[:, 0], x[:, 1:]
    expected = Normal(0.0, 3.0).log_prob(v) + Normal(0.0, torch.exp(v / 2).unsqueeze(-1)).log_prob(rest).sum(-1)
    assert_close(funnel.log_prob(x), expected)

    banana = Banana(dim=4, curvature=0.2, scale=2.0).double()
    u = x.clone()
    u[:, 1] = x[:, 1] + 0.2 * (x[:, 0] ** 2 - 4.0)
    scale = torch.tensor([2.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    assert_close(banana.log_prob(x), Normal(0.0, scale).log_prob(u).sum(-1))

    chain = Rosenbrock(dim=4, a=0.3, b=2.0, mu=-0.5).double()
    expected = Normal(-0.5, math.sqrt(1 / 0.6)).log_prob(x[:, 0])
    expected = expected + Normal(x[:, :-1] ** 2, math.sqrt(1 / 4.0)).log_prob(x[:, 1:]).sum(-1)
    assert_close(chain.log_prob(x) - chain.log_normalizer, expected)

    means = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    scales = torch.rand(3, 4, generator=gen, dtype=torch.float64) + 0.5
    weights = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    mixture = GaussianMixture(means, scales, weights).double()
    reference = MixtureSameFamily(Categorical(weights), Independent(Normal(means, scales), 1))
    assert_close(mixture.log_prob(x), reference.log_prob(x))


# -- exact samplers and moments ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXACT)
def test_samples_match_the_moments(name: str) -> None:
    """The sample mean and variance of 100,000 exact draws are within 5 standard errors of ``mean`` and
    ``variance``; the samples are reproducible from a generator."""
    target = make(name).double()
    x = target.sample(100_000, generator=torch.Generator().manual_seed(3))
    assert x.shape == (100_000, target.dim) and bool(x.isfinite().all())
    mean, variance = target.mean, target.variance
    assert mean is not None and variance is not None
    n = x.shape[0]
    z_mean = (x.mean(0) - mean) / (x.std(0) / math.sqrt(n))
    squares = (x - mean) ** 2
    z_variance = (squares.mean(0) - variance) / (squares.std(0) / math.sqrt(n))
    assert float(z_mean.abs().max()) < 5, z_mean
    assert float(z_variance.abs().max()) < 5, z_variance
    first, again = (target.sample((2, 3), generator=torch.Generator().manual_seed(7)) for _ in range(2))
    assert first.shape == (2, 3, target.dim)
    assert_close(first, again, rtol=0, atol=0)
    assert target.sample(0).shape == (0, target.dim)


def test_closed_form_moments() -> None:
    assert_close(Banana(dim=3, curvature=0.5, scale=2.0).variance, torch.tensor([4.0, 1 + 2 * 0.25 * 16, 1.0]))
    assert_close(NealFunnel(dim=3, scale=2.0).variance, torch.tensor([4.0, math.e**2, math.e**2]))
    a, b, mu = 0.3, 2.0, -0.5
    rosenbrock = Rosenbrock(a=a, b=b, mu=mu).double()
    s2 = 1 / (2 * a)
    assert_close(rosenbrock.mean, torch.tensor([mu, mu**2 + s2], dtype=torch.float64))
    expected = torch.tensor([s2, 4 * mu**2 * s2 + 2 * s2**2 + 1 / (2 * b)], dtype=torch.float64)
    assert_close(rosenbrock.variance, expected)
    assert_close(Rosenbrock(dim=3).double().mean[2].item(), 240.1 + 11.0**2)  # E[x2^2] = Var(x2) + E[x2]^2
    assert Rosenbrock(dim=7).mean is None and Rosenbrock(dim=7).variance is None
    assert Rosenbrock(dim=7).has_sampler  # the sampler exists at any dimension
    ring = GaussianMixture.ring(modes=8, radius=5.0, scale=0.5).double()
    assert_close(ring.mean, torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    assert_close(ring.variance, torch.full((2,), 0.25 + 12.5, dtype=torch.float64))


def test_many_well_quadrature_and_masses() -> None:
    """The 1-D integral against the paper's code (11784.50927) and an independent numpy quadrature; the share of
    samples in the right well, per well, and the empirical distribution function against the quadrature's."""
    t = np.linspace(-7.0, 7.0, 280_001)
    f = np.exp(-(t**4) + 6 * t**2 + 0.5 * t)
    integral = np.trapezoid(f, t) if hasattr(np, "trapezoid") else np.trapz(f, t)
    target = ManyWell(dim=32)
    assert abs(target.log_normalizer - 16 * (math.log(integral) + 0.5 * math.log(2 * math.pi))) < 1e-9
    assert abs(target.log_normalizer / 16 - 0.5 * math.log(2 * math.pi) - math.log(11784.50927)) < 1e-9
    cdf = np.cumsum(f) / f.sum()
    right_mass = 1 - np.interp(0.0, t, cdf)
    x = target.double().sample(20_000, generator=torch.Generator().manual_seed(4))
    wells = x[:, 0::2]
    share = (wells > 0).double().mean(0)
    se = math.sqrt(right_mass * (1 - right_mass) / x.shape[0])
    assert float((share - right_mass).abs().max()) < 5 * se, share
    flat = np.sort(wells.flatten().numpy())
    ks = np.abs(np.interp(flat, t, cdf) - np.arange(1, flat.size + 1) / flat.size).max()
    assert ks < 1.63 / math.sqrt(flat.size)  # the 1 % critical value of the Kolmogorov-Smirnov statistic
    assert_close(target.log_prob(torch.zeros(32)), torch.tensor(0.0))


def test_mixture_component_shares() -> None:
    target = GaussianMixture.two_modes(weights=(0.2, 0.8))
    x = target.sample(20_000, generator=torch.Generator().manual_seed(5))
    share = float((x[:, 0] > 0).float().mean())
    assert abs(share - 0.8) < 5 * math.sqrt(0.16 / 20_000)
    assert target.means.shape == (2, 2) and target.components == 2
    assert {name for name, _ in target.named_buffers()} >= {"means", "scales", "log_weights"}


def test_targets_without_sampler_or_normalizer() -> None:
    for target in (RezendePotential("U3"), BayesianLogisticRegression(data="iris")):
        assert not target.has_sampler
        with pytest.raises(NotImplementedError, match="no exact sampler"):
            target.sample(3)
    logistic = BayesianLogisticRegression()
    assert logistic.log_normalizer is None and logistic.mean is None and logistic.variance is None


# -- Bayesian logistic regression ------------------------------------------------------------------------------------


def test_logistic_regression_data_and_likelihood() -> None:
    target = BayesianLogisticRegression(prior_scale=2.0).double()
    assert target.features.shape == (569, 31) and target.dim == 31 and target.labels.shape == (569,)
    assert_close(target.features[:, 0], torch.ones(569, dtype=torch.float64))
    assert_close(target.features[:, 1:].mean(0), torch.zeros(30, dtype=torch.float64), atol=1e-6, rtol=0)
    assert_close(target.features[:, 1:].std(0, correction=0), torch.ones(30, dtype=torch.float64), atol=1e-6, rtol=0)
    beta = torch.randn(4, 31, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    logits = beta @ target.features.T
    likelihood = torch.distributions.Bernoulli(logits=logits).log_prob(target.labels).sum(-1)
    assert_close(target.log_prob(beta), likelihood - beta.square().sum(-1) / 8)
    assert target.log_prior_normalizer == pytest.approx(15.5 * math.log(8 * math.pi))

    features = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0]])
    own = BayesianLogisticRegression(features, [0, 1, True], intercept=False, standardize=False)
    assert own.dim == 2 and own.data is None
    assert_close(own.features, torch.tensor(features, dtype=torch.float32))


ERRORS: list[tuple[Callable[[], object], type[Exception], str]] = [
    (lambda: NealFunnel(dim=1), ValueError, "dim must be an integer of at least 2"),
    (lambda: NealFunnel(scale=-1.0), ValueError, "scale must be a finite positive number"),
    (lambda: Banana(dim=2.5), ValueError, "dim must be an integer"),  # type: ignore[arg-type]
    (lambda: Banana(curvature=math.nan), ValueError, "curvature must be a finite real number"),
    (lambda: Rosenbrock(a=0.0), ValueError, "a must be a finite positive number"),
    (lambda: Rosenbrock(b=-5.0), ValueError, "b must be a finite positive number"),
    (lambda: ManyWell(dim=5), ValueError, "dim must be even"),
    (lambda: ManyWell(dim=0), ValueError, "dim must be an integer of at least 2"),
    (lambda: GaussianMixture([0.0, 1.0], 1.0), ValueError, r"means must have shape \(K, d\)"),
    (lambda: GaussianMixture([[0.0], [1.0]], [1.0, -1.0]), ValueError, "scales must be positive"),
    (lambda: GaussianMixture([[0.0], [1.0]], [1.0, 1.0, 1.0]), ValueError, "scales must be a number or have shape"),
    (lambda: GaussianMixture([[0.0], [1.0]], 1.0, [0.5, 0.6]), ValueError, "weights must sum to 1"),
    (lambda: GaussianMixture([[0.0], [1.0]], 1.0, [1.5, -0.5]), ValueError, "weights must be positive"),
    (lambda: GaussianMixture([[0.0], [1.0]], 1.0, [1.0]), ValueError, r"weights must have shape \(2,\)"),
    (lambda: GaussianMixture([[math.nan], [1.0]], 1.0), ValueError, "means must be finite"),
    (lambda: GaussianMixture.ring(modes=0), ValueError, "modes must be an integer of at least 1"),
    (lambda: RezendePotential("U5"), ValueError, "unknown potential 'U5'; expected one of U1, U2, U3, U4"),
    (lambda: BayesianLogisticRegression([[0.0], [1.0]], [0, 2]), ValueError, "labels must be 0 or 1"),
    (lambda: BayesianLogisticRegression([[0.0], [1.0]], [0, 1, 1]), ValueError, r"labels must have shape \(2,\)"),
    (lambda: BayesianLogisticRegression([[0.0], [math.nan]], [0, 1]), ValueError, "features contains 1 NaN"),
    (lambda: BayesianLogisticRegression([[0.0], [1.0]]), ValueError, "pass both features and labels"),
    (lambda: BayesianLogisticRegression([[0.0]], [1], data="iris"), ValueError, "not both"),
    (lambda: BayesianLogisticRegression(data="mnist"), ValueError, "unknown data 'mnist'"),
    (lambda: BayesianLogisticRegression(data="iris", prior_scale=0.0), ValueError, "prior_scale must be"),
    (lambda: Banana().sample(-1), ValueError, "number of samples"),
]


@pytest.mark.parametrize(("build", "error", "match"), ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_bad_arguments_raise_clear_errors(build: Callable[[], object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build()
