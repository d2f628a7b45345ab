"""The neural transformers: deep sigmoidal flows (DSF, DDSF) and UMNN, alone and inside conditioners.

Tolerances (float64 unless noted):

* DSF and DDSF have closed-form log-derivatives, computed in log space: they match autograd to rounding (errors
  reached are around 1e-15; required 1e-9).
* UMNN reports :math:`\\log g(x)`, the log-derivative of the exact integral, while its forward map is the
  Clenshaw--Curtis sum, whose derivative differs by the quadrature's error in the derivative. For the smooth
  (SiLU) integrand networks used here, on :math:`|x| \\lesssim 4`, 20 nodes give errors around 1e-14 (measured);
  ``UMNN_LOGDET`` = 1e-8 leaves room for rougher networks without hiding a wrong formula (an error in the
  log-derivative would be of order one).
* Inverses are exact to the root finder's tolerance (``1e-12 * (1 + |x|)`` in float64), checked at 1e-10.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from bijection_registry import perturb
from torch import Tensor
from torch.testing import assert_close

from torchnf.bijections import Bijection, Coupling, MaskedAutoregressive
from torchnf.transformers.base import Transformer
from torchnf.transformers.sigmoid import DeepDenseSigmoid, DeepSigmoid
from torchnf.transformers.umnn import UMNN, clenshaw_curtis

pytestmark = pytest.mark.usefixtures("one_thread")

FACTORIES: dict[str, Callable[[], Transformer]] = {
    "dsf": lambda: DeepSigmoid(4),
    "ddsf": lambda: DeepDenseSigmoid(3, 2),
    "ddsf-3-layers": lambda: DeepDenseSigmoid(3, 3),
    "umnn": lambda: UMNN(4, (16, 16)),
}
NAMES = list(FACTORIES)
SIGMOIDAL = [name for name in NAMES if name != "umnn"]
EXACT_LOGDET = 1e-9
UMNN_LOGDET = 1e-8
ROUND_TRIP = {"rtol": 1e-10, "atol": 1e-10}


def make(name: str, dtype: torch.dtype = torch.float64, seed: int = 0, fresh: bool = False) -> Transformer:
    """A transformer; unless ``fresh``, UMNN's network is perturbed so that its integrand is not constant."""
    torch.manual_seed(seed)
    transformer = FACTORIES[name]().to(dtype)
    if not fresh:
        perturb(transformer, seed, scale=0.3)
    return transformer


def random_params(
    transformer: Transformer, shape: tuple[int, ...], scale: float, seed: int = 0, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Raw parameters ``scale * N(0, 1)`` of shape ``(*shape, n_params)``, as a conditioner would output."""
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, transformer.n_params, generator=generator, dtype=torch.float64).to(dtype)


def points(n: int, scale: float = 3.0, dtype: torch.dtype = torch.float64, seed: int = 1) -> Tensor:
    return scale * torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def derivative(transformer: Transformer, x: Tensor, params: Tensor) -> Tensor:
    """``d tau / dx`` by autograd (elementwise map, so the gradient of the sum)."""
    x = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(transformer(x, params)[0].sum(), x)
    return grad


# -- construction ----------------------------------------------------------------------------------------------


def test_n_params() -> None:
    """DSF has 3H per dimension; DDSF (H^2 + 2H) + (L - 2)(2H^2 + 2H) + (H^2 + 3H); UMNN embedding + 1."""
    assert DeepSigmoid(5).n_params == 15
    assert DeepDenseSigmoid(5, 1).n_params == 15
    for hidden, layers in [(3, 2), (3, 3), (8, 2), (4, 5)]:
        expected = (hidden**2 + 2 * hidden) + (layers - 2) * (2 * hidden**2 + 2 * hidden) + (hidden**2 + 3 * hidden)
        assert DeepDenseSigmoid(hidden, layers).n_params == expected
    assert DeepDenseSigmoid().n_params == 168
    assert UMNN(embedding=6).n_params == 7


@pytest.mark.parametrize(
    "build",
    [
        lambda: DeepSigmoid(0),
        lambda: DeepDenseSigmoid(4, 0),
        lambda: DeepSigmoid(4, bound=0.0),
        lambda: UMNN(nodes=1),
        lambda: UMNN(embedding=-1),
        lambda: UMNN(log_slope_bound=0.0),
    ],
)
def test_invalid_arguments_raise(build: Callable[[], Transformer]) -> None:
    with pytest.raises(ValueError):
        build()


@pytest.mark.parametrize("name", NAMES)
def test_wrong_number_of_params_raises(name: str) -> None:
    transformer = make(name)
    with pytest.raises(ValueError, match="parameters"):
        transformer(torch.zeros(3, dtype=torch.float64), torch.zeros(3, transformer.n_params + 1, dtype=torch.float64))


# -- zero parameters -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_zero_params_give_the_identity(name: str) -> None:
    """All-zero parameters (a new UMNN) give the identity in both directions, with zero log-derivative."""
    transformer = make(name, fresh=True)
    x = torch.cat([points(64), torch.tensor([-1e3, -50.0, 0.0, 50.0, 1e3], dtype=torch.float64)])
    params = torch.zeros(*x.shape, transformer.n_params, dtype=torch.float64)
    for direction in (transformer.forward, transformer.inverse):
        y, log_derivative = direction(x, params)
        assert_close(y, x, rtol=1e-13, atol=1e-13)
        assert_close(log_derivative, torch.zeros_like(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", SIGMOIDAL)
def test_equal_raw_params_break_the_symmetry(name: str) -> None:
    """The same raw value for every unit (what one conditioner update from zero gives) makes the units differ, so
    the map leaves the affine family: its log-derivative varies with ``x``."""
    transformer = make(name)
    x = torch.linspace(-4, 4, 33, dtype=torch.float64)
    for value in (0.5, -0.5):
        _, log_derivative = transformer(x, torch.full((*x.shape, transformer.n_params), value, dtype=torch.float64))
        assert log_derivative.max() - log_derivative.min() > 1e-2


# -- the map and its derivative --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name: str) -> None:
    """``inverse(forward(x)) = x`` with opposite log-derivatives, also far out in the tails."""
    transformer = make(name)
    x = torch.cat([points(200), torch.tensor([-1e3, -30.0, 30.0, 1e3], dtype=torch.float64)])
    params = random_params(transformer, x.shape, scale=2.0)
    y, log_derivative = transformer(x, params)
    back, log_derivative_back = transformer.inverse(y, params)
    assert_close(back, x, **ROUND_TRIP)
    assert_close(log_derivative + log_derivative_back, torch.zeros_like(x), **ROUND_TRIP)


@pytest.mark.parametrize("name", NAMES)
def test_float32_round_trip(name: str) -> None:
    """In float32 everything stays float32 and the round trip holds to float32 precision."""
    transformer = make(name, dtype=torch.float32)
    x = points(200, dtype=torch.float32)
    params = random_params(transformer, x.shape, scale=1.0, dtype=torch.float32)
    y, log_derivative = transformer(x, params)
    back, log_derivative_back = transformer.inverse(y, params)
    assert y.dtype == back.dtype == log_derivative.dtype == torch.float32
    assert_close(back, x, rtol=1e-5, atol=1e-5)
    assert_close(log_derivative + log_derivative_back, torch.zeros_like(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", SIGMOIDAL)
def test_sigmoidal_log_derivative_is_exact(name: str) -> None:
    """The closed-form log-derivative equals the log of autograd's derivative, from the centre to |x| = 1e3."""
    transformer = make(name)
    x = torch.cat([points(200, scale=4.0), torch.tensor([-1e3, -100.0, 100.0, 1e3], dtype=torch.float64)])
    params = random_params(transformer, x.shape, scale=2.0)
    _, log_derivative = transformer(x, params)
    assert_close(log_derivative, derivative(transformer, x, params).log(), rtol=0, atol=EXACT_LOGDET)


def test_umnn_log_derivative_matches_the_quadrature_derivative() -> None:
    """log g(x) matches the log of the derivative of the quadrature sum (see the module docstring's tolerance)."""
    transformer = make("umnn")
    x = points(200)
    params = random_params(transformer, x.shape, scale=1.0)
    _, log_derivative = transformer(x, params)
    assert_close(log_derivative, derivative(transformer, x, params).log(), rtol=0, atol=UMNN_LOGDET)


def test_umnn_quadrature_matches_a_high_order_reference() -> None:
    """The 20-node integral equals a 301-node one (same network): to 1e-11 relative on |x| <= 4, the range of
    standardized data, and 1e-8 on |x| <= 12 (the rule converges geometrically, at a rate that drops as the
    interval grows relative to the integrand's scale; measured: 1e-13 and 3e-9)."""
    transformer = make("umnn")
    reference = UMNN(4, (16, 16), nodes=301).double()
    reference.load_state_dict(transformer.state_dict())
    x = torch.linspace(-12, 12, 97, dtype=torch.float64)
    params = random_params(transformer, x.shape, scale=1.0)
    beta = params[..., -1]
    integral, exact = transformer(x, params)[0] - beta, reference(x, params)[0] - beta
    relative_error = (integral - exact).abs() / exact.abs().clamp(min=1e-12)
    assert (relative_error[x.abs() <= 4] <= 1e-11).all()
    assert (relative_error <= 1e-8).all()


@pytest.mark.parametrize("n", [2, 3, 8, 20, 33])
def test_clenshaw_curtis_is_exact_for_polynomials(n: int) -> None:
    """The n-point rule integrates x^d over [-1, 1] exactly for d <= n - 1; its first node is 1."""
    nodes, weights = clenshaw_curtis(n)
    assert nodes.dtype == weights.dtype == torch.float64 and nodes[0] == 1
    for d in range(n):
        assert (weights * nodes**d).sum().item() == pytest.approx((1 + (-1) ** d) / (d + 1), abs=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_monotone_with_finite_log_derivative(name: str) -> None:
    """On a fine grid the map never decreases and its log-derivative is finite, for mild and extreme parameters."""
    transformer = make(name)
    x = torch.linspace(-60, 60, 2001, dtype=torch.float64)
    for seed, scale in [(0, 1.0), (1, 5.0), (2, 50.0)]:
        y, log_derivative = transformer(x, random_params(transformer, (1,), scale, seed).expand(*x.shape, -1))
        assert (torch.diff(y) >= 0).all() and (torch.diff(y) > 0).float().mean() > 0.9
        assert log_derivative.isfinite().all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_extreme_inputs_and_params_stay_finite(name: str, dtype: torch.dtype) -> None:
    """Inputs of size 1e3 and raw parameters up to 1e3 give finite values, log-derivatives and gradients, in both
    directions."""
    transformer = make(name, dtype=dtype)
    values = torch.tensor([-1e3, -1e3, -20.0, 0.0, 3.0, 1e3, 1e3, 500.0], dtype=dtype)
    for scale in (1.0, 50.0, 1e3):
        params = random_params(transformer, values.shape, scale, int(scale), dtype).requires_grad_()
        for direction in (transformer.forward, transformer.inverse):
            inputs = values.clone().requires_grad_()
            output, log_derivative = direction(inputs, params)
            assert output.isfinite().all() and log_derivative.isfinite().all()
            (output.sum() + log_derivative.sum()).backward()
            assert inputs.grad is not None and inputs.grad.isfinite().all()
            assert params.grad is not None and params.grad.isfinite().all()
            params.grad = None


# -- gradients -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_inverse_gradients_pass_gradcheck(name: str) -> None:
    """The inverse's implicit gradients (with respect to targets and parameters) match finite differences."""
    transformer = make(name)
    y = points(3, scale=2.0).requires_grad_()
    params = random_params(transformer, y.shape, scale=1.0).requires_grad_()
    assert torch.autograd.gradcheck(transformer.inverse, (y, params))


def test_umnn_network_gets_gradients_in_both_directions() -> None:
    for direction in ("forward", "inverse"):
        transformer = make("umnn")
        y = points(16)
        output, log_derivative = getattr(transformer, direction)(y, random_params(transformer, y.shape, 1.0))
        (output * torch.randn_like(output) + log_derivative).sum().backward()
        for parameter_name, parameter in transformer.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().max() > 0, (direction, parameter_name)


def test_umnn_keeps_float64_quadrature_and_only_saves_weights() -> None:
    """The quadrature rule is a non-persistent float64 buffer, cast at use: the state dict holds only the
    network, and a float32 transformer computes in float32."""
    transformer = UMNN(4, (16, 16))
    assert transformer.nodes.dtype == transformer.weights.dtype == torch.float64
    assert all(key.startswith("net.") for key in transformer.state_dict())
    y, log_derivative = transformer(torch.randn(5), torch.zeros(5, transformer.n_params))
    assert y.dtype == log_derivative.dtype == torch.float32


# -- inside conditioners ---------------------------------------------------------------------------------------

CONDITIONERS: dict[str, Callable[[Transformer], Bijection]] = {
    "coupling": lambda transformer: Coupling(4, transformer, hidden=(8, 8)),
    "autoregressive": lambda transformer: MaskedAutoregressive(4, transformer, hidden=(8, 8)),
}


@pytest.mark.parametrize("conditioner", list(CONDITIONERS))
@pytest.mark.parametrize("name", NAMES)
def test_log_det_inside_conditioners(name: str, conditioner: str) -> None:
    """Inside a coupling and a masked autoregressive layer (D = 4, every parameter perturbed) the log-det of both
    directions equals log|det| of the autograd Jacobian, and the layer inverts itself.

    For UMNN the forward comparison is against the Jacobian of the quadrature map (tolerance ``UMNN_LOGDET``);
    in the inverse direction the Jacobian's diagonal comes from the implicit gradients, which use :math:`g` too,
    so there it checks consistency rather than the quadrature."""
    torch.manual_seed(0)
    bijection = CONDITIONERS[conditioner](FACTORIES[name]()).double()
    perturb(bijection, seed=0, scale=0.3)
    atol = UMNN_LOGDET if name == "umnn" else EXACT_LOGDET
    generator = torch.Generator().manual_seed(2)
    for direction in (bijection.forward, bijection.inverse):
        for _ in range(3):
            point = torch.randn(4, generator=generator, dtype=torch.float64)
            jacobian, log_det = torch.func.jacrev(direction, has_aux=True)(point)
            assert abs(log_det.item() - torch.linalg.slogdet(jacobian).logabsdet.item()) <= atol
    x = torch.randn(32, 4, generator=generator, dtype=torch.float64)
    z, log_det = bijection(x)
    back, log_det_back = bijection.inverse(z)
    assert (z - x).abs().max() > 1e-2
    assert_close(back, x, **ROUND_TRIP)
    assert_close(log_det + log_det_back, torch.zeros_like(log_det), **ROUND_TRIP)
