"""Invertible residual flows: Lipschitz networks, the log-det estimators, the fixed-point inverse and the presets.

The universal suite (``tests/test_bijections.py``) checks the blocks in their exact mode. Here the stochastic
estimators are checked for bias: over many independent draws, the mean estimate (of a log-det, or of a gradient
projected on a fixed direction) must lie within ``SIGMAS`` standard errors of the exact value.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from bijection_registry import mirror_weights
from torch import Tensor
from torch.testing import assert_close

from torchnf import Flow, InvertibleResNet, ResFlow, load
from torchnf.bijections import ResidualTransform, log_det_method
from torchnf.bijections.residual_log_det import exact_log_det, roulette_weights, series_weights, stochastic_log_det
from torchnf.nn import LipschitzMLP, LipSwish, SpectralLinear
from torchnf.roots import contractive_inverse

SIGMAS = 3.0
"""The bias tests' tolerance, in standard errors of the mean."""
DRAWS = 200
"""Independent estimator calls per bias test (each draws its own number of terms and probes)."""
ROWS = 256
"""Copies of the test point per call (each row draws its own probe)."""


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def strong_network(features: int = 3, hidden: tuple[int, ...] = (16, 16), activation=LipSwish) -> LipschitzMLP:
    """A float64 Lipschitz network whose Jacobian has a clearly non-zero log-det, with converged spectral norms."""
    net = LipschitzMLP(features, hidden, 0.97, activation).double()
    mirror_weights(net)
    return net


def exact_series(jacobian: Tensor, terms: int) -> Tensor:
    """The power series of log det(I + J) truncated after ``terms`` terms, with exact traces."""
    total, power = torch.zeros(jacobian.shape[0], dtype=jacobian.dtype), torch.eye(3, dtype=jacobian.dtype)
    for k in range(1, terms + 1):
        power = power @ jacobian
        total = total + (-1) ** (k + 1) * torch.diagonal(power, dim1=-2, dim2=-1).sum(-1) / k
    return total


def assert_unbiased(draws: Tensor, exact: Tensor, what: str) -> None:
    """The mean of ``draws`` (independent estimates of ``exact``) lies within ``SIGMAS`` standard errors."""
    mean, standard_error = draws.mean(), draws.std() / draws.numel() ** 0.5
    assert standard_error > 0, f"{what}: the estimates do not vary"
    assert (mean - exact).abs() <= SIGMAS * standard_error, (
        f"{what}: mean {mean.item():.6f} vs exact {exact.item():.6f}, standard error {standard_error.item():.2e}"
    )


# -- Lipschitz networks ------------------------------------------------------------------------------------------


def test_spectral_linear_caps_the_spectral_norm_at_the_coefficient() -> None:
    """After the power iteration converges, the normalized weight's spectral norm is the coefficient when the raw
    norm exceeds it, and the raw weight is left alone when it does not."""
    layer = SpectralLinear(6, 4, coefficient=0.9).double()
    for scale, expected in [(10.0, 0.9), (0.01, None)]:
        with torch.no_grad():
            layer.weight.copy_(scale * torch.randn(4, 6, dtype=torch.float64))
        layer.power_iteration(500)
        norm = torch.linalg.matrix_norm(layer.normalized_weight().detach(), ord=2)
        if expected is None:
            assert_close(layer.normalized_weight(), layer.weight)
        else:
            assert_close(norm, torch.tensor(expected, dtype=torch.float64))


def test_lipswish_slope_is_at_most_one() -> None:
    """LipSwish is 1-Lipschitz for every beta: its derivative stays in [-0.1, 1] on a fine grid."""
    activation = LipSwish().double()
    x = torch.linspace(-30, 30, 20001, dtype=torch.float64, requires_grad=True)
    for raw_beta in (-5.0, 0.0, 1.0, 5.0):
        with torch.no_grad():
            activation.raw_beta.fill_(raw_beta)
        (slope,) = torch.autograd.grad(activation(x).sum(), x)
        assert slope.max() <= 1.0 and slope.min() >= -0.1


@pytest.mark.parametrize("activation", [LipSwish, torch.nn.ELU, torch.nn.Tanh], ids=["lipswish", "elu", "tanh"])
def test_lipschitz_network_is_a_contraction(activation: Callable[[], torch.nn.Module]) -> None:
    """Difference quotients of a network with large weights never exceed its bound c^L (L = 3 layers)."""
    net = LipschitzMLP(4, (32, 32), 0.9, activation).double()
    with torch.no_grad():
        for linear in net.linears:
            linear.weight.mul_(20.0)
    net.power_iteration(500)
    x, y = torch.randn(2, 4096, 4, dtype=torch.float64).unbind(0)
    y = x + 0.01 * y  # nearby pairs probe the local slope
    ratio = (net(x) - net(y)).norm(dim=-1) / (x - y).norm(dim=-1)
    assert ratio.max() <= 0.9**3 + 1e-12


def test_context_enters_without_changing_the_lipschitz_constant() -> None:
    """The context shifts the network's output; its Jacobian in x is the same function of the pre-activations."""
    net = LipschitzMLP(3, (8,), 0.9, torch.nn.Tanh, context_features=2).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    context = torch.randn(5, 2, dtype=torch.float64)
    assert (net(x, context) - net(x, torch.zeros_like(context))).abs().max() > 0
    with pytest.raises(ValueError, match="context"):
        net(x)


# -- log-det estimators ------------------------------------------------------------------------------------------


@pytest.fixture
def block_setup() -> tuple[LipschitzMLP, Tensor, Tensor]:
    """A strong network, one test point repeated ``ROWS`` times, and the exact log-det at the point."""
    net = strong_network(activation=torch.nn.Tanh)
    x = 0.1 * torch.randn(1, 3, dtype=torch.float64).expand(ROWS, 3).clone()
    exact = exact_log_det(net.linearize(x[:1]))
    # near 0, tanh' = 1: the Jacobian's eigenvalues reach 0.35 and the series' higher terms matter (the
    # roulette without its reweighting is off by 9 standard errors here)
    assert exact.abs() > 0.5, "the test point's log-det is too small to test against"
    return net, x, exact[0]


@pytest.mark.parametrize("activation", [LipSwish, torch.nn.ELU, torch.nn.Tanh], ids=["lipswish", "elu", "tanh"])
def test_linearization_matches_autograd(activation: Callable[[], torch.nn.Module]) -> None:
    """The Jacobians and vector-Jacobian products built from weights and activation slopes equal autograd's, with
    a context, and the exact log-det is slogdet(I + J)."""
    net = LipschitzMLP(3, (8, 8), 0.9, activation, context_features=2).double()
    x, context = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    linearization = net.linearize(x, context)
    assert_close(linearization.value, net(x, context))
    autograd = torch.func.vmap(torch.func.jacrev(net))(x, context)
    assert_close(linearization.jacobian(), autograd)
    u = torch.randn(5, 3, dtype=torch.float64)
    assert_close(linearization.vjp(u), torch.einsum("ni,nij->nj", u, autograd))
    assert_close(exact_log_det(linearization), torch.linalg.slogdet(torch.eye(3) + autograd).logabsdet)


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_hutchinson_series_is_unbiased_for_the_truncated_series(
    block_setup: tuple[LipschitzMLP, Tensor, Tensor], noise: str
) -> None:
    """i-ResNet's estimator: the mean equals the truncated series with exact traces (its only bias is truncation)."""
    net, x, _ = block_setup
    truncated = exact_series(net.linearize(x[:1]).jacobian(), 4)[0]
    with torch.no_grad():
        draws = torch.stack(
            [stochastic_log_det(net.linearize(x), series_weights(4), noise).mean() for _ in range(DRAWS)]
        )
    assert_unbiased(draws, truncated, f"series ({noise})")


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_russian_roulette_log_det_is_unbiased(block_setup: tuple[LipschitzMLP, Tensor, Tensor], noise: str) -> None:
    """Residual Flows' estimator: the mean equals the exact log-det (the infinite series)."""
    net, x, exact = block_setup
    with torch.no_grad():
        draws = torch.stack(
            [stochastic_log_det(net.linearize(x), roulette_weights(1, 0.5), noise).mean() for _ in range(DRAWS)]
        )
    assert_unbiased(draws, exact, f"roulette ({noise})")


def projected_gradient(net: LipschitzMLP, log_det: Tensor, directions: Tensor) -> Tensor:
    """The gradients of the mean log-det with respect to all parameters, projected on ``directions``."""
    gradient = torch.autograd.grad(log_det.mean(), list(net.parameters()), materialize_grads=True)
    return directions @ torch.cat([g.flatten() for g in gradient])


@pytest.mark.parametrize("neumann", [True, False], ids=["neumann", "backprop"])
def test_russian_roulette_gradient_is_unbiased(block_setup: tuple[LipschitzMLP, Tensor, Tensor], neumann: bool) -> None:
    """The gradient estimates (Neumann series or backpropagation through the roulette) are unbiased: along three
    fixed directions in parameter space, their mean equals the exact log-det's gradient."""
    net, x, _ = block_setup
    size = sum(p.numel() for p in net.parameters())
    directions = torch.randn(3, size, dtype=torch.float64)
    exact = projected_gradient(net, exact_log_det(net.linearize(x[:1])), directions)
    draws = torch.stack(
        [
            projected_gradient(
                net, stochastic_log_det(net.linearize(x), roulette_weights(2, 0.5), "gaussian", neumann), directions
            )
            for _ in range(DRAWS)
        ]
    )
    for i in range(3):
        assert_unbiased(draws[:, i], exact[i], f"gradient along direction {i}")


def test_neumann_gradient_has_the_value_of_the_plain_estimate() -> None:
    """With the same probes and terms, the Neumann variant returns the same log-det value as backpropagation."""
    net = strong_network()
    x = torch.randn(8, 3, dtype=torch.float64)
    weights = roulette_weights(2, 0.5, torch.Generator().manual_seed(3))
    torch.manual_seed(5)
    plain = stochastic_log_det(net.linearize(x), weights, "gaussian", False)
    torch.manual_seed(5)
    neumann = stochastic_log_det(net.linearize(x), weights, "gaussian", True)
    assert_close(neumann, plain)


def test_roulette_weights_are_inverse_survival_probabilities() -> None:
    """Term k is drawn with probability P(n >= k) = (1 - p)^(k - exact) and then weighted by its inverse, so each
    term's mean weight is 1; the first ``exact`` terms always come with weight 1."""
    generator = torch.Generator().manual_seed(0)
    draws = [roulette_weights(2, 0.4, generator) for _ in range(20000)]
    assert all(w[:2] == [1.0, 1.0] for w in draws)
    for k in range(3, 7):
        survival = sum(len(w) >= k for w in draws) / len(draws)
        assert abs(survival - 0.6 ** (k - 2)) < 0.02
        assert abs(sum(w[k - 1] for w in draws if len(w) >= k) / len(draws) - 1.0) < 0.1


# -- the fixed-point inverse ---------------------------------------------------------------------------------------


def test_implicit_backward_matches_the_dense_newton_step() -> None:
    """Without dense Jacobians, the backward pass's fixed-point solve gives the gradients of the dense path (the
    implicit function's), with respect to the targets and the network's parameters."""
    net = strong_network()
    y = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(6, 3, dtype=torch.float64)
    results = []
    for dense in (True, False):
        jacobian = (lambda x: net.linearize(x).jacobian()) if dense else None
        x = contractive_inverse(lambda x: net(x, None), y, jacobian=jacobian)
        results.append((x, *torch.autograd.grad((x * weights).sum(), [y, *net.parameters()])))
    for dense_result, implicit_result in zip(*results, strict=True):
        assert_close(implicit_result, dense_result, rtol=1e-9, atol=1e-10)
    assert_close(results[0][0] + net(results[0][0]), y, rtol=1e-10, atol=1e-10)


def test_contractive_inverse_refuses_a_non_contraction_and_non_finite_targets() -> None:
    with pytest.raises(RuntimeError, match="contraction"):
        contractive_inverse(lambda x: -1.5 * x, torch.ones(2, 3), max_iter=50)
    with pytest.raises(ValueError, match="finite"):
        contractive_inverse(lambda x: 0.5 * x, torch.tensor([[float("nan"), 0.0]]))


# -- the block and the presets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("activation", "relu", "unknown activation"),
        ("log_det", "hutchinson", "unknown log_det"),
        ("noise", "uniform", "unknown noise"),
        ("gradient", "adjoint", "unknown gradient"),
        ("lipschitz", 1.0, "lipschitz"),
        ("roulette_probability", 0.0, "roulette_probability"),
        ("series_terms", 0, "series_terms"),
        ("exact_terms", 0, "exact_terms"),
        ("power_iterations", -1, "power_iterations"),
    ],
)
def test_block_options_are_checked(option: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResidualTransform(3, **{option: value})


def test_block_refuses_non_vector_events_and_missing_context() -> None:
    with pytest.raises(ValueError, match="vectors"):
        ResidualTransform((2, 3))
    with pytest.raises(ValueError, match="context"):
        ResidualTransform(3, context_shape=2)(torch.randn(4, 3))


@pytest.mark.parametrize("method", ["series", "roulette"])
def test_stochastic_blocks_invert_exactly(method: str) -> None:
    """The map itself is deterministic in every mode: the fixed-point inverse recovers the input, and its implicit
    backward pass (no dense Jacobians in these modes) gives the identity as the round trip's derivative."""
    block = ResidualTransform(3, hidden=(16,), log_det=method, gradient="neumann").double()
    x = torch.randn(64, 3, dtype=torch.float64, requires_grad=True)
    z, _ = block(x)
    back, _ = block.inverse(z)
    assert_close(back, x, rtol=1e-10, atol=1e-10)
    (gradient,) = torch.autograd.grad(back.sum(), x)
    assert_close(gradient, torch.ones_like(x), rtol=1e-8, atol=1e-8)


def test_power_iteration_runs_in_training_mode_only() -> None:
    block = ResidualTransform(3, hidden=(8,))
    u = block.net.linears[0].u.clone()
    with torch.no_grad():
        block.net.linears[0].weight.mul_(-1.0).add_(torch.randn_like(block.net.linears[0].weight))
    block.eval()(torch.randn(4, 3))
    assert torch.equal(block.net.linears[0].u, u)
    block.train()(torch.randn(4, 3))
    assert not torch.equal(block.net.linears[0].u, u)


def test_log_det_method_switches_and_restores() -> None:
    """``log_det_method`` makes a roulette model exact for an evaluation, deterministic, and restores it after."""
    flow = Flow(ResFlow(3, layers=2, hidden=(8,), log_det="roulette")).double()
    x = torch.randn(16, 3, dtype=torch.float64)
    with log_det_method(flow, "exact"):
        first, second = flow.log_prob(x), flow.log_prob(x)
    assert torch.equal(first, second)
    assert all(block.log_det == "roulette" for block in flow.modules() if isinstance(block, ResidualTransform))
    with pytest.raises(ValueError, match="log-det method"), log_det_method(flow, "approximate"):
        pass


@pytest.mark.parametrize("preset", [InvertibleResNet, ResFlow])
def test_auto_log_det_is_exact_in_low_dimensions(preset: type) -> None:
    methods = {
        features: {
            b.log_det for b in preset(features, layers=2, hidden=(4,)).modules() if isinstance(b, ResidualTransform)
        }
        for features in (16, 17)
    }
    assert methods[16] == {"exact"}
    assert methods[17] == {"series" if preset is InvertibleResNet else "roulette"}
    with pytest.raises(ValueError, match="log_det"):
        preset(3, log_det="approximate")


def test_saved_residual_flow_loads_with_its_spectral_state(tmp_path) -> None:
    """Saving and loading keeps the power iterations' vectors and LipSwish's beta: the loaded flow is the same."""
    flow = Flow(ResFlow(2, layers=2, hidden=(8,)))
    flow.fit(torch.randn(200, 2), steps=5, progress=False)
    flow.save(tmp_path / "flow.safetensors")
    loaded = load(tmp_path / "flow.safetensors")
    x = torch.randn(10, 2)
    assert_close(loaded.log_prob(x), flow.log_prob(x), rtol=0, atol=0)
