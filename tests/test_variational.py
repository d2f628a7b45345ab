"""Variational fitting (``Flow.fit_variational``): the objective, annealing, early stopping, the divergence guard,
reproducibility and validation. Fits here are tiny; fits to the built-in targets are in ``test_quality_sampling.py``.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

import torchnf
from torchnf import Flow, RealNVP
from torchnf.dequantization import UniformDequantization
from torchnf.optimization import DivergenceGuard

LOG_Z = 1.7  # the targets' normalizer: exp(log_target) integrates to exp(LOG_Z)
MEAN, SCALE = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 2.0])


def gaussian_target(x: Tensor) -> Tensor:
    """N(MEAN, diag(SCALE²)) times exp(LOG_Z)."""
    standard = (x - MEAN.to(x)) / SCALE.to(x)
    log_norm = SCALE.log().sum() + math.log(2 * math.pi)
    return -0.5 * standard.square().sum(-1) - log_norm.to(x) + LOG_Z


def tiny_flow(seed: int = 0) -> Flow:
    torch.manual_seed(seed)
    return Flow(RealNVP(2, layers=4, hidden=(32,)))


def test_fit_recovers_a_gaussian_and_its_normalizer() -> None:
    """The ELBO climbs to log Z (a perfect fit closes the bound) and the samples have the target's moments."""
    flow = tiny_flow()
    history = flow.fit_variational(gaussian_target, steps=1500, lr=3e-3, seed=0, progress=False)
    assert history.elbo[-1] > history.elbo[0]
    assert LOG_Z - 0.05 < history.elbo[-1] <= LOG_Z + 0.02  # a lower bound, up to Monte Carlo error
    x = flow.sample(20_000)
    assert bool(((x.mean(0) - MEAN).abs() < 0.05 * SCALE).all())  # within 5% of a standard deviation
    assert bool(((x.std(0) / SCALE - 1).abs() < 0.05).all())
    assert history.metrics["ess"][-1] > 0.9


def test_history_records_elbo_beta_and_ess_per_evaluation() -> None:
    flow = tiny_flow()
    history = flow.fit_variational(
        gaussian_target, steps=400, eval_every=50, annealing_steps=200, initial_beta=0.01, seed=0, progress=False
    )
    assert history.step == list(range(50, 401, 50))
    for name in ("elbo", "beta", "ess"):
        assert len(history.metrics[name]) == len(history.step)
    betas = history.metrics["beta"]
    assert betas[0] < 0.05 and all(a < b for a, b in itertools.pairwise(betas[:4]))
    assert betas[4:] == [1.0] * 4  # annealing ends at step 200
    assert history.val_loss == [-e for e in history.elbo]
    assert min(history.metrics["ess"]) > 0 and max(history.metrics["ess"]) <= 1
    assert history.best_step > 200  # weights from the annealing phase are not the best


def test_annealing_weights_are_never_kept_as_the_best() -> None:
    """During annealing the smoothed ELBO may look good, but only evaluations after it compete."""
    flow = tiny_flow()
    history = flow.fit_variational(gaussian_target, steps=300, eval_every=50, annealing_steps=250, progress=False)
    assert history.best_step == 300


def test_early_stopping_restores_the_best_weights() -> None:
    flow = tiny_flow()
    history = flow.fit_variational(
        gaussian_target, steps=5000, lr=3e-3, eval_every=20, patience=3, seed=0, progress=False
    )
    assert history.stop_reason.startswith("early stop")
    assert history.step[-1] < 5000
    best = history.step.index(history.best_step)
    assert history.val_loss[best] == min(history.val_loss)


def test_seed_reproduces_a_fit_without_touching_the_global_random_state() -> None:
    first, second = tiny_flow(), tiny_flow()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first.fit_variational(gaussian_target, steps=60, seed=7, progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)
    second.fit_variational(gaussian_target, steps=60, seed=7, progress=False)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_divergence_guard_skips_exploding_losses() -> None:
    """A target that now and then returns absurdly low values (a numerical blow-up) must not wreck the fit."""
    calls = 0

    def spiky_target(x: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        value = gaussian_target(x)
        return value - 1e9 if calls % 25 == 0 else value

    flow = tiny_flow()
    history = flow.fit_variational(spiky_target, steps=600, lr=3e-3, seed=0, progress=False)
    assert history.skipped_steps >= 600 // 25 - 2  # the first spikes come before the guard has a window
    assert not history.rollbacks
    assert all(torch.isfinite(p).all() for p in flow.parameters())
    assert history.elbo[-1] > LOG_Z - 0.3


def test_zero_density_samples_are_skipped_and_repeated_ones_roll_back() -> None:
    """-inf is a legal log-density (outside the support); steps that draw such points are skipped."""

    def half_plane(x: Tensor) -> Tensor:  # a flow over the plane puts about half its samples outside
        return torch.where(x[:, 0] > 0, gaussian_target(x), -math.inf)

    flow = tiny_flow()
    history = flow.fit_variational(half_plane, steps=200, max_nonfinite=5, seed=0, progress=False)
    assert len(history.rollbacks) == 3
    assert "persisted" in history.stop_reason
    assert all(torch.isfinite(p).all() for p in flow.parameters())


def test_divergence_guard_flags_only_far_jumps() -> None:
    guard = DivergenceGuard(10.0, window=40)
    for value in torch.linspace(5.0, 4.0, 40).tolist():
        assert not guard.diverged(value + 0.01 * math.sin(value * 100))
    assert guard.diverged(1e6)
    assert not guard.diverged(4.2)
    assert DivergenceGuard(None).diverged(1e30) is False
    with pytest.raises(ValueError, match="max_loss_jump"):
        DivergenceGuard(0.0)


def test_history_survives_saving(tmp_path: Path) -> None:
    flow = tiny_flow()
    flow.fit_variational(gaussian_target, steps=100, eval_every=50, seed=0, progress=False)
    flow.save(tmp_path / "vi.safetensors")
    loaded = torchnf.load(tmp_path / "vi.safetensors")
    assert loaded.history == flow.history
    assert len(loaded.history.elbo) == 2


def test_float64_flow_fits() -> None:
    flow = tiny_flow().double()
    history = flow.fit_variational(gaussian_target, steps=50, seed=0, progress=False)
    assert flow.sample(3).dtype == torch.float64
    assert math.isfinite(history.elbo[-1])


# -- bad input ---------------------------------------------------------------------------------------------------


def test_target_returning_nan_raises() -> None:
    with pytest.raises(ValueError, match="log_target returned nan"):
        tiny_flow().fit_variational(lambda x: x[:, 0] * math.nan, steps=5, progress=False)


def test_target_returning_plus_infinity_raises() -> None:
    with pytest.raises(ValueError, match="log_target returned inf"):
        tiny_flow().fit_variational(lambda x: x[:, 0] + math.inf, steps=5, progress=False)


@pytest.mark.parametrize(
    ("bad", "error"),
    [(lambda x: x, ValueError), (lambda x: x.sum(), ValueError), (lambda x: x[:, 0].tolist(), TypeError)],
)
def test_target_of_the_wrong_shape_raises(bad, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"log_target must return .*\(256,\)"):
        tiny_flow().fit_variational(bad, steps=5, progress=False)


def test_non_callable_target_raises() -> None:
    with pytest.raises(TypeError, match="log_target must be callable"):
        tiny_flow().fit_variational(3.0, steps=5)


def test_target_of_another_event_shape_raises() -> None:
    class Wide(torch.nn.Module):
        event_shape = torch.Size([3])

        def forward(self, x: Tensor) -> Tensor:
            return -x.square().sum(-1)

    with pytest.raises(ValueError, match=r"event_shape \(3,\) differs from the flow's event_shape \(2,\)"):
        tiny_flow().fit_variational(Wide(), steps=5)


def test_dequantized_and_conditional_flows_are_refused() -> None:
    dequantized = Flow(RealNVP(2), dequantization=UniformDequantization(2, levels=4))
    with pytest.raises(ValueError, match="dequantized"):
        dequantized.fit_variational(gaussian_target, steps=5)
    conditional = Flow(RealNVP(2, context_shape=3))
    with pytest.raises(ValueError, match="unconditional flow"):
        conditional.fit_variational(gaussian_target, steps=5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"steps": 0}, "steps must be a positive int"),
        ({"samples": 1.5}, "samples must be a positive int"),
        ({"annealing_steps": -1}, "annealing_steps must be a non-negative int"),
        ({"initial_beta": 0.0}, r"initial_beta must lie in \(0, 1\]"),
        ({"lr": -1.0}, "lr must be positive"),
        ({"optimizer": "sgd"}, "unknown optimizer"),
        ({"max_loss_jump": -2.0}, "max_loss_jump must be positive"),
    ],
)
def test_bad_options_raise(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_flow().fit_variational(gaussian_target, **options)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_end_to_end() -> None:
    """On CUDA: a target's buffers, the fit, the importance diagnostics and every sampler stay on the device, and a
    seeded run repeats exactly."""
    from torchnf.importance import diagnose
    from torchnf.mcmc import HMC, MALA, FlowMCMC, IndependentMetropolisHastings, NeuTra, sample
    from torchnf.targets import GaussianMixture

    target = GaussianMixture.two_modes(dim=2, separation=4.0).to("cuda")
    flow = tiny_flow().to("cuda")
    history = flow.fit_variational(target, steps=200, annealing_steps=50, seed=0, progress=False)
    assert math.isfinite(history.elbo[-1])
    report = diagnose(flow, target, n=2000)
    assert abs(report.log_normalizer) < 5 * report.log_normalizer_se + 0.05
    start = torch.zeros(8, 2, device="cuda")
    for sampler in (
        MALA(),
        HMC(leapfrog_steps=3),
        IndependentMetropolisHastings(flow),
        NeuTra(flow),
        FlowMCMC(flow, local_steps=2, refit=True, refit_steps=5),
    ):
        first = sample(target, sampler, chains=8, draws=20, warmup=10, initial=start, seed=1, progress=False)
        again = sample(target, sampler, chains=8, draws=20, warmup=10, initial=start, seed=1, progress=False)
        assert first.samples.device.type == "cuda"
        assert all(rate.device.type == "cuda" for rate in first.acceptance.values())
        if not isinstance(sampler, FlowMCMC):  # FlowMCMC refits its flow in place, so a second run differs
            assert torch.equal(first.samples, again.samples)
