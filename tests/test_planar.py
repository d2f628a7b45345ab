"""Planar, radial and Sylvester flows: what the universal suite does not cover.

The suite (``tests/test_bijections.py``) checks round trips, log-dets, shapes, gradients and context handling of
every registered case at perturbed parameters. Here: invertibility at extreme raw parameters, the orthonormality
of :math:`Q`, the maps against hand computations of the papers' formulas, the presets' options and a flow's
sampling and density agreeing.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from torchnf import Flow, Planar, Preset, Radial, Sylvester, load
from torchnf.bijections import Bijection, Invert, PlanarTransform, RadialTransform, SylvesterTransform
from torchnf.bijections.sylvester import householder_columns

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def check_invertible(bijection: Bijection, n: int = 64, scale: float = 2.0, atol: float = 1e-8) -> None:
    """Round trip both ways, finite log-dets, and forward log-dets equal to the autograd Jacobian's."""
    torch.manual_seed(0)
    x = scale * torch.randn(n, *bijection.event_shape, dtype=F64)
    with torch.no_grad():
        z, log_det = bijection(x)
        back, log_det_back = bijection.inverse(z)
        assert log_det.isfinite().all() and log_det_back.isfinite().all()
        assert_close(back, x, rtol=atol, atol=atol)
        assert_close(log_det + log_det_back, torch.zeros_like(log_det), rtol=atol, atol=atol)
        x_again, _ = bijection.inverse(x)
        assert_close(bijection(x_again)[0], x, rtol=atol, atol=atol)
    for point in x[:4]:
        jacobian = torch.autograd.functional.jacobian(lambda v: bijection(v)[0], point)
        assert_close(bijection(point)[1], torch.linalg.slogdet(jacobian).logabsdet, rtol=1e-6, atol=1e-6)


def set_parameters(bijection: Bijection, **values: torch.Tensor | float) -> Bijection:
    """Cast to float64 and overwrite named raw parameters (broadcasting scalars)."""
    bijection.double()
    with torch.no_grad():
        for name, value in values.items():
            getattr(bijection, name).copy_(torch.as_tensor(value, dtype=F64))
    return bijection


# -- invertibility at extreme raw parameters -------------------------------------------------------------------


@pytest.mark.parametrize("wu", [-30.0, -5.0, 0.0, 5.0, 50.0])
def test_planar_is_invertible_for_any_w_dot_u(wu: float) -> None:
    """Whatever w^T u, w^T u_hat = -1 + softplus(w^T u) > -1 and the layer inverts (w^T u = -30 leaves a slope of
    about 1e-13 along w at a = 0)."""
    torch.manual_seed(1)
    w = torch.randn(3, dtype=F64)
    u = torch.randn(3, dtype=F64)
    u = u - (w @ u) * w / (w @ w) + wu * w / (w @ w)  # w^T u = wu, with a component across w
    layer = set_parameters(PlanarTransform(3), w=w, u=u, b=0.3)
    _, u_hat, _, slack = layer.coefficients(torch.zeros(3, dtype=F64))
    assert_close(w @ u_hat, torch.tensor(math.log1p(math.exp(wu)) - 1, dtype=F64), rtol=1e-12, atol=1e-12)
    assert slack > 0 and w @ u_hat > -1
    check_invertible(layer)


@pytest.mark.parametrize("w_scale", [0.0, 1e-170, 1e-6])
def test_planar_with_vanishing_w(w_scale: float) -> None:
    """w = 0 is the shift x + u tanh(b) (log-det 0); near zero the layer stays finite and invertible."""
    layer = set_parameters(PlanarTransform(2), w=w_scale * torch.tensor([1.0, -2.0]), u=[0.5, -1.5], b=0.7)
    x = torch.randn(16, 2, dtype=F64)
    z, log_det = layer(x)
    assert z.isfinite().all() and log_det.isfinite().all()
    if w_scale == 0:
        assert_close(z, x + torch.tensor([0.5, -1.5], dtype=F64) * math.tanh(0.7))
        assert_close(log_det, torch.zeros(16, dtype=F64))
    assert_close(layer.inverse(z)[0], x, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(("raw_alpha", "raw_beta"), [(0.0, -30.0), (-10.0, -10.0), (10.0, -30.0), (-5.0, 20.0)])
def test_radial_is_invertible_for_any_alpha_and_beta(raw_alpha: float, raw_beta: float) -> None:
    """beta = -alpha + softplus(raw_beta) > -alpha: even a near-total contraction (raw_beta = -30) inverts."""
    layer = set_parameters(RadialTransform(3), center=[0.5, -1.0, 0.0], raw_alpha=raw_alpha, raw_beta=raw_beta)
    check_invertible(layer)


@pytest.mark.parametrize(
    ("r_diag", "r_tilde_diag", "off_diagonal"), [(-30.0, 0.0, 1.0), (40.0, 3.0, 3.0), (40.0, -3.0, 0.0), (5, 5, 5)]
)
def test_sylvester_is_invertible_for_large_diagonals(r_diag: float, r_tilde_diag: float, off_diagonal: float) -> None:
    """1 + R_ii R_tilde_ii = softplus(r_diag) > 0 for any raw values: the layer inverts, by back substitution."""
    torch.manual_seed(2)
    layer = SylvesterTransform(4, 3)
    upper = off_diagonal * torch.randn(layer.r_upper.shape, dtype=F64)
    set_parameters(layer, r_diag=r_diag, r_tilde_diag=r_tilde_diag, r_upper=upper, r_tilde_upper=-upper, bias=0.2)
    _, r, r_tilde, _, slack = layer.coefficients(torch.zeros(4, dtype=F64))
    assert_close(1 + r.diagonal() * r_tilde.diagonal(), slack, rtol=1e-12, atol=1e-12)
    assert (slack > 0).all()
    check_invertible(layer, atol=1e-7)


# -- orthonormal Q -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("features", "columns"), [(5, 1), (5, 3), (5, 5), (1, 1)])
def test_sylvester_q_has_orthonormal_columns(features: int, columns: int) -> None:
    torch.manual_seed(3)
    layer = SylvesterTransform(features, columns).double()
    with torch.no_grad():
        layer.householder.mul_(5)
    q = layer.coefficients(torch.zeros(features, dtype=F64))[0]
    assert q.shape == (features, columns)
    assert_close(q.T @ q, torch.eye(columns, dtype=F64), rtol=0, atol=1e-13)


def test_householder_columns_is_the_householder_product() -> None:
    torch.manual_seed(4)
    vectors = torch.randn(3, 6, 4, dtype=F64).tril(-1) + torch.eye(6, 4, dtype=F64)
    expected = torch.linalg.householder_product(vectors, 2 / vectors.square().sum(-2))
    assert_close(householder_columns(vectors), expected, rtol=0, atol=1e-13)


# -- the maps are the papers' formulas ---------------------------------------------------------------------------


def test_planar_matches_a_hand_computation() -> None:
    """w = (1, 0), u = (0.5, 1), b = 0: u_hat = (m(0.5), 1), m(a) = -1 + log(1 + e^a)."""
    layer = set_parameters(PlanarTransform(2), w=[1.0, 0.0], u=[0.5, 1.0], b=0.0)
    m = -1 + math.log1p(math.exp(0.5))
    x1, x2 = 0.3, -0.2
    t = math.tanh(x1)
    z, log_det = layer(torch.tensor([x1, x2], dtype=F64))
    assert_close(z, torch.tensor([x1 + m * t, x2 + t], dtype=F64), rtol=1e-14, atol=1e-14)
    assert_close(log_det, torch.tensor(math.log(1 + (1 - t * t) * m), dtype=F64), rtol=1e-14, atol=1e-14)


def test_radial_matches_a_hand_computation() -> None:
    """x0 = 0, alpha = log 2, beta = -alpha + log(1 + e): at x = (3, 4), r = 5."""
    layer = set_parameters(RadialTransform(2), center=[0.0, 0.0], raw_alpha=0.0, raw_beta=1.0)
    alpha = math.log(2)
    beta = -alpha + math.log1p(math.e)
    h, dh = 1 / (alpha + 5), -1 / (alpha + 5) ** 2
    z, log_det = layer(torch.tensor([3.0, 4.0], dtype=F64))
    assert_close(z, torch.tensor([3 + 3 * beta * h, 4 + 4 * beta * h], dtype=F64), rtol=1e-14, atol=1e-14)
    expected = math.log(1 + beta * h) + math.log(1 + beta * h + beta * dh * 5)
    assert_close(log_det, torch.tensor(expected, dtype=F64), rtol=1e-14, atol=1e-14)


def test_sylvester_matches_a_hand_computation() -> None:
    """D = M = 2 with one Householder entry t: Q = H_1 H_2, v_1 = (1, t), v_2 = (0, 1); explicit R, R_tilde."""
    t = 0.7
    layer = SylvesterTransform(2).double()
    set_parameters(layer, householder=[t], r_upper=[0.4], r_tilde_upper=[-0.6], bias=[0.1, -0.2])
    set_parameters(layer, r_diag=[0.3, -1.0], r_tilde_diag=[0.2, -0.5])
    v1 = torch.tensor([[1.0], [t]], dtype=F64)
    h1 = torch.eye(2, dtype=F64) - 2 * v1 @ v1.T / (1 + t * t)
    q = h1 @ torch.diag(torch.tensor([1.0, -1.0], dtype=F64))
    slack = [math.log1p(math.exp(0.3)), math.log1p(math.exp(-1.0))]
    r_tilde = torch.tensor([[math.exp(0.2), -0.6], [0.0, math.exp(-0.5)]], dtype=F64)
    r = torch.tensor([[(slack[0] - 1) / math.exp(0.2), 0.4], [0.0, (slack[1] - 1) / math.exp(-0.5)]], dtype=F64)
    x = torch.tensor([0.8, -1.1], dtype=F64)
    a = r_tilde @ q.T @ x + torch.tensor([0.1, -0.2], dtype=F64)
    jacobian = torch.eye(2, dtype=F64) + q @ r @ torch.diag(1 - torch.tanh(a) ** 2) @ r_tilde @ q.T
    z, log_det = layer(x)
    assert_close(z, x + q @ r @ torch.tanh(a), rtol=1e-14, atol=1e-14)
    assert_close(log_det, torch.linalg.slogdet(jacobian).logabsdet, rtol=1e-14, atol=1e-14)
    terms = [math.log(1 + (1 - math.tanh(a[i]) ** 2) * r[i, i] * r_tilde[i, i]) for i in range(2)]
    assert_close(log_det, torch.tensor(sum(terms), dtype=F64), rtol=1e-14, atol=1e-14)


# -- presets -----------------------------------------------------------------------------------------------------

PRESETS: list[tuple[type[Preset], type[Bijection]]] = [
    (Planar, PlanarTransform),
    (Radial, RadialTransform),
    (Sylvester, SylvesterTransform),
]


@pytest.mark.parametrize(("preset", "layer"), PRESETS, ids=lambda p: p.__name__)
def test_closed_form_option(preset: type[Preset], layer: type[Bijection]) -> None:
    """``"sample"`` wraps every layer in Invert (the formula maps latent to data); ``"density"`` does not."""
    sample, density = preset(3, layers=3), preset(3, layers=3, closed_form="density")
    assert len(sample) == len(density) == 3
    assert all(isinstance(part, Invert) and isinstance(part.bijection, layer) for part in sample)
    assert all(type(part) is layer for part in density)
    assert sample.config["closed_form"] == "sample"
    rebuilt = preset(**density.config)
    rebuilt.load_state_dict(density.state_dict())
    x = torch.randn(8, 3)
    assert_close(rebuilt(x), density(x))


@pytest.mark.parametrize(("preset", "layer"), PRESETS, ids=lambda p: p.__name__)
def test_preset_saves_and_loads(preset: type[Preset], layer: type[Bijection], tmp_path: Path) -> None:
    """A conditional preset survives :meth:`Flow.save` and :func:`torchnf.load` (its config is plain values)."""
    torch.manual_seed(8)
    flow = Flow(preset(3, (2,), layers=2, hidden=(8,)))
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    flow.save(tmp_path / "model.safetensors")
    loaded = load(tmp_path / "model.safetensors")
    x, context = torch.randn(4, 3), torch.randn(4, 2)
    assert_close(loaded.log_prob(x, context), flow.log_prob(x, context), rtol=0, atol=0)


@pytest.mark.parametrize(("preset", "layer"), PRESETS, ids=lambda p: p.__name__)
def test_bad_preset_options_raise(preset: type[Preset], layer: type[Bijection]) -> None:
    with pytest.raises(ValueError, match=r"closed_form.*'sample'.*'density'"):
        preset(2, closed_form="latent")
    with pytest.raises(ValueError, match="layers"):
        preset(2, layers=0)
    with pytest.raises(ValueError, match="activation"):
        preset(2, (3,), activation="sine")
    with pytest.raises(ValueError, match="vectors"):
        preset((2, 2))


def test_sylvester_columns_are_checked() -> None:
    assert Sylvester(4, layers=1, columns=2)[0].bijection.columns == 2
    assert SylvesterTransform(4).columns == 4
    for columns in (0, 5, 2.0):
        with pytest.raises(ValueError, match="columns"):
            SylvesterTransform(4, columns)  # type: ignore[arg-type]


# -- context amortization ----------------------------------------------------------------------------------------


def test_context_offsets_every_raw_parameter_per_point() -> None:
    """With a context, each point gets its own parameters; the network starts at zero (the unconditional values)."""
    torch.manual_seed(5)
    x, context = torch.randn(4, 3, dtype=F64), torch.randn(4, 2, dtype=F64)
    planar = PlanarTransform(3, (2,)).double()
    w, u_hat, b, slack = planar.coefficients(x, context)
    assert (w.shape, u_hat.shape, b.shape, slack.shape) == ((4, 3), (4, 3), (4,), (4,))
    assert_close(w, planar.w.expand(4, 3))  # zero-initialized last layer
    center, alpha, sigma = RadialTransform(3, (2,)).double().coefficients(x, context)
    assert (center.shape, alpha.shape, sigma.shape) == ((4, 3), (4,), (4,))
    sylvester = SylvesterTransform(3, 2, (2,)).double()
    q, r, r_tilde, bias, slack = sylvester.coefficients(x, context)
    assert (q.shape, r.shape, r_tilde.shape, bias.shape, slack.shape) == (
        (4, 3, 2),
        (4, 2, 2),
        (4, 2, 2),
        (4, 2),
        (4, 2),
    )
    with torch.no_grad():
        for layer in (planar, sylvester):
            layer.net[-1].bias.normal_()
    assert not torch.allclose(planar.coefficients(x, context)[0], planar.w.expand(4, 3))
    q = sylvester.coefficients(x, context)[0]
    assert_close(q.mT @ q, torch.eye(2, dtype=F64).expand(4, 2, 2), rtol=0, atol=1e-13)


@pytest.mark.parametrize(("preset", "layer"), PRESETS, ids=lambda p: p.__name__)
def test_conditional_preset(preset: type[Preset], layer: type[Bijection]) -> None:
    flow = Flow(preset(2, (3,), layers=2, hidden=(8,))).double()
    context = torch.randn(5, 3, dtype=F64)
    x, log_prob = flow.sample_and_log_prob(4, context)
    assert x.shape == (4, 5, 2) and log_prob.shape == (4, 5)
    with pytest.raises(ValueError, match="context"):
        flow.bijection(x)


# -- flows -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("closed_form", ["sample", "density"])
@pytest.mark.parametrize(("preset", "layer"), PRESETS, ids=lambda p: p.__name__)
def test_flow_samples_and_densities_agree(preset: type[Preset], layer: type[Bijection], closed_form: str) -> None:
    """The density of the flow's own samples, from sampling, equals log_prob's (the other direction)."""
    torch.manual_seed(6)
    flow = Flow(preset(2, layers=4, closed_form=closed_form)).double()
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x, log_prob = flow.sample_and_log_prob(200)
    assert x.shape == (200, 2)
    assert_close(flow.log_prob(x), log_prob, rtol=1e-9, atol=1e-9)
    samples = flow.sample(10)
    assert samples.shape == (10, 2) and samples.isfinite().all()


def test_planar_flow_defaults_round_trip() -> None:
    """``Flow(Planar(2))`` in float32: sampling is closed form and log_prob of the samples matches."""
    torch.manual_seed(7)
    flow = Flow(Planar(2))
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x, log_prob = flow.sample_and_log_prob(100)
    assert_close(flow.log_prob(x), log_prob, rtol=1e-4, atol=1e-4)
