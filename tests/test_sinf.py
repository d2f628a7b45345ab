"""SINF: the greedy fit, its hook in ``Flow.fit``, gradient fine-tuning, saving, and the fitting primitives."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import torchnf
from torchnf import SINF, DiagonalNormal, Flow, RealNVP
from torchnf.bijections import SlicedTransform
from torchnf.gaussianization import gaussianizing_knots, max_sliced_directions, sliced_wasserstein
from torchnf.training import evaluate


def bimodal(n: int = 600, seed: int = 0) -> torch.Tensor:
    """Two clusters along the diagonal of the plane, Gaussian across it: non-Gaussian along one direction only."""
    generator = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (n, 1), generator=generator) * 2 - 1
    along = 2.0 * signs + 0.3 * torch.randn(n, 1, generator=generator)
    across = torch.randn(n, 1, generator=generator)
    rotation = torch.tensor([[1.0, 1.0], [-1.0, 1.0]]) / math.sqrt(2)
    return torch.cat([along, across], dim=1) @ rotation


@pytest.fixture(scope="module")
def fitted() -> tuple[Flow, torch.Tensor, torchnf.History]:
    """A SINF flow fitted greedily on the bimodal set (its last 100 points are the validation data)."""
    x = bimodal(700)
    flow = Flow(SINF(2, max_layers=8))
    history = flow.fit(x[:600], validation_data=x[600:], seed=0, progress=False)
    return flow, x, history


def test_fit_grows_layers_greedily(fitted: tuple[Flow, torch.Tensor, torchnf.History]) -> None:
    """Flow.fit adds layers, records one entry per layer, keeps the best count and updates the config."""
    flow, _, history = fitted
    assert history.unit == "layer" and history.step == list(range(1, len(history.step) + 1))
    assert len(history.val_loss) == len(history.train_loss) == len(history.step)
    assert history.best_step == len(flow.bijection) >= 1
    assert flow.bijection.config["layers"] == len(flow.bijection)
    assert all(isinstance(layer, SlicedTransform) for layer in flow.bijection)
    assert history.stop_reason
    assert not flow.training


def test_fit_takes_no_gradient_step(fitted: tuple[Flow, torch.Tensor, torchnf.History]) -> None:
    """Greedy fitting never backpropagates through the flow."""
    flow, _, _ = fitted
    assert all(p.grad is None for p in flow.parameters())


def test_recorded_losses_are_in_raw_units(fitted: tuple[Flow, torch.Tensor, torchnf.History]) -> None:
    """The best validation loss is the flow's validation negative log-likelihood in the data's own units."""
    flow, x, history = fitted
    val = flow.check_data(x[600:])[0]
    assert evaluate(flow, val) == pytest.approx(history.best_val_loss, abs=1e-4)


def test_fit_beats_a_gaussian_on_held_out_data(fitted: tuple[Flow, torch.Tensor, torchnf.History]) -> None:
    """On two well-separated clusters a Gaussian is poor; SINF finds the direction that separates them."""
    flow, _, _ = fitted
    test = bimodal(1000, seed=1)
    gaussian = torch.distributions.MultivariateNormal(test.mean(0), torch.cov(test.T))
    with torch.no_grad():
        gain = float(flow.log_prob(test).mean() - gaussian.log_prob(test).mean())
    assert gain > 0.3


def test_save_and_load_round_trip(tmp_path: Path, fitted: tuple[Flow, torch.Tensor, torchnf.History]) -> None:
    """The fitted layer count travels in the config; densities and samples are identical after loading."""
    flow, x, _ = fitted
    flow.save(tmp_path / "sinf.safetensors")
    loaded = torchnf.load(tmp_path / "sinf.safetensors")
    assert len(loaded.bijection) == len(flow.bijection)
    assert torch.equal(loaded.log_prob(x), flow.log_prob(x))
    torch.manual_seed(0)
    expected = flow.sample(5)
    torch.manual_seed(0)
    assert torch.equal(loaded.sample(5), expected)
    assert loaded.history == flow.history


def test_gradient_fine_tuning_moves_the_splines_not_the_directions() -> None:
    """method='gradient' trains a greedily fitted SINF like any flow; its directions are fixed buffers."""
    x = bimodal(500)
    flow = Flow(SINF(2, max_layers=2, patience=2))
    flow.fit(x, seed=0, progress=False)
    directions = [layer.directions.clone() for layer in flow.bijection]
    knots = [layer.spline.x_log_widths.detach().clone() for layer in flow.bijection]
    history = flow.fit(x, method="gradient", steps=20, seed=0, progress=False)
    assert history.unit == "step" and history.step[-1] <= 20
    assert all(torch.equal(a, layer.directions) for a, layer in zip(directions, flow.bijection, strict=True))
    assert any(not torch.equal(k, layer.spline.x_log_widths) for k, layer in zip(knots, flow.bijection, strict=True))


def test_fitting_again_continues_from_the_current_layers() -> None:
    """A second greedy fit starts from the fitted stack instead of discarding it."""
    x = bimodal(500)
    flow = Flow(SINF(2, max_layers=1))
    flow.fit(x, validation_fraction=0, seed=0, progress=False)
    first = flow.bijection[0].directions.clone()
    flow.bijection.max_layers = 3
    flow.fit(x, validation_fraction=0, seed=0, progress=False)
    assert 1 <= len(flow.bijection) <= 3 and torch.equal(flow.bijection[0].directions, first)


def test_without_validation_data_the_training_likelihood_stops_the_growth() -> None:
    """With validation_fraction=0 the stack grows until a layer gains almost nothing, or to max_layers."""
    flow = Flow(SINF(2, max_layers=4))
    history = flow.fit(bimodal(400), validation_fraction=0, seed=0, progress=False)
    assert not history.val_loss and 1 <= len(flow.bijection) <= 4
    assert history.train_loss[len(flow.bijection) - 1] == min(history.train_loss)


@pytest.mark.parametrize(
    ("make_flow", "options", "message"),
    [
        (lambda: Flow(SINF(2)), {"steps": 10}, "fitted greedily"),
        (lambda: Flow(SINF(2)), {"epochs": 1}, "fitted greedily"),
        (lambda: Flow(SINF(2)), {"method": "gradient"}, "no trainable parameters"),
        (lambda: Flow(SINF(2), DiagonalNormal(2)), {}, "StandardNormal"),
        (lambda: Flow(RealNVP(2)), {"method": "greedy"}, "fit_greedy"),
        (lambda: Flow(RealNVP(2)), {"method": "newton"}, "unknown method"),
    ],
)
def test_impossible_fits_are_refused(make_flow: Callable[[], Flow], options: dict[str, object], message: str) -> None:
    """Options that cannot apply raise before anything is fitted."""
    with pytest.raises(ValueError, match=message):
        make_flow().fit(bimodal(100), progress=False, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"context_shape": 2}, "unconditional"),
        ({"layers": -1}, "layers"),
        ({"directions": 3}, "directions"),
        ({"knots": 4}, "knots"),
        ({"bandwidth": 0.0}, "bandwidth"),
        ({"max_layers": 0}, "max_layers"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SINF(2, **options)


def test_direction_search_finds_the_non_gaussian_direction() -> None:
    """For one direction, the search returns the axis along which the clusters lie (up to sign)."""
    x = bimodal(2000)
    x = (x - x.mean(0)) / x.std(0)
    direction = max_sliced_directions(x, 1, generator=torch.Generator().manual_seed(0))
    assert direction.shape == (2, 1)
    assert abs(float(direction[:, 0] @ torch.tensor([1.0, -1.0]))) / math.sqrt(2) > 0.99


def test_direction_search_returns_orthonormal_directions_of_larger_distance() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 6, generator=generator).pow(3)
    directions = max_sliced_directions(x, 4, generator=generator)
    assert torch.allclose(directions.T @ directions, torch.eye(4), atol=1e-6)
    start = torch.linalg.qr(torch.randn(6, 4, generator=torch.Generator().manual_seed(5))).Q
    assert sliced_wasserstein(x @ directions).sum() > sliced_wasserstein(x @ start).sum()


def test_gaussianizing_knots_of_normal_data_are_close_to_the_identity() -> None:
    """Normal data needs no Gaussianization: the knots lie near y = x with slopes near 1."""
    u = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    knot_x, knot_y, derivatives = gaussianizing_knots(u, 20)
    inner = (knot_x.abs() < 2.0)[0]
    assert (knot_y - knot_x)[0, inner].abs().max() < 0.1
    assert (derivatives[0, inner] - 1).abs().max() < 0.15


def test_gaussianizing_knots_handle_repeated_values_and_keep_identity_ends() -> None:
    """Ties (a column with few distinct values) still give strictly increasing knots; the ends are fixed points."""
    u = torch.cat([torch.zeros(50, 1), torch.ones(50, 1), torch.randn(5, 1)], dim=0).double()
    knot_x, knot_y, derivatives = gaussianizing_knots(u, 12)
    assert (knot_x.diff() > 0).all() and (knot_y.diff() > 0).all() and (derivatives > 0).all()
    assert torch.isfinite(torch.stack([knot_x, knot_y, derivatives])).all()
    assert torch.equal(knot_x[:, [0, -1]], knot_y[:, [0, -1]])
    assert torch.equal(derivatives[:, [0, -1]], torch.ones(1, 2, dtype=torch.float64))


def test_far_outliers_pass_through_a_fitted_stack(fitted: tuple[Flow, torch.Tensor, torchnf.History]) -> None:
    """Outside every layer's knots the map is the identity: a point at 1e6 keeps a finite, Gaussian-like density."""
    flow, _, _ = fitted
    far = torch.tensor([[1e6, -1e6]])
    with torch.no_grad():
        log_prob = flow.log_prob(far)
        z, log_det = flow.bijection(flow.standardization(far)[0])
    assert torch.isfinite(log_prob).all()
    assert torch.allclose(z, flow.standardization(far)[0]) and float(log_det) == 0.0
