"""Dequantization: the bound on the probability of discrete data is checked against exact integration over the bins,
the variational noise is a normalized density on each bin, every misuse is refused, and dequantized flows save and
load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
from bijection_registry import perturb
from torch import Tensor

import torchnf
from torchnf import Flow, Glow, RealNVP
from torchnf.bijections import Compose, Logit
from torchnf.dequantization import Dequantization, UniformDequantization, VariationalDequantization
from torchnf.io import ModelFileError, read_config
from torchnf.training import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only add synchronization

K = 4  # levels
D = 2  # coordinates: K**D = 16 discrete points, few enough to integrate over every bin
IMAGE = (1, 4, 4)
LEVELS = torch.cartesian_prod(torch.arange(K), torch.arange(K)).double()
"""Every point of the discrete space {0, ..., K - 1}^D, shape (K**D, D)."""


def vector_flow(dequantization: Dequantization) -> Flow:
    """A perturbed float64 flow on the open unit square: a plain logit (margin 0, so it maps the square onto the
    whole plane and the flow's density integrates to 1 over the square) before a small Real NVP."""
    torch.manual_seed(0)
    flow = Flow(Compose([Logit(D, alpha=0.0), RealNVP(D, layers=2, hidden=(8, 8))]), dequantization=dequantization)
    flow = flow.double()
    perturb(flow, seed=1)
    return flow.eval()


def variational(event_shape: int | tuple[int, ...] = D, layers: int = 2, hidden: int = 8) -> VariationalDequantization:
    """A small variational dequantization (seeded; perturbed later with its flow)."""
    torch.manual_seed(2)
    return VariationalDequantization(event_shape, K, layers=layers, hidden=hidden)


DEQUANTIZATIONS = {"uniform": lambda: UniformDequantization(D, K), "variational": variational}


def square_rule(n: int = 64) -> tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes ``(n * n, 2)`` and weights ``(n * n,)`` on the unit square, ``n`` per axis."""
    nodes, weights = np.polynomial.legendre.leggauss(n)
    u, w = torch.tensor((nodes + 1) / 2), torch.tensor(weights / 2)
    return torch.cartesian_prod(u, u), (w[:, None] * w[None, :]).flatten()


@torch.no_grad()
def exact_log_prob(flow: Flow) -> Tensor:
    """:math:`\\log P(x) = \\log \\int_{[0,1)^D} p_Y((x + u)/K) K^{-D} du` for every point of :data:`LEVELS`, by
    64-point Gauss-Legendre quadrature per axis of every bin (the density is smooth inside each bin)."""
    u, w = square_rule()
    log_density = flow.continuous_log_prob((LEVELS[:, None, :] + u) / K)
    return torch.logsumexp(log_density + w.log(), 1) - D * math.log(K)


def noise_context(x: Tensor) -> Tensor:
    """The context of the variational noise model: the levels scaled to [-1/2, 1/2] (its ``forward`` uses this, as
    :func:`test_variational_log_q_is_the_noise_density_plus_d_log_k` checks)."""
    return x / (K - 1) - 0.5


def test_bin_probabilities_sum_to_one() -> None:
    """The flow's density integrated over the K^D bins gives probabilities that sum to 1: exact integration of the
    dequantized model covers the whole discrete space, so the bound below is compared with a true log-probability.
    Tolerance 1e-5: the quadrature converges to about 1e-7 here (32 and 64 nodes agree to 2e-6)."""
    flow = vector_flow(UniformDequantization(D, K))
    log_p = exact_log_prob(flow)
    assert abs(float(log_p.exp().sum()) - 1) < 1e-5
    assert float(log_p.exp().min()) > 1e-5, "every bin must have mass, or the checks below would be vacuous"


@pytest.mark.parametrize("kind", DEQUANTIZATIONS)
def test_one_draw_bound_is_below_the_log_probability(kind: str) -> None:
    """The mean of many one-draw bounds (``log_prob``) is at most log P(x), for every x (Jensen's inequality); the
    check allows 4 standard errors of the mean for Monte Carlo noise (a bound that left out the D log K of the
    scaling to the unit cube would exceed log P by 2.8 nats)."""
    flow = vector_flow(DEQUANTIZATIONS[kind]())
    log_p = exact_log_prob(flow)
    torch.manual_seed(0)
    draws = 4000
    with torch.no_grad():
        bounds = flow.log_prob(LEVELS.expand(draws, *LEVELS.shape))
    mean, standard_error = bounds.mean(0), bounds.std(0) / math.sqrt(draws)
    assert bool((mean <= log_p + 4 * standard_error).all()), (log_p - mean) / standard_error
    assert float((log_p - mean).mean()) > 0, "the one-draw bound is below log P on average"


@pytest.mark.parametrize("kind", DEQUANTIZATIONS)
def test_importance_weighted_bound_approaches_the_log_probability_from_below(kind: str) -> None:
    """With S noise draws, ``log_prob(x, samples=S)`` climbs towards log P(x) from below (Burda et al. 2016: its mean
    is non-decreasing in S and at most log P). The gap, averaged over the 16 points, shrinks from S = 1 (several
    nats: the density vanishes in the corners of the square) through 32 to 1,024 draws, where it is within 0.1 nats of 0
    and not below 0 by more than 4 standard errors (over 8 repeats); for every point it is within 0.3 nats. A bound
    that missed a log-det or the D log K would miss by a constant instead."""
    flow = vector_flow(DEQUANTIZATIONS[kind]())
    log_p = exact_log_prob(flow)
    torch.manual_seed(0)
    gaps, errors = {}, {}
    with torch.no_grad():
        for samples in (1, 32, 1024):
            bounds = torch.stack([flow.log_prob(LEVELS, samples=samples) for _ in range(8)])
            gap = (log_p - bounds).mean(1)  # one mean gap per repeat
            gaps[samples], errors[samples] = float(gap.mean()), float(gap.std() / math.sqrt(len(gap)))
    assert gaps[1] > gaps[32] > gaps[1024] - 4 * errors[1024], gaps
    assert -4 * errors[1024] < gaps[1024] < 0.1, (gaps, errors)
    assert float((log_p - bounds.mean(0)).abs().max()) < 0.3


def test_uniform_bound_is_the_log_density_at_the_noisy_point_minus_d_log_k() -> None:
    """Uniform dequantization's one-draw bound is log p_Y((x + u)/K) - D log K with u ~ U[0, 1)^D, computed by hand
    with the same noise (``torch.rand_like`` under the same seed); float64 rounding only."""
    flow = vector_flow(UniformDequantization(D, K))
    torch.manual_seed(5)
    bound = flow.log_prob(LEVELS)
    torch.manual_seed(5)
    u = torch.rand_like(LEVELS)
    assert bool(((u >= 0) & (u < 1)).all())
    by_hand = flow.continuous_log_prob((LEVELS + u) / K) - D * math.log(K)
    torch.testing.assert_close(bound, by_hand, rtol=1e-12, atol=1e-12)


# -- variational dequantization ------------------------------------------------------------------------------------


def perturbed_variational() -> VariationalDequantization:
    """A variational dequantization moved away from its start (where its noise ignores the data), in float64."""
    dequantization = variational().double()
    perturb(dequantization, seed=3)
    return dequantization.eval()


@torch.no_grad()
def test_variational_noise_density_is_normalized_on_every_bin() -> None:
    """For every x, exp(log q(u | x)) integrates to 1 over [0, 1)^D, so q is a density on the bin and the bound is a
    bound. Quadrature: the square is cut into 4 x 4 pieces of 32 x 32 Gauss-Legendre nodes, as the density varies
    steeply near the edges (64 nodes agree to 4e-6); tolerance 2e-5."""
    dequantization = perturbed_variational()
    nodes, weights = square_rule(32)
    pieces = torch.cartesian_prod(torch.arange(4), torch.arange(4)).double()
    u = ((pieces[:, None, :] + nodes) / 4).reshape(-1, D)
    w = weights.repeat(len(pieces)) / len(pieces)
    u = u.expand(len(LEVELS), *u.shape)
    log_q = dequantization.noise.continuous_log_prob(u, noise_context(LEVELS[:, None, :]).expand_as(u))
    mass = (log_q.exp() * w).sum(1)
    torch.testing.assert_close(mass, torch.ones_like(mass), rtol=0, atol=2e-5)
    spread = (log_q - log_q[0]).abs().max()
    assert float(spread) > 1, "the perturbed noise must depend on the data, or the check would not cover it"


def test_variational_log_q_is_the_noise_density_plus_d_log_k() -> None:
    """The log q_Y(y | x) that ``forward`` returns is the noise model's log q(u | x) at u = K y - x plus D log K (the
    density of the scaling to the unit cube), and the points y lie in their bins; float64 rounding only."""
    dequantization = perturbed_variational()
    x = LEVELS.repeat(50, 1)
    with torch.no_grad():
        y, log_q = dequantization(x)
        u = y * K - x
        expected = dequantization.noise.continuous_log_prob(u, noise_context(x)) + D * math.log(K)
    torch.testing.assert_close(log_q, expected, rtol=1e-9, atol=1e-9)
    assert bool(((u >= 0) & (u < 1)).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("event_shape", [(3,), IMAGE], ids=["vector", "image"])
def test_variational_samples_lie_in_their_bins(event_shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """Every dequantized point satisfies x / K <= y < (x + 1) / K, for vectors and images, even for a strongly
    perturbed noise model (whose sigmoid often rounds to 1) and at the top level K - 1; log q is finite and has
    one value per point."""
    dequantization = variational(event_shape, hidden=4).to(dtype)
    perturb(dequantization, seed=4, scale=2.0)
    x = torch.randint(0, K, (200, *event_shape), generator=torch.Generator().manual_seed(0)).to(dtype)
    x[0] = K - 1
    with torch.no_grad():
        y, log_q = dequantization(x)
    assert y.shape == x.shape and log_q.shape == (200,)
    assert bool(((y >= x / K) & (y < (x + 1) / K)).all())
    assert bool(torch.equal(torch.floor(y * K), x))
    assert bool(torch.isfinite(log_q).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_uniform_noise_just_below_one_stays_in_its_bin(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    """The largest uniform draw, 1 - 2^-24 in float32, makes x + u round up to x + 1 for x >= 2; the dequantized
    point is still kept below the bin's upper edge (the top level's at 1, where a plain logit is infinite)."""
    monkeypatch.setattr(torch, "rand_like", lambda x: torch.full_like(x, 1 - 2**-24))
    x = torch.arange(256, dtype=dtype)
    y, _ = UniformDequantization(256, 256)(x)
    assert bool(((y >= x / 256) & (y < (x + 1) / 256)).all())
    assert float(y[-1]) < 1


def test_variational_parameters_get_gradients_through_log_prob() -> None:
    """The bound of ``Flow.log_prob`` is differentiable with respect to every parameter of the noise model (which
    is trained jointly with the flow); the noise is perturbed first, as its zero-initialized output layers would
    block the gradient of the layers before them."""
    dequantization = variational()
    perturb(dequantization, seed=3)
    flow = vector_flow(dequantization)
    flow.log_prob(LEVELS).sum().backward()
    for name, parameter in dequantization.named_parameters():
        assert parameter.grad is not None and bool(parameter.grad.abs().sum() > 0), f"no gradient reached {name}"


@pytest.mark.parametrize("event_shape", [(2,), (5,), (1, 4, 4), (3, 2, 2)], ids=str)
def test_variational_accepts_vectors_and_images(event_shape: tuple[int, ...]) -> None:
    """Vectors of at least two values and images (C, H, W), grey or with channels, are dequantized by a
    variational noise model inside a flow, whose bound is finite."""
    dequantization = variational(event_shape, hidden=4)
    if len(event_shape) == 1:
        flow = Flow(RealNVP(event_shape[0], layers=2, hidden=(8, 8)), dequantization=dequantization)
    else:
        flow = Flow(Glow(event_shape, levels=1, steps=1, hidden_channels=4), dequantization=dequantization)
    x = torch.randint(0, K, (3, *event_shape), generator=torch.Generator().manual_seed(0)).float()
    bound = flow.log_prob(x)
    assert bound.shape == (3,) and bool(torch.isfinite(bound).all())


@pytest.mark.parametrize("event_shape", [1, (1,), (2, 3), (1, 1, 2, 2)], ids=str)
def test_variational_refuses_other_shapes(event_shape: int | tuple[int, ...]) -> None:
    """A single value, a matrix or a 4-dimensional event is refused with a message naming the shapes it models."""
    with pytest.raises(ValueError, match="vectors of at least 2 values or images"):
        VariationalDequantization(event_shape, K)


@pytest.mark.parametrize("options", [{"layers": 0}, {"hidden": 0}], ids=["layers", "hidden"])
def test_variational_refuses_empty_networks(options: dict[str, int]) -> None:
    """No coupling layers or no hidden units are refused."""
    with pytest.raises(ValueError, match="layers >= 1 and hidden >= 1"):
        VariationalDequantization(D, K, **options)


def test_variational_dequantization_fits_no_worse_than_uniform() -> None:
    """On a small discrete data set, a flow fitted with variational dequantization ends with a bound (the training
    objective, averaged over 8 draws per point) not clearly worse than the same flow fitted with uniform
    dequantization. Tolerance 0.05 nats per point (2% of the data's entropy): over seeds 0-4 the difference ranges
    from -0.016 to +0.05, as 200 steps leave both short of convergence."""
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.tensor([8.0, 4, 2, 1, 1, 2, 4, 8, 1, 1, 1, 1, 1, 1, 8, 1])
    data = LEVELS[torch.multinomial(probabilities, 512, replacement=True, generator=generator)]
    bounds = {}
    for kind in DEQUANTIZATIONS:
        torch.manual_seed(0)
        dequantization = UniformDequantization(D, K) if kind == "uniform" else VariationalDequantization(D, K, 2, 8)
        flow = Flow(
            Compose([Logit(D, alpha=0.0), RealNVP(D, layers=4, hidden=(16, 16))]), dequantization=dequantization
        )
        flow.double().fit(data, steps=200, batch_size=64, lr=1e-2, validation_fraction=0, seed=0, progress=False)
        torch.manual_seed(1)
        with torch.no_grad():
            bounds[kind] = float(flow.log_prob(data.repeat(8, 1)).mean())
    assert bounds["variational"] > bounds["uniform"] - 0.05, bounds


# -- validation ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1.5, -1.0, float(K)], ids=["non-integer", "negative", "too-high"])
def test_non_levels_are_refused(value: float) -> None:
    """``log_prob`` (with one draw or several) and ``fit`` (training or validation data) refuse non-integer values,
    negative values and values of K or more on a dequantized flow, with a message naming the levels."""
    flow = vector_flow(UniformDequantization(D, K))
    x = LEVELS.clone()
    x[3, 1] = value
    message = rf"integer levels 0, 1, \.\.\., {K - 1}"
    with pytest.raises(ValueError, match=message):
        flow.log_prob(x)
    with pytest.raises(ValueError, match=message):
        flow.log_prob(x, samples=4)
    with pytest.raises(ValueError, match=message):
        flow.fit(x, steps=1, progress=False)
    with pytest.raises(ValueError, match=message):
        flow.fit(LEVELS, validation_data=x, steps=1, progress=False)


@pytest.mark.parametrize("levels", [1, 0, True, 4.0, "4"], ids=repr)
@pytest.mark.parametrize("cls", [UniformDequantization, VariationalDequantization])
def test_bad_levels_are_refused(cls: type[Dequantization], levels: object) -> None:
    """``levels`` must be an int of at least 2: fewer levels, bools, floats and strings are refused."""
    with pytest.raises(ValueError, match="levels must be an int of at least 2"):
        cls(D, levels)


def test_mismatched_event_shapes_are_refused() -> None:
    """A dequantization for another event shape than the bijection's, or something that is not a dequantization,
    is refused when the flow is built."""
    with pytest.raises(ValueError, match="differs from the bijection's"):
        Flow(RealNVP(3), dequantization=UniformDequantization(D, K))
    with pytest.raises(ValueError, match="differs from the bijection's"):
        Flow(Glow(IMAGE, levels=1, steps=1, hidden_channels=4), dequantization=UniformDequantization((3, 4, 4), K))
    with pytest.raises(TypeError, match="must be a Dequantization"):
        Flow(RealNVP(D), dequantization=K)  # type: ignore[arg-type]


@pytest.mark.parametrize("samples", [0, -1, 1.5, True, "2"], ids=repr)
def test_samples_must_be_a_positive_int(samples: object) -> None:
    """The number of noise draws must be a positive int (a bool is not one)."""
    flow = vector_flow(UniformDequantization(D, K))
    with pytest.raises(ValueError, match="samples must be a positive int"):
        flow.log_prob(LEVELS, samples=samples)  # type: ignore[arg-type]


def test_samples_apply_to_dequantized_flows_only() -> None:
    """A continuous flow's log-density is exact: more than one draw is refused, one is accepted."""
    flow = Flow(RealNVP(D, layers=2, hidden=(8, 8)))
    with pytest.raises(ValueError, match="samples applies to a dequantized flow"):
        flow.log_prob(torch.randn(3, D), samples=2)
    assert flow.log_prob(torch.randn(3, D), samples=1).shape == (3,)


def test_dequantized_flows_have_no_reparameterized_samples() -> None:
    """``rsample`` and ``rsample_and_log_prob`` of a dequantized flow raise: its samples are discrete."""
    flow = vector_flow(UniformDequantization(D, K))
    with pytest.raises(ValueError, match="discrete and have no gradient"):
        flow.rsample(3)
    with pytest.raises(ValueError, match="discrete and have no gradient"):
        flow.rsample_and_log_prob(3)


@pytest.mark.parametrize("kind", DEQUANTIZATIONS)
def test_dequantized_samples_are_levels_with_finite_bounds(kind: str) -> None:
    """``sample`` and ``sample_and_log_prob`` of a dequantized flow return integer levels in [0, K - 1] (also for a
    bijection without a logit, whose continuous samples leave the unit cube and are clamped), and finite bounds."""
    flow = vector_flow(DEQUANTIZATIONS[kind]())
    unbounded = Flow(RealNVP(D, layers=2, hidden=(8, 8)), dequantization=UniformDequantization(D, K))
    perturb(unbounded, seed=1)
    for model in (flow, unbounded):
        x = model.sample((50, 2))
        assert x.shape == (50, 2, D)
        x2, bound = model.sample_and_log_prob(50)
        for levels in (x, x2):
            assert bool(torch.equal(levels, levels.round())) and levels.min() >= 0 and levels.max() <= K - 1
        assert bound.shape == (50,) and bool(torch.isfinite(bound).all())
    assert flow.sample(2000).unique(dim=0).shape[0] == K**D, "a perturbed flow reaches every level"


def flows_by_kind() -> dict[str, Flow]:
    """A dequantized flow, a flow with a bounded domain (a logit first) and an ordinary flow."""
    torch.manual_seed(0)
    return {
        "dequantized": Flow(RealNVP(D, layers=2, hidden=(8, 8)), dequantization=UniformDequantization(D, K)),
        "bounded": Flow(Compose([Logit(D), RealNVP(D, layers=2, hidden=(8, 8))])),
        "ordinary": Flow(RealNVP(D, layers=2, hidden=(8, 8))),
    }


@pytest.mark.parametrize("kind", ["dequantized", "bounded"])
def test_fit_refuses_to_standardize_data_that_must_stay_in_place(kind: str) -> None:
    """``standardize=True`` is refused for a dequantized flow and for a bijection with a bounded domain, whose data
    would leave the unit cube or the domain; the flow is left unfitted."""
    flow = flows_by_kind()[kind]
    data = LEVELS if kind == "dequantized" else (LEVELS + 0.5) / K
    with pytest.raises(ValueError, match="standardize=True would move the data"):
        flow.fit(data, standardize=True, steps=1, progress=False)
    assert not bool(flow.standardization.fitted)


@pytest.mark.parametrize(("kind", "standardized"), [("dequantized", False), ("bounded", False), ("ordinary", True)])
def test_fit_standardizes_by_default_only_ordinary_flows(kind: str, standardized: bool) -> None:
    """By default, ``fit`` sets the standardization of an ordinary flow, and leaves that of a dequantized flow and
    of a bounded-domain flow unset."""
    flow = flows_by_kind()[kind]
    data = LEVELS if kind == "dequantized" else (LEVELS + 0.5) / K
    flow.fit(data, steps=2, progress=False, seed=0)
    assert bool(flow.standardization.fitted) is standardized


def test_fit_refuses_data_outside_the_logit_domain() -> None:
    """Continuous data outside the logit's open interval (where the density is zero) are refused, as training or
    validation data, with a message naming the interval and pointing to dequantization."""
    flow = flows_by_kind()["bounded"]
    low, high = flow.bijection.domain
    inside = torch.full((8, D), 0.5)
    for bad in (high, low - 0.1, 1.5):
        outside = inside.clone()
        outside[2, 0] = bad
        with pytest.raises(ValueError, match=r"outside the open interval \(-0\.05.*, 1\.05.*\).*dequantization"):
            flow.fit(outside, steps=1, progress=False)
        with pytest.raises(ValueError, match="validation_data has 1 value"):
            flow.fit(inside, validation_data=outside, steps=1, progress=False)


@pytest.mark.parametrize("kind", DEQUANTIZATIONS)
def test_validation_loss_of_a_dequantized_flow_is_deterministic(kind: str) -> None:
    """``evaluate`` estimates a dequantized flow's bound with the same noise at every call, whatever the global
    seed, and leaves the global random state as it found it."""
    flow = vector_flow(DEQUANTIZATIONS[kind]())
    data = LEVELS.repeat(4, 1)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    first = evaluate(flow, data)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(2)
    assert evaluate(flow, data) == first
    assert math.isfinite(first)


# -- saving and loading --------------------------------------------------------------------------------------------


def image_flow(dequantization: Dequantization) -> Flow:
    """A perturbed float64 Glow over 1 x 4 x 4 images of K levels (a preset, so it can be saved)."""
    torch.manual_seed(0)
    flow = Flow(Glow(IMAGE, levels=1, steps=1, hidden_channels=4), dequantization=dequantization).double()
    perturb(flow, seed=1)
    return flow.eval()


IMAGE_DEQUANTIZATIONS = {
    "uniform": (lambda: UniformDequantization(IMAGE, K), {"event_shape": list(IMAGE), "levels": K}),
    "variational": (
        lambda: VariationalDequantization(IMAGE, K, layers=2, hidden=4),
        {"event_shape": list(IMAGE), "levels": K, "layers": 2, "hidden": 4, "blocks": 1},
    ),
}


@pytest.mark.parametrize("kind", IMAGE_DEQUANTIZATIONS)
def test_dequantized_flows_round_trip(tmp_path: Path, kind: str) -> None:
    """A saved and loaded dequantized flow gives the same bound under the same seed (the noise model's weights
    included) and the same discrete samples; its config records the dequantization's name and arguments."""
    build, kwargs = IMAGE_DEQUANTIZATIONS[kind]
    flow = image_flow(build())
    path = tmp_path / "model.safetensors"
    flow.save(path)
    assert read_config(path)["dequantization"] == {"name": type(flow.dequantization).__name__, "kwargs": kwargs}
    loaded = torchnf.load(path)
    assert type(loaded.dequantization) is type(flow.dequantization) and loaded.dtype == torch.float64
    x = torch.randint(0, K, (6, *IMAGE), generator=torch.Generator().manual_seed(0)).double()
    bounds = []
    for model in (flow, loaded):
        torch.manual_seed(7)
        bounds.append((model.log_prob(x), model.log_prob(x, samples=3), model.sample(4)))
    for original, reloaded in zip(*bounds, strict=True):
        assert torch.equal(original, reloaded)


def rewrite_config(path: Path, entry: object) -> None:
    """Replace the dequantization entry of a model file's config, keeping its weights."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()["torchnf"])
    config["dequantization"] = entry
    safetensors.torch.save_file(
        safetensors.torch.load_file(str(path)), str(path), metadata={"torchnf": json.dumps(config)}
    )


TAMPERED = {
    "unknown-name": (
        {"name": "os.system", "kwargs": {"event_shape": list(IMAGE), "levels": K}},
        "unknown dequantization 'os.system'",
    ),
    "malformed": ("UniformDequantization", "dequantization entry .* malformed"),
    "bad-levels": ({"name": "UniformDequantization", "kwargs": {"event_shape": list(IMAGE), "levels": 1}}, "levels"),
    "wrong-shape": (
        {"name": "UniformDequantization", "kwargs": {"event_shape": [1, 8, 8], "levels": K}},
        "do not fit together",
    ),
    "dropped-entry": (None, "unexpected"),
}


@pytest.mark.parametrize(("entry", "message"), TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_dequantization_entries_are_refused(tmp_path: Path, entry: object, message: str) -> None:
    """A config naming an unknown dequantization, a malformed or invalid entry, one that does not fit the preset,
    or a dropped entry whose noise model's weights are left over, raises ModelFileError."""
    path = tmp_path / "model.safetensors"
    image_flow(VariationalDequantization(IMAGE, K, layers=1, hidden=4)).save(path)
    rewrite_config(path, entry)
    with pytest.raises(ModelFileError, match=message):
        torchnf.load(path)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, np.int32], ids=str)
def test_integer_data_is_accepted(dtype: object) -> None:
    """A dequantized flow takes its discrete data as integers too (uint8 pixels, NumPy ints): the same bound, under
    the same noise, as the data in floating point."""
    flow = vector_flow(UniformDequantization(D, K))
    x = torch.tensor([[0, 3], [2, 1]])
    data = x.numpy().astype(dtype) if dtype is np.int32 else x.to(dtype)
    torch.manual_seed(0)
    expected = flow.log_prob(x.double())
    torch.manual_seed(0)
    torch.testing.assert_close(flow.log_prob(data), expected, rtol=0, atol=0)
