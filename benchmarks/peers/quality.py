"""Quality at equal time: every library fits the same standardized data for the same wall-clock budget.

Each data set is split by :func:`torchnf.datasets.load`; every library gets the training rows standardized with
the training mean and standard deviation (a constant column keeps scale 1), in float32, the same minibatches (a
fresh permutation of the training rows every epoch, from the same seed) and Adam with the same learning rate.
Every ``eval_every`` seconds of training the validation log-likelihood is computed (in evaluation mode, within the
budget) and the best weights so far are kept; training stops at the first step that would start after the budget,
the best weights are restored, and their validation and test log-likelihoods are reported in the data's own units
(the standardization's log-Jacobian added back), in nats per point. Without this selection, small data sets such
as digits (1,437 training rows) are overfitted within seconds and the comparison measures overfitting.
"""

from __future__ import annotations

import copy
import math
import sys
import time
import warnings
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import torch
from torch import Tensor

from torchnf.datasets import load

from .adapter import Built
from .libraries import builder
from .spec import ModelSpec

__all__ = ["Fit", "QualitySettings", "Standardized", "fit_for", "run_quality", "standardized"]


@dataclass(frozen=True)
class QualitySettings:
    """What to fit and for how long (the command-line options of ``quality``)."""

    libraries: tuple[str, ...]
    models: tuple[str, ...]
    datasets: tuple[str, ...]
    spec: ModelSpec
    seconds: float = 60.0
    eval_every: float = 1.0
    batch: int = 512
    lr: float = 1e-3
    threads: int = 1
    device: str = "cpu"
    seed: int = 0


@dataclass(frozen=True)
class Standardized:
    """A data set's splits, standardized with the training statistics.

    Attributes:
        train, val, test: float32 tensors of standardized rows.
        log_jacobian: ``-sum(log std)``, to add to a standardized log-density to get one in the data's units.
    """

    train: Tensor
    val: Tensor
    test: Tensor
    log_jacobian: float


@dataclass(frozen=True)
class Fit:
    """One library's fit of one model to one data set.

    Attributes:
        steps: optimizer steps taken within the budget.
        best_step: the step whose weights had the best validation log-likelihood (those are evaluated).
        stopped_early: training stopped before the budget at a non-finite loss (the best weights before it count).
        seconds: the training wall time, validation included (slightly over the budget: the last step finishes).
        val_ll, test_ll: mean log-likelihood in nats per point, in the data's units (``None`` on error).
        error: why the fit failed (an exception, a non-finite loss), or ``""``.
    """

    library: str
    dataset: str
    model: str
    dim: int
    steps: int = 0
    best_step: int = 0
    seconds: float = 0.0
    val_ll: float | None = None
    test_ll: float | None = None
    error: str = ""
    stopped_early: bool = False


def standardized(name: str, seed: int, device: torch.device) -> Standardized:
    """Load data set ``name`` and standardize its splits with the training rows' mean and standard deviation."""
    data = load(name, seed=seed)
    mean, std = data.train.mean(axis=0), data.train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)

    def scaled(rows: np.ndarray) -> Tensor:
        return torch.as_tensor((rows - mean) / std, dtype=torch.float32, device=device)

    return Standardized(scaled(data.train), scaled(data.val), scaled(data.test), -float(np.log(std).sum()))


def _mean_log_prob(built: Built, x: Tensor, chunk: int = 4096) -> float:
    with torch.no_grad():
        return float(torch.cat([built.log_prob(part) for part in x.split(chunk)]).double().mean())


class _Best:
    """The weights with the best validation log-likelihood so far."""

    def __init__(self, built: Built, val: Tensor) -> None:
        self.built, self.val = built, val
        self.score, self.step, self.state = -math.inf, 0, copy.deepcopy(built.module.state_dict())

    def check(self, step: int) -> None:
        self.built.module.eval()
        score = _mean_log_prob(self.built, self.val)
        self.built.module.train()
        if score > self.score:  # NaN never is
            self.score, self.step, self.state = score, step, copy.deepcopy(self.built.module.state_dict())


def fit_for(
    built: Built, train: Tensor, val: Tensor, seconds: float, eval_every: float, batch: int, lr: float, seed: int
) -> tuple[int, int, float, bool]:
    """Maximum-likelihood training on ``train`` until ``seconds`` have passed or a loss is not finite, keeping the
    weights with the best log-likelihood on ``val`` (checked every ``eval_every`` seconds and at the end), which are
    restored; returns the steps taken, the best step, the seconds used and whether a non-finite loss stopped it.

    Raises:
        FloatingPointError: when no validation log-likelihood was finite (the fit diverged at once).
    """
    module = built.module
    module.train()
    optimizer = built.adam(module.parameters(), lr)
    generator = torch.Generator().manual_seed(seed)
    best = _Best(built, val)
    steps, start = 0, time.perf_counter()
    next_check = start + eval_every
    diverged = False
    while not diverged and time.perf_counter() - start < seconds:
        for rows in torch.randperm(len(train), generator=generator).split(batch):
            now = time.perf_counter()
            if now - start >= seconds:
                break
            if now >= next_check:
                best.check(steps)
                next_check = time.perf_counter() + eval_every
            optimizer.zero_grad(set_to_none=True)
            loss = -built.log_prob(train[rows.to(train.device)]).mean()
            if not torch.isfinite(loss):
                diverged = True
                break
            loss.backward()
            optimizer.step()
            steps += 1
    elapsed = time.perf_counter() - start
    if not diverged:
        best.check(steps)
    if not math.isfinite(best.score):
        raise FloatingPointError(f"no finite validation log-likelihood (non-finite loss at step {steps + 1})")
    module.load_state_dict(best.state)
    module.eval()
    return steps, best.step, elapsed, diverged


def _fit_one(library: str, model: str, name: str, data: Standardized, settings: QualitySettings) -> Fit:
    dim = data.train.shape[1]
    steps, best_step, seconds, stopped = 0, 0, 0.0, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(settings.seed)
            built = builder(library)(model, dim, settings.spec)
            built.module.to(settings.device)
            steps, best_step, seconds, stopped = fit_for(
                built, data.train, data.val, settings.seconds, settings.eval_every, settings.batch, settings.lr,
                settings.seed,
            )  # fmt: skip
            val = _mean_log_prob(built, data.val) + data.log_jacobian
            test = _mean_log_prob(built, data.test) + data.log_jacobian
    except Exception as error:  # a diverging or failing fit is a result, not a crash
        error_text = f"{type(error).__name__}: {error}"[:200]
        return Fit(library, name, model, dim, steps, best_step, seconds, error=error_text)
    return Fit(library, name, model, dim, steps, best_step, seconds, val, test, stopped_early=stopped)


def run_quality(settings: QualitySettings, progress: TextIO = sys.stderr) -> list[Fit]:
    """Fit every (data set, model, library) for the budget, reporting each fit on ``progress``."""
    torch.set_num_threads(settings.threads)
    device = torch.device(settings.device)
    fits = []
    total = len(settings.datasets) * len(settings.models) * len(settings.libraries)
    for name in settings.datasets:
        data = standardized(name, settings.seed, device)
        for model in settings.models:
            for library in settings.libraries:
                fit = _fit_one(library, model, name, data, settings)
                fits.append(fit)
                outcome = fit.error or f"best step {fit.best_step}: test {fit.test_ll:.3f}, val {fit.val_ll:.3f}"
                outcome += " (stopped at a non-finite loss)" if fit.stopped_early else ""
                print(
                    f"[{len(fits)}/{total}] {library} {model} on {name}: {fit.steps} steps in {fit.seconds:.1f} s; "
                    f"{outcome}",
                    file=progress,
                    flush=True,
                )
    return fits
