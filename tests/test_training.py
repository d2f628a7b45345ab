"""Maximum-likelihood fitting (``Flow.fit`` / ``torchnf.fit``): budgets, validation, early stopping, the
non-finite guard, optimizers and schedules, reproducibility and data-dependent initialization.

Everything here uses tiny flows and at most a few hundred steps; the statistical quality of fits is in
``test_quality.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor

import torchnf
from torchnf import Flow, History, RealNVP
from torchnf.bijections import ActNorm

D = 2


def gaussian_data(n: int, seed: int = 0, mean: tuple[float, float] = (1.0, -2.0)) -> Tensor:
    """Correlated Gaussian points (correlation 0.8): a flow must learn a dependence, not just a scaling."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.tensor([[1.0, 0.0], [0.8, 0.6]])
    return torch.randn(n, D, generator=generator) @ mixing.T + torch.tensor(mean)


DATA = gaussian_data(1000)


def tiny_flow(seed: int = 0, **preset_options: Any) -> Flow:
    """A tiny RealNVP, built from a fixed seed so that two calls give identical weights."""
    torch.manual_seed(seed)
    options = {"layers": 2, "hidden": (16,), **preset_options}
    return Flow(RealNVP(D, **options))


def fit_quietly(flow: Flow, x: Any = DATA, context: Any = None, **options: Any) -> History:
    """``flow.fit`` with a fixed seed and no progress bar unless the options say otherwise."""
    return flow.fit(x, context, **{"seed": 0, "progress": False, **options})


def all_finite(flow: Flow) -> bool:
    """Whether every parameter of the flow is finite."""
    return all(bool(torch.isfinite(p).all()) for p in flow.parameters())


def same_weights(flow: Flow, other: Flow) -> bool:
    """Whether two flows have identical state (parameters and buffers)."""
    state, other_state = flow.state_dict(), other.state_dict()
    return state.keys() == other_state.keys() and all(torch.equal(state[k], other_state[k]) for k in state)


# -- the history and the budget ---------------------------------------------------------------------------------


def test_history_records_every_evaluation_and_the_loss_decreases() -> None:
    """The History has one entry per evaluation in each list, and both losses go down on Gaussian data."""
    history = fit_quietly(tiny_flow(), steps=200, eval_every=50)
    assert isinstance(history, History)
    assert history.step == [50, 100, 150, 200]
    assert len(history.train_loss) == len(history.val_loss) == len(history.lr) == 4
    assert history.lr == [1e-3] * 4
    assert history.train_loss[-1] < history.train_loss[0] - 0.1
    assert history.val_loss[-1] < history.val_loss[0] - 0.1
    assert history.best_step in history.step
    assert history.best_val_loss == min(history.val_loss)
    assert (history.skipped_steps, history.rollbacks) == (0, [])
    assert history.stop_reason == "reached the budget of 200 steps"


N_TRAIN = 900  # DATA less the default 10% validation split


@pytest.mark.parametrize(
    ("options", "last_step"),
    [
        pytest.param({"steps": 30}, 30, id="steps"),
        pytest.param({"epochs": 3, "batch_size": 100}, 3 * (N_TRAIN // 100), id="epochs"),
        pytest.param({"steps": 7, "epochs": 100}, 7, id="steps-win-over-epochs"),
    ],
)
def test_step_and_epoch_budgets_are_respected(options: dict[str, Any], last_step: int) -> None:
    """Training runs exactly to its budget: ``steps``, or ``epochs`` full passes, the smaller when both are given."""
    history = fit_quietly(tiny_flow(), patience=None, **options)
    assert history.step[-1] == last_step
    assert history.stop_reason == f"reached the budget of {last_step} steps"


# -- validation and early stopping ----------------------------------------------------------------------------


def test_early_stopping_keeps_the_best_weights() -> None:
    """On a tiny training set that a flow overfits, validation loss soon worsens: training stops ``patience``
    evaluations after the best one, and the weights kept are the best ones, not the last."""
    validation = gaussian_data(500, seed=1)
    flow = tiny_flow(layers=4, hidden=(64, 64))
    history = fit_quietly(flow, gaussian_data(50), validation_data=validation, steps=5000, eval_every=10, patience=2)

    assert history.stop_reason == "early stop: no better validation loss in 2 evaluations"
    assert history.step[-1] == history.best_step + 2 * 10 < 5000
    assert history.val_loss[-1] > history.best_val_loss
    with torch.no_grad():
        kept_loss = -flow.log_prob(validation).mean().item()
    assert kept_loss == pytest.approx(history.best_val_loss, rel=1e-5)


def test_explicit_validation_data_replaces_the_split() -> None:
    """Given ``validation_data``, the losses are measured on it and all of ``x`` is training data."""
    validation = gaussian_data(37, seed=1, mean=(4.0, 4.0))
    flow = tiny_flow()
    # one epoch of 500-point batches is two steps on all 1,000 points, but one step on a 90% split
    history = fit_quietly(flow, validation_data=validation, epochs=1, batch_size=500)
    assert history.step == [2]
    with torch.no_grad():
        assert history.val_loss == [pytest.approx(-flow.log_prob(validation).mean().item(), rel=1e-5)]


def test_no_validation_fraction_means_no_validation() -> None:
    """``validation_fraction=0`` trains on everything: no validation losses, no early stop, the last step kept."""
    history = fit_quietly(tiny_flow(), validation_fraction=0, steps=60, eval_every=20, patience=1)
    assert history.val_loss == []
    assert math.isnan(history.best_val_loss)
    assert history.best_step == 60
    assert history.stop_reason == "reached the budget of 60 steps"


def test_contexts_stay_aligned_with_their_points() -> None:
    """A conditional fit learns p(x | c): the true contexts explain the data far better than shuffled ones, so the
    split and the minibatches kept each context with its point."""
    generator = torch.Generator().manual_seed(0)
    context = torch.randn(1000, 3, generator=generator)
    x = 3 * context[:, :D] + 0.3 * torch.randn(1000, D, generator=generator)
    flow = tiny_flow(context_shape=3)
    fit_quietly(flow, x, context, steps=300)
    with torch.no_grad():
        aligned = flow.log_prob(x, context).mean()
        shuffled = flow.log_prob(x, context[torch.randperm(1000, generator=generator)]).mean()
    assert aligned > shuffled + 3.0


# -- the non-finite guard -------------------------------------------------------------------------------------

POISONS: dict[str, Callable[[Tensor], Tensor]] = {
    "nan-loss": lambda log_prob: log_prob + math.nan,
    "inf-loss": lambda log_prob: log_prob - math.inf,
    # a finite loss whose gradient is NaN: d sqrt(u)/du is infinite at u = 0, and 0 * inf = NaN
    "nan-gradient": lambda log_prob: log_prob + 0 * (log_prob - log_prob).sqrt(),
}


class PoisonedLogProb:
    """Stands in for ``flow.unchecked_log_prob``, poisoning the training steps (calls with autograd on) whose
    1-based number is in ``bad_steps``; evaluations and initialization (no autograd) pass through."""

    def __init__(self, flow: Flow, poison: Callable[[Tensor], Tensor], bad_steps: Callable[[int], bool]) -> None:
        self.log_prob, self.poison, self.bad_steps = flow.unchecked_log_prob, poison, bad_steps
        self.step = 0

    def __call__(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        log_prob = self.log_prob(x, context)
        if not torch.is_grad_enabled():
            return log_prob
        self.step += 1
        return self.poison(log_prob) if self.bad_steps(self.step) else log_prob


@dataclass
class GuardCase:
    """Which steps are poisoned (with ``max_nonfinite=5``, lr 1e-3, 50 steps) and what the guard must do."""

    bad_steps: Callable[[int], bool]
    rollbacks: list[int]
    final_lr: float
    last_step: int = 50
    stop_reason: str = "reached the budget of 50 steps"


GUARD_CASES = {
    # isolated failures are skipped, nothing else
    "isolated": GuardCase(lambda step: step in (5, 9, 13), rollbacks=[], final_lr=1e-3),
    # two runs of five consecutive failures: restore and halve the rate twice
    "two-runs": GuardCase(lambda step: 20 <= step < 30, rollbacks=[24, 29], final_lr=2.5e-4),
    # failures that never end: give up after the third rollback
    "persistent": GuardCase(
        lambda step: step >= 20,
        rollbacks=[24, 29, 34],
        final_lr=2.5e-4,  # the rate last recorded, at step 30
        last_step=34,
        stop_reason="non-finite losses persisted after 3 rollbacks",
    ),
}


@pytest.mark.parametrize("poison", POISONS.values(), ids=POISONS.keys())
@pytest.mark.parametrize("case", GUARD_CASES.values(), ids=GUARD_CASES.keys())
def test_non_finite_steps_are_skipped_and_rolled_back(poison: Callable[[Tensor], Tensor], case: GuardCase) -> None:
    """Steps with a non-finite loss or gradient are skipped; ``max_nonfinite`` of them in a row restore the last
    good weights and halve the learning rate; three rollbacks end training; the weights stay finite throughout."""
    flow = tiny_flow()
    flow.unchecked_log_prob = PoisonedLogProb(flow, poison, case.bad_steps)  # type: ignore[method-assign]
    history = fit_quietly(flow, validation_fraction=0, steps=50, eval_every=10, max_nonfinite=5)

    assert history.skipped_steps == sum(map(case.bad_steps, range(1, case.last_step + 1)))
    assert history.rollbacks == case.rollbacks
    assert history.lr[-1] == pytest.approx(case.final_lr)
    assert history.stop_reason == case.stop_reason
    assert all_finite(flow)


# -- optimizers, schedules and clipping -----------------------------------------------------------------------

OPTION_SETS = {
    "clip-0.1": {"max_grad_norm": 0.1},
    "no-clipping": {"max_grad_norm": None},
    "adamw": {"optimizer": "adamw", "weight_decay": 1e-2},
    "callable-optimizer": {"optimizer": lambda params: torch.optim.SGD(params, lr=1e-2, momentum=0.9)},
    "cosine": {"lr_schedule": "cosine"},
    "plateau": {"lr_schedule": "plateau"},
    "callable-schedule": {"lr_schedule": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=10)},
}


@pytest.mark.parametrize("options", OPTION_SETS.values(), ids=OPTION_SETS.keys())
def test_optimizer_schedule_and_clipping_options_run(options: dict[str, Any]) -> None:
    """Each optimizer, schedule and clipping option trains to its budget with finite losses and weights."""
    flow = tiny_flow()
    history = fit_quietly(flow, steps=40, eval_every=10, **options)
    assert history.step[-1] == 40
    assert all(math.isfinite(loss) for loss in history.train_loss + history.val_loss)
    assert history.skipped_steps == 0
    assert all_finite(flow)


@pytest.mark.parametrize(
    ("options", "expected_lr"),
    [
        pytest.param(
            {"lr_schedule": "cosine"}, [1e-3 * (1 + math.cos(math.pi * k / 4)) / 2 for k in (1, 2, 3, 4)], id="cosine"
        ),
        pytest.param(
            {"lr_schedule": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)},
            [1e-3 * 0.5**k for k in (1, 2, 3, 4)],
            id="callable-schedule",
        ),
        pytest.param(
            {"optimizer": lambda params: torch.optim.SGD(params, lr=0.05)}, [0.05] * 4, id="callable-optimizer"
        ),
    ],
)
def test_schedules_set_the_learning_rate(options: dict[str, Any], expected_lr: list[float]) -> None:
    """Schedules step once per optimizer step (cosine reaches zero at the budget), and a callable optimizer's own
    rate is the one used."""
    history = fit_quietly(tiny_flow(), steps=40, eval_every=10, **options)
    assert history.lr == pytest.approx(expected_lr, abs=1e-12)


def test_gradient_clipping_bounds_the_norm_the_optimizer_sees() -> None:
    """With ``max_grad_norm``, every step's gradient norm is at most the bound; without it, it is not."""

    def recording_adam(norms: list[float]) -> Callable[[list[Tensor]], torch.optim.Optimizer]:
        class RecordingAdam(torch.optim.Adam):
            def step(self, closure: Any = None) -> Any:
                grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
                norms.append(math.sqrt(sum(float(g.square().sum()) for g in grads)))
                return super().step(closure)

        return lambda params: RecordingAdam(params, lr=1e-3)

    bound = 1e-2
    clipped: list[float] = []
    unclipped: list[float] = []
    fit_quietly(tiny_flow(), steps=20, max_grad_norm=bound, optimizer=recording_adam(clipped))
    fit_quietly(tiny_flow(), steps=20, max_grad_norm=None, optimizer=recording_adam(unclipped))
    assert len(clipped) == len(unclipped) == 20
    assert max(clipped) <= bound * (1 + 1e-5)
    assert max(unclipped) > bound


# -- reproducibility, modes and output ------------------------------------------------------------------------


def test_seed_makes_fits_reproducible() -> None:
    """From identical initial weights, the same ``seed`` gives identical histories and weights; another seed
    (another split and minibatch order) does not."""

    def fit_with(seed: int) -> tuple[History, Flow]:
        flow = tiny_flow()
        return fit_quietly(flow, steps=60, eval_every=20, seed=seed), flow

    (history, flow), (history_again, flow_again), (other_history, _) = map(fit_with, (1, 1, 2))
    assert history == history_again
    assert same_weights(flow, flow_again)
    assert other_history != history


def test_unseeded_fit_respects_torch_manual_seed() -> None:
    """Without ``seed=``, a fit is as reproducible as the global RNG: after ``torch.manual_seed``, two identical
    runs give the same history, and the global random stream after them is the same."""

    def run() -> tuple[History, Tensor]:
        flow = tiny_flow()  # calls torch.manual_seed
        history = flow.fit(DATA, steps=20, progress=False)
        return history, torch.rand(3)

    (history, after), (history_again, after_again) = run(), run()
    assert history == history_again
    assert torch.equal(after, after_again)


def test_torchnf_fit_is_flow_fit() -> None:
    """The function ``torchnf.fit(flow, x)`` and the method ``flow.fit(x)`` do the same thing."""
    by_method, by_function = tiny_flow(), tiny_flow()
    options = {"steps": 30, "eval_every": 10, "seed": 0, "progress": False}
    assert by_method.fit(DATA, **options) == torchnf.fit(by_function, DATA, **options)
    assert same_weights(by_method, by_function)


@pytest.mark.parametrize("progress", [False, None, True])
def test_progress_bar_and_eval_mode(progress: bool | None, capsys: pytest.CaptureFixture[str]) -> None:
    """``progress=False`` prints nothing (nor does ``None`` when the output is not a terminal); ``True`` draws a
    bar on stderr. Either way, the flow is left in evaluation mode."""
    flow = tiny_flow()
    fit_quietly(flow, steps=20, progress=progress)
    assert not any(module.training for module in flow.modules())
    out, err = capsys.readouterr()
    assert out == ""
    assert ("20/20" in err) if progress else (err == "")


# -- data-dependent initialization ----------------------------------------------------------------------------


@pytest.mark.parametrize("points_seen_before_fit", [None, 0, 1], ids=["fresh", "after-empty", "after-one-point"])
def test_fit_data_initializes_actnorm(points_seen_before_fit: int | None) -> None:
    """``fit`` initializes every ActNorm from the training data (the first one then standardizes it), even after
    a training-mode ``log_prob`` of too few points to initialize from."""
    scale, shift = torch.tensor([2.0, 0.5]), torch.tensor([5.0, -3.0])
    x = torch.randn(500, D, generator=torch.Generator().manual_seed(0)) * scale + shift
    flow = tiny_flow()
    actnorms = [m for m in flow.modules() if isinstance(m, ActNorm)]
    if points_seen_before_fit is not None:
        flow.log_prob(x[:points_seen_before_fit])
    assert not any(bool(m.initialized) for m in actnorms)

    fit_quietly(flow, x, steps=1, validation_fraction=0)
    assert all(bool(m.initialized) for m in actnorms)
    with torch.no_grad():
        z, _ = actnorms[0](flow.standardization(x)[0])
    torch.testing.assert_close(z.mean(0), torch.zeros(D), atol=1e-2, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(D), atol=1e-2, rtol=0)


@pytest.mark.parametrize(
    "options",
    [{"lr": 0.0}, {"optimizer": "sgd"}, {"lr_schedule": "step"}, {"max_grad_norm": -1.0}, {"patience": 0}],
    ids=["lr", "optimizer", "lr_schedule", "max_grad_norm", "patience"],
)
def test_bad_settings_are_refused_before_the_flow_changes(options: dict[str, Any]) -> None:
    """A bad setting raises before any step or data-dependent initialization touches the flow."""
    flow, untouched = tiny_flow(), tiny_flow()
    with pytest.raises(ValueError, match=next(iter(options))):
        fit_quietly(flow, steps=5, **options)
    assert same_weights(flow, untouched)
    assert all(not m.initialized for m in flow.modules() if isinstance(m, ActNorm))


def test_fit_standardizes_once_and_densities_stay_in_raw_units() -> None:
    """``fit`` sets the standardization from the training data (not the held-out part) and keeps it on a refit;
    ``standardize=False`` leaves it at the identity; log-densities account for it (a raw-unit change of scale by
    ``a`` shifts the fitted log-density by ``-D log a`` when the standardization absorbs it)."""
    x = gaussian_data(400) * torch.tensor([3.0, 0.2])
    flow = tiny_flow()
    fit_quietly(flow, x, steps=5, validation_fraction=0)
    torch.testing.assert_close(flow.standardization.loc, x.mean(0))
    torch.testing.assert_close(flow.standardization.scale, x.std(0, unbiased=False))
    fitted = flow.standardization.state_dict()
    fit_quietly(flow, x * 10, steps=1, validation_fraction=0)
    assert all(torch.equal(v, fitted[k]) for k, v in flow.standardization.state_dict().items())

    plain = tiny_flow()
    fit_quietly(plain, x, steps=1, validation_fraction=0, standardize=False)
    assert not plain.standardization.fitted
    assert torch.equal(plain.standardization.scale, torch.ones(D))

    scaled = tiny_flow()
    scaled.load_state_dict(flow.state_dict())
    scaled.standardization.loc.mul_(10.0)
    scaled.standardization.scale.mul_(10.0)
    with torch.no_grad():
        torch.testing.assert_close(scaled.log_prob(x * 10), flow.log_prob(x) - D * math.log(10.0))
