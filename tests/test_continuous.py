"""Continuous flows (FFJORD): the trace estimator, the adjoint method, RNODE penalties, solver options.

The universal suite (``tests/test_bijections.py``) checks the maps themselves: round trips, log-dets against the
autograd Jacobian, batch shapes, gradients, contexts. These tests check what is particular to continuous flows.
"""

from __future__ import annotations

import math

import pytest
import torch
from bijection_registry import perturb
from torch import Tensor, nn

from torchnf import FFJORD, Flow
from torchnf.bijections import ContinuousFlow, trace_method
from torchnf.bijections._ode import ODESolverError, solve
from torchnf.nn.dynamics import DynamicsNet
from torchnf.training import regularization_loss

D = 3
TOLERANCE = 1e-9

pytestmark = pytest.mark.usefixtures("one_thread")  # many small solver steps: threads only add synchronization


def flow(context_shape: tuple[int, ...] | None = None, seed: int = 0, **options: object) -> ContinuousFlow:
    """A perturbed (non-identity) float64 continuous flow in evaluation mode."""
    torch.manual_seed(seed)
    settings: dict[str, object] = {"hidden": (16, 16), "rtol": TOLERANCE, "atol": TOLERANCE, "time": 1.5}
    layer = ContinuousFlow(D, context_shape=context_shape, **{**settings, **options}).double()
    perturb(layer, seed)
    return layer.eval()


class Linear(nn.Module):
    """The dynamics f(z, t) = a z: z(t) = x e^{at}, so every integral has a closed form."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))

    def forward(self, t: Tensor, z: Tensor, context: Tensor | None = None) -> Tensor:
        return self.a * z


# -- the trace ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_log_det_and_its_gradient_are_unbiased(noise: str) -> None:
    """At a fixed point, the mean of many Hutchinson log-dets (one noise draw per batch row) is within 3 standard
    errors of the exact log-det, and so is the mean gradient with respect to a parameter."""
    layer = flow(trace="exact", noise=noise, rtol=1e-6, atol=1e-6)  # solver errors far below the standard errors
    x = torch.randn(D, dtype=torch.float64)
    parameter = layer.dynamics.layers[0].linear.weight
    exact = layer(x)[1]
    (exact_gradient,) = torch.autograd.grad(exact, parameter)
    layer.trace = "hutchinson"
    groups, per_group = 20, 100
    torch.manual_seed(1)
    estimates = layer(x.expand(groups * per_group, D))[1]
    assert estimates.std() > 1e-3, "the estimates do not vary: no noise was drawn"
    mean, standard_error = estimates.mean(), estimates.std() / math.sqrt(estimates.numel())
    assert (mean - exact).abs() < 3 * standard_error
    # gradients of group means: their mean is the overall mean gradient, their spread gives its standard error
    grouped = estimates.reshape(groups, per_group).mean(-1)
    gradients = torch.stack([torch.autograd.grad(g, parameter, retain_graph=True)[0] for g in grouped])
    gradient_error = (gradients.mean(0) - exact_gradient).abs()
    assert (gradient_error < 3 * gradients.std(0) / math.sqrt(groups) + 1e-9).all()


def test_rademacher_noise_has_less_variance_than_gaussian() -> None:
    """For the quadratic form eps^T A eps, Rademacher noise has variance 2 sum_{i != j} S_ij^2 <= Gaussian's
    2 ||S||_F^2 (S the symmetric part of A)."""
    variances = {}
    for noise in ("rademacher", "gaussian"):
        layer = flow(trace="hutchinson", noise=noise)
        torch.manual_seed(2)
        with torch.no_grad():
            variances[noise] = float(layer(torch.ones(1000, D, dtype=torch.float64))[1].var())
    assert variances["rademacher"] < variances["gaussian"]


def test_trace_method_switches_every_block_and_restores() -> None:
    model = FFJORD(D, layers=2, hidden=(8,), trace="hutchinson")
    perturb(model)
    x = torch.randn(4, D)
    assert not torch.equal(model(x)[1], model(x)[1])  # Hutchinson: random
    with trace_method(model, "exact"):
        assert all(block.trace == "exact" for block in model.bijections)
        first, second = model(x)[1], model(x)[1]
        torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert all(block.trace == "hutchinson" for block in model.bijections)
    with pytest.raises(ValueError, match="trace"):
        trace_method(model, "brute").__enter__()


def test_linear_dynamics_have_closed_form_log_det_and_penalties() -> None:
    """For f = a z over [0, T]: log-det a D T, kinetic energy a |x|^2 (e^{2aT} - 1) / 2, Jacobian term a^2 D T."""
    a, time = 0.3, 1.5
    for trace in ("exact", "hutchinson"):
        layer = ContinuousFlow(
            D, Linear(a), time=time, rtol=1e-10, atol=1e-10, trace=trace, kinetic_energy=1.0, jacobian_norm=1.0
        ).double()
        x = torch.randn(4, D, dtype=torch.float64)
        z, log_det = layer.train()(x)
        torch.testing.assert_close(z, x * math.exp(a * time))
        torch.testing.assert_close(log_det, torch.full((4,), a * D * time, dtype=torch.float64))
        kinetic = (a * x.square().sum(-1) * math.expm1(2 * a * time) / 2).mean()
        if trace == "exact":  # with Hutchinson the Frobenius term is an estimate (exact for Rademacher: J = aI)
            torch.testing.assert_close(layer.regularization, kinetic + a**2 * D * time)


# -- the adjoint method -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("regularize", [False, True], ids=["plain", "rnode"])
def test_adjoint_matches_backpropagation(regularize: bool) -> None:
    """The adjoint method gives the same outputs and gradients (parameters, input, context) as backpropagation
    through the solver, to the solver tolerance."""
    weights = {"kinetic_energy": 0.1, "jacobian_norm": 0.1} if regularize else {}
    layer = flow((2,), trainable_time=True, **weights).train(regularize)
    x, context = torch.randn(8, D, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    results = []
    for adjoint in (False, True):
        layer.adjoint = adjoint
        inputs = [x.clone().requires_grad_(), context.clone().requires_grad_()]
        z, log_det = layer(*inputs)
        loss = z.square().sum() + log_det.sum() + (layer.regularization if regularize else 0.0)
        layer.regularization = None
        gradients = torch.autograd.grad(loss, [*inputs, *layer.parameters()])
        results.append((z, log_det, gradients))
    (z, log_det, gradients), (z_adj, log_det_adj, gradients_adj) = results
    torch.testing.assert_close(z_adj, z, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(log_det_adj, log_det, rtol=1e-7, atol=1e-7)
    for g, g_adj in zip(gradients, gradients_adj, strict=True):
        torch.testing.assert_close(g_adj, g, rtol=1e-6, atol=1e-6)


# -- RNODE -------------------------------------------------------------------------------------------------------


def test_penalties_are_recorded_in_training_mode_only() -> None:
    layer = flow(kinetic_energy=0.5, jacobian_norm=0.5)
    x = torch.randn(16, D, dtype=torch.float64)
    layer(x)
    assert layer.regularization is None
    for direction in (layer.forward, layer.inverse):
        layer.train()
        layer.regularization = None
        direction(x)
        assert layer.regularization is not None and layer.regularization.dim() == 0
        assert layer.regularization > 0
    unregularized = flow().train()
    unregularized(x)
    assert unregularized.regularization is None


def test_penalties_do_not_change_the_map() -> None:
    """The penalty states are not error-controlled, so training-mode outputs equal evaluation-mode ones."""
    layer = flow(kinetic_energy=1.0, jacobian_norm=1.0)
    x = torch.randn(16, D, dtype=torch.float64)
    z, log_det = layer(x)
    z_train, log_det_train = layer.train()(x)
    torch.testing.assert_close(z_train, z, rtol=0, atol=0)
    torch.testing.assert_close(log_det_train, log_det, rtol=0, atol=0)


def test_fit_with_penalties_runs_and_clears_them() -> None:
    torch.manual_seed(0)
    model = Flow(FFJORD(2, hidden=(16, 16), kinetic_energy=0.01, jacobian_norm=0.01))
    history = model.fit(torch.randn(256, 2) * torch.tensor([2.0, 0.5]), steps=5, batch_size=64, progress=False)
    assert history.step[-1] == 5 and all(math.isfinite(v) for v in history.train_loss)
    assert regularization_loss(model) == 0.0


# -- solver options, time, context --------------------------------------------------------------------------------


def test_last_nfe_counts_evaluations() -> None:
    layer = flow(solver="rk4", steps=10)
    layer(torch.randn(4, D, dtype=torch.float64))
    assert layer.last_nfe == 40
    tight, loose = flow(), flow(rtol=1e-4, atol=1e-4)
    x = torch.randn(4, D, dtype=torch.float64)
    tight(x), loose(x)
    assert 0 < loose.last_nfe < tight.last_nfe
    preset = FFJORD(D, layers=2, hidden=(8,))
    preset(torch.randn(4, D))
    assert preset.last_nfe == sum(block.last_nfe for block in preset.bijections) > 0


def test_float32_floors_the_tolerance() -> None:
    """A float64 tolerance asked of a float32 solve is raised to what float32 resolves, so it stays cheap."""
    layer = flow().float()
    z, _ = layer(torch.randn(16, D))
    assert z.dtype == torch.float32 and layer.last_nfe < 200


def test_too_many_steps_raise() -> None:
    with pytest.raises(ODESolverError, match="max_steps"):
        flow(max_steps=2)(torch.randn(4, D, dtype=torch.float64))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"solver": "rk45"}, "solver 'rk45'.*dopri5"),
        ({"trace": "brute"}, "trace 'brute'.*hutchinson"),
        ({"noise": "uniform"}, "noise 'uniform'.*rademacher"),
        ({"rtol": 0.0}, "rtol"),
        ({"atol": -1e-5}, "atol"),
        ({"time": 0.0}, "time"),
        ({"kinetic_energy": -1.0}, "kinetic_energy"),
        ({"jacobian_norm": float("nan")}, "jacobian_norm"),
        ({"steps": 0}, "steps"),
        ({"activation": "relu"}, "not smooth"),
    ],
)
def test_invalid_options_raise(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ContinuousFlow(D, **options)  # type: ignore[arg-type]


def test_preset_options() -> None:
    assert FFJORD(2).bijections[0].trace == "exact"
    assert FFJORD(20).bijections[0].trace == "hutchinson"
    assert len(FFJORD(2, layers=3, normalization="actnorm")) == 6
    with pytest.raises(ValueError, match="layers"):
        FFJORD(2, layers=0)
    with pytest.raises(ValueError, match="vectors"):
        FFJORD((2, 2))


def test_learnable_time_gets_a_gradient() -> None:
    layer = flow(trainable_time=True)
    assert "raw_time" in dict(layer.named_parameters())
    z, log_det = layer(torch.randn(8, D, dtype=torch.float64))
    (z.sum() + log_det.sum()).backward()
    assert layer.raw_time.grad is not None and layer.raw_time.grad.abs() > 0
    fixed = flow(time=2.0)
    assert "raw_time" not in dict(fixed.named_parameters())
    torch.testing.assert_close(fixed.time, torch.tensor(2.0, dtype=torch.float64))


def test_context_changes_the_map() -> None:
    layer = flow((2,))
    x = torch.randn(8, D, dtype=torch.float64)
    first, second = (layer(x, torch.randn(8, 2, dtype=torch.float64))[0] for _ in range(2))
    assert (first - second).abs().max() > 1e-3
    with pytest.raises(ValueError, match="context"):
        layer(x)
    with pytest.raises(ValueError, match="context"):
        DynamicsNet(D, 2)(torch.tensor(0.0), x)


def test_fixed_step_solvers_converge() -> None:
    """Fixed-step solvers approach the adaptive solution at their order: error ratios near 2^p when h halves."""
    layer = flow(rtol=1e-12, atol=1e-12)
    x = torch.randn(8, D, dtype=torch.float64)
    with torch.no_grad():
        reference = layer(x)[0]
    for solver, order in (("euler", 1), ("midpoint", 2), ("rk4", 4)):
        layer.solver = solver
        errors = []
        for steps in (8, 16):
            layer.steps = steps
            with torch.no_grad():
                errors.append(float((layer(x)[0] - reference).abs().max()))
        assert 2 ** (order - 0.5) < errors[0] / errors[1] < 2 ** (order + 0.5), (solver, errors)


def test_solver_integrates_backwards_and_handles_empty_batches() -> None:
    y0 = torch.ones(2, 1, dtype=torch.float64)
    end, _ = solve(lambda s, y: -y, y0, 1.0, 0.0, rtol=1e-10, atol=1e-10)  # y(0) = y(1) e
    torch.testing.assert_close(end, y0 * math.e)
    empty = flow()(torch.randn(0, D, dtype=torch.float64))
    assert empty[0].shape == (0, D) and empty[1].shape == (0,)
