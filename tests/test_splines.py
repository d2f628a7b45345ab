"""The spline transformers: identity at zero, exact inverses and log-derivatives, monotonicity, robustness at knots,
bounds and extremes, and use inside coupling and masked autoregressive layers."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor
from torch.testing import assert_close

from torchnf.bijections import Bijection, Coupling, MaskedAutoregressive
from torchnf.transformers.splines import LinearRationalSpline, RationalQuadraticSpline

Spline = RationalQuadraticSpline | LinearRationalSpline
SPLINES = [pytest.param(RationalQuadraticSpline, id="rq"), pytest.param(LinearRationalSpline, id="lrs")]
DTYPES = [pytest.param(torch.float64, id="float64"), pytest.param(torch.float32, id="float32")]
DIRECTIONS = ["forward", "inverse"]
BOUND = 5.0


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def random_params(spline: Spline, shape: tuple[int, ...], std: float = 1.0, dtype=torch.float64) -> Tensor:
    return std * torch.randn(*shape, spline.n_params, dtype=dtype)


def apply(spline: Spline, direction: str) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
    return spline if direction == "forward" else spline.inverse


def span(n: int = 2001, dtype=torch.float64) -> Tensor:
    """Points across ``[-1.5 B, 1.5 B]``, inside and outside the spline's interval."""
    return torch.linspace(-1.5 * BOUND, 1.5 * BOUND, n, dtype=dtype)


def autograd_derivative(map_: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], v: Tensor, params: Tensor):
    """``(output, returned log-derivative, autograd derivative)`` of an elementwise map."""
    v = v.clone().requires_grad_()
    out, log_derivative = map_(v, params)
    (derivative,) = torch.autograd.grad(out.sum(), v)
    return out.detach(), log_derivative.detach(), derivative


@pytest.mark.parametrize("cls", SPLINES)
def test_constructor_and_state(cls: type[Spline]) -> None:
    """n_params counts 3K - 1 (RQ) or 4K - 1 (LRS) raw values; no learnable state; the repr names the settings."""
    spline = cls(bins=4, bound=2.0)
    assert spline.n_params == (11 if cls is RationalQuadraticSpline else 15)
    assert cls().n_params == (23 if cls is RationalQuadraticSpline else 31)
    assert list(spline.parameters()) == [] and list(spline.buffers()) == [] and spline.state_dict() == {}
    assert "bins=4" in repr(spline) and "bound=2.0" in repr(spline)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", SPLINES)
def test_zero_params_give_the_identity(cls: type[Spline], dtype: torch.dtype) -> None:
    spline = cls(bound=BOUND)
    x = torch.cat([span(4001, dtype), torch.tensor([-BOUND, BOUND, -1e6, 1e6], dtype=dtype)])
    params = torch.zeros(*x.shape, spline.n_params, dtype=dtype)
    eps = torch.finfo(dtype).eps
    for direction in DIRECTIONS:
        y, log_derivative = apply(spline, direction)(x, params)
        assert y.dtype == log_derivative.dtype == dtype
        assert_finite_with_gradients(spline, direction, x, params)  # a network's zero start must train
        assert_close(y, x, rtol=0, atol=8 * eps * BOUND)
        assert_close(log_derivative, torch.zeros_like(x), rtol=0, atol=8 * eps)
    knot_x, knot_y, derivatives = spline.knots(params[0])
    uniform = torch.linspace(-BOUND, BOUND, spline.bins + 1, dtype=dtype)
    assert_close(knot_x, uniform, rtol=0, atol=8 * eps * BOUND)
    assert torch.equal(knot_x, knot_y)
    assert_close(derivatives, torch.ones_like(derivatives), rtol=0, atol=2 * eps)


@pytest.mark.parametrize("cls", SPLINES)
def test_knots(cls: type[Spline]) -> None:
    """Knots run from exactly -B to exactly B, increasing by at least the minimum bin sizes; derivatives are
    positive and 1 at the ends; widths follow B (m + (1 - K m) softmax)."""
    spline = cls(bins=6, bound=BOUND, min_width=0.01, min_height=0.02)
    params = random_params(spline, (10,), std=5.0)
    knot_x, knot_y, derivatives = spline.knots(params)
    assert knot_x.shape == knot_y.shape == derivatives.shape == (10, 7)
    for knots, minimum in ((knot_x, 0.01), (knot_y, 0.02)):
        assert (knots[:, 0] == -BOUND).all() and (knots[:, -1] == BOUND).all()
        assert (knots.diff() >= 2 * BOUND * minimum * (1 - 1e-9)).all()
    expected_widths = 2 * BOUND * (0.01 + 0.94 * torch.softmax(params[:, :6], -1))
    assert_close(knot_x.diff(), expected_widths, rtol=1e-12, atol=1e-12)
    assert (derivatives[:, 1:-1] > spline.min_derivative).all()
    assert (derivatives[:, [0, -1]] == 1).all()


def assert_round_trip(
    back: Tensor, original: Tensor, log_derivative: Tensor, log_derivative_back: Tensor, atol: float, absolute: bool
) -> None:
    """A map followed by its inverse returns the input, and the two log-derivatives are opposite.

    Where the first map is flat (derivative ``< 1``), the rounding of its output is amplified by ``1 / derivative``
    in the second map: the input is ill-conditioned, the inverse is not inaccurate. The errors are therefore
    measured after scaling by ``min(1, derivative)``; with ``absolute`` they must also be below ``atol`` unscaled.
    """
    scale = log_derivative.exp().clamp(max=1)
    error, log_derivative_error = (back - original).abs(), (log_derivative + log_derivative_back).abs()
    assert (error * scale).max() <= atol
    assert (log_derivative_error * scale).max() <= atol
    if absolute:
        assert error.max() <= atol and log_derivative_error.max() <= atol


@pytest.mark.parametrize("std", [1.0, 5.0])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("cls", SPLINES)
def test_round_trip(cls: type[Spline], direction: str, std: float) -> None:
    """In float64, inverting the map returns the input and the two log-derivatives are opposite: to 1e-10 for
    parameters of standard deviation 1; for standard deviation 5 (derivatives from 1e-7 to 1e9) after scaling."""
    spline = cls(bound=BOUND)
    v = torch.cat([span(), BOUND * (2 * torch.rand(2000, dtype=torch.float64) - 1)])
    params = random_params(spline, v.shape, std)
    opposite = "inverse" if direction == "forward" else "forward"
    image, log_derivative = apply(spline, direction)(v, params)
    back, log_derivative_back = apply(spline, opposite)(image, params)
    assert_round_trip(back, v, log_derivative, log_derivative_back, 1e-10, absolute=std == 1.0)


@pytest.mark.parametrize("std", [1.0, 5.0])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("cls", SPLINES)
def test_log_derivative_matches_autograd(cls: type[Spline], direction: str, std: float) -> None:
    spline = cls(bound=BOUND)
    v = torch.cat([span(), BOUND * (2 * torch.rand(2000, dtype=torch.float64) - 1)])
    params = random_params(spline, v.shape, std)
    _, log_derivative, derivative = autograd_derivative(apply(spline, direction), v, params)
    assert (derivative > 0).all()
    assert_close(log_derivative, derivative.log(), rtol=0, atol=1e-8)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("cls", SPLINES)
def test_parameter_gradients(cls: type[Spline], direction: str) -> None:
    """Autograd's gradients with respect to the raw parameters agree with finite differences."""
    spline = cls(bins=3, bound=2.0)
    v = torch.tensor([-3.0, -1.1, 0.2, 1.5], dtype=torch.float64)
    params = random_params(spline, v.shape).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: apply(spline, direction)(v, p), (params,), fast_mode=True)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("cls", SPLINES)
def test_strictly_increasing(cls: type[Spline], direction: str) -> None:
    spline = cls(bound=BOUND)
    grid = torch.linspace(-1.2 * BOUND, 1.2 * BOUND, 10001, dtype=torch.float64).unsqueeze(-1).expand(-1, 6)
    params = random_params(spline, (6,), std=2.0).expand(*grid.shape, -1)
    image, _ = apply(spline, direction)(grid, params)
    assert (image.diff(dim=0) > 0).all()


@pytest.mark.parametrize("cls", SPLINES)
def test_continuous_at_knots_and_bounds(cls: type[Spline]) -> None:
    """The limits from the left and from the right of every knot, including ±B where the tails join, agree for the
    values and the log-derivatives (C1); each limit is extrapolated linearly from two points on its side."""
    spline = cls(bound=BOUND)
    params = random_params(spline, (6,))
    knot_x, knot_y, _ = spline.knots(params)
    h = 1e-8
    for direction, knots in (("forward", knot_x), ("inverse", knot_y)):
        map_, at_knots = apply(spline, direction), params.unsqueeze(1).expand(*knots.shape, -1)
        (
            (near_left, log_near_left),
            (far_left, log_far_left),
            (near_right, log_near_right),
            (far_right, log_far_right),
        ) = (map_(knots + offset, at_knots) for offset in (-h, -2 * h, h, 2 * h))
        value, _ = map_(knots, at_knots)
        assert_close(2 * near_left - far_left, value, rtol=0, atol=1e-9)
        assert_close(2 * near_right - far_right, value, rtol=0, atol=1e-9)
        log_left, log_right = 2 * log_near_left - log_far_left, 2 * log_near_right - log_far_right
        assert_close(log_left, log_right, rtol=0, atol=1e-7)
        assert_close(log_left[:, [0, -1]], torch.zeros_like(log_left[:, [0, -1]]), rtol=0, atol=1e-7)


def edge_points(spline: Spline, params: Tensor, direction: str) -> Tensor:
    """Per parameter set (rows): every knot, exactly ±B, ±1e6 and ±(B + tiny)."""
    knot_x, knot_y, _ = spline.knots(params)
    knots = knot_x if direction == "forward" else knot_y
    tiny = torch.finfo(params.dtype).eps * BOUND
    extra = torch.tensor([-BOUND, BOUND, -1e6, 1e6, -BOUND - 4 * tiny, BOUND + 4 * tiny], dtype=params.dtype)
    return torch.cat([knots.detach(), extra.expand(len(knots), -1)], dim=-1)


def assert_finite_with_gradients(spline: Spline, direction: str, v: Tensor, params: Tensor) -> None:
    v = v.clone().requires_grad_()
    params = params.clone().requires_grad_()
    image, log_derivative = apply(spline, direction)(v, params)
    assert image.isfinite().all() and log_derivative.isfinite().all()
    (image.sum() + log_derivative.sum()).backward()
    assert v.grad is not None and v.grad.isfinite().all()
    assert params.grad is not None and params.grad.isfinite().all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("cls", SPLINES)
def test_knots_bounds_and_far_inputs_are_finite(cls: type[Spline], direction: str, dtype: torch.dtype) -> None:
    spline = cls(bound=BOUND)
    params = random_params(spline, (5,), std=3.0, dtype=dtype)
    v = edge_points(spline, params, direction)
    assert_finite_with_gradients(spline, direction, v, params.unsqueeze(1).expand(*v.shape, -1))
    image, _ = apply(spline, direction)(v, params.unsqueeze(1).expand(*v.shape, -1))
    assert torch.equal(image[:, -4:-2], v[:, -4:-2])  # ±1e6: the identity tails
    ends = torch.tensor([-BOUND, BOUND], dtype=dtype).expand(len(v), -1)
    assert_close(image[:, -6:-4], ends, rtol=0, atol=4 * torch.finfo(dtype).eps * BOUND)  # ±B map to ±B


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("magnitude", [50.0, 1e3])
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("cls", SPLINES)
def test_extreme_params_are_finite(cls: type[Spline], direction: str, magnitude: float, dtype: torch.dtype) -> None:
    spline = cls(bound=BOUND)
    signs = torch.randn(8, spline.n_params, dtype=dtype).sign()
    signs[0], signs[1] = 1, -1
    params = magnitude * signs
    v = torch.cat([edge_points(spline, params, direction), span(41, dtype).expand(8, -1)], dim=-1)
    expanded = params.unsqueeze(1).expand(*v.shape, -1)
    assert_finite_with_gradients(spline, direction, v, expanded)
    image, _ = apply(spline, direction)(v.sort(dim=-1).values, expanded)
    assert (image.diff(dim=-1) >= 0).all()


@pytest.mark.parametrize("std", [0.3, 1.0])
@pytest.mark.parametrize("cls", SPLINES)
def test_float32_round_trip(cls: type[Spline], std: float) -> None:
    """In float32 the spline inverts itself to float32 precision: absolutely for moderate parameters (a network
    near its zero start), after scaling by the derivative (see :func:`assert_round_trip`) for larger ones."""
    spline = cls(bound=BOUND)
    x = span(dtype=torch.float32)
    params = random_params(spline, x.shape, std, dtype=torch.float32)
    y, log_derivative = spline(x, params)
    back, log_derivative_back = spline.inverse(y, params)
    assert y.dtype == back.dtype == log_derivative.dtype == torch.float32
    assert_round_trip(back, x, log_derivative, log_derivative_back, 1e-5 if std < 1 else 2e-4, absolute=std < 1)


def perturbed(layer: Bijection, scale: float = 0.3) -> Bijection:
    """The layer in float64, every parameter perturbed (its last layer starts at zero: the identity)."""
    layer = layer.double().eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return layer


LAYERS = [
    pytest.param(lambda t: Coupling(4, t, hidden=(16, 16)), id="coupling"),
    pytest.param(lambda t: Coupling(4, t, mask="alternate", hidden=(16, 16)), id="coupling-alternate"),
    pytest.param(lambda t: MaskedAutoregressive(4, t, hidden=(16, 16)), id="made"),
]


@pytest.mark.parametrize("build", LAYERS)
@pytest.mark.parametrize("cls", SPLINES)
def test_in_a_layer_log_det_matches_jacobian(cls: type[Spline], build: Callable[[Spline], Bijection]) -> None:
    """Inside coupling and masked autoregressive layers (bound 2, so points reach the tails): the log-det is the
    autograd Jacobian's, in both directions, and the layer inverts itself."""
    layer = perturbed(build(cls(bound=2.0)))
    x = 1.5 * torch.randn(64, 4, dtype=torch.float64)
    z, log_det = layer(x)
    assert (z - x).abs().max() > 0.1 and log_det.abs().max() > 0.1
    back, log_det_back = layer.inverse(z)
    assert_close(back, x, rtol=0, atol=1e-10)
    assert_close(log_det + log_det_back, torch.zeros_like(log_det), rtol=0, atol=1e-10)
    for map_, points in ((layer, x[:8]), (layer.inverse, z[:8])):
        jacobian_and_log_det = torch.func.jacrev(map_, has_aux=True)
        for point in points:
            jacobian, point_log_det = jacobian_and_log_det(point)
            assert abs(point_log_det - torch.linalg.slogdet(jacobian).logabsdet) <= 1e-8


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"bins": 0}, "bins"),
        ({"bins": 2.5}, "bins"),
        ({"bins": True}, "bins"),
        ({"bound": 0.0}, "bound"),
        ({"bound": -1.0}, "bound"),
        ({"bound": math.inf}, "bound"),
        ({"bound": math.nan}, "bound"),
        ({"min_width": 0.0}, "min_width"),
        ({"bins": 8, "min_width": 0.125}, "min_width"),
        ({"min_height": -1e-3}, "min_height"),
        ({"bins": 4, "min_height": 0.3}, "min_height"),
        ({"min_derivative": 0.0}, "min_derivative"),
        ({"min_derivative": 1.0}, "min_derivative"),
    ],
    ids=str,
)
@pytest.mark.parametrize("cls", SPLINES)
def test_bad_arguments_raise(cls: type[Spline], kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


@pytest.mark.parametrize("value", [0.0, 0.5, -0.1])
def test_bad_min_lambda_raises(value: float) -> None:
    with pytest.raises(ValueError, match="min_lambda"):
        LinearRationalSpline(min_lambda=value)


@pytest.mark.parametrize("cls", SPLINES)
def test_bad_params_shape_raises(cls: type[Spline]) -> None:
    spline = cls(bins=4)
    with pytest.raises(ValueError, match="params"):
        spline(torch.zeros(3, 2), torch.zeros(3, 2, spline.n_params + 1))
    with pytest.raises(ValueError, match="params"):
        spline.inverse(torch.zeros(3, 2), torch.zeros(3, spline.n_params))
