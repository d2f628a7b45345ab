"""The one optimization loop behind every kind of fitting.

:func:`optimize` minimizes a stochastic loss supplied as a callable (a minibatch negative log-likelihood for
:func:`torchnf.fit`, a reverse-KL estimate for variational fitting) and takes care of everything around it:
the optimizer and learning-rate schedule, gradient clipping, periodic evaluation, early stopping with best-weights
restore, a guard against non-finite losses, the progress bar and the :class:`History`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = ["History", "OptimizerSpec", "ScheduleSpec", "optimize"]

logger = logging.getLogger(__name__)

OptimizerSpec = Literal["adam", "adamw"] | Callable[..., torch.optim.Optimizer]
ScheduleSpec = Literal["cosine", "plateau"] | Callable[[torch.optim.Optimizer], Any] | None
MAX_ROLLBACKS = 3


@dataclass
class History:
    """What happened during a fit.

    Attributes:
        step: the step count at each evaluation.
        train_loss: mean training loss over the steps since the previous evaluation.
        val_loss: validation loss at each evaluation (empty without validation).
        lr: learning rate at each evaluation.
        best_step: the step whose weights were kept (the best validation loss), or the last good step.
        skipped_steps: steps skipped because the loss or the gradient was not finite.
        rollbacks: steps at which repeated non-finite losses restored the last good weights and halved the rate.
        stop_reason: why training ended.
        unit: what ``step`` counts: ``"step"`` (optimizer steps) or ``"layer"`` (layers of a greedy fit).
    """

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_step: int = 0
    skipped_steps: int = 0
    rollbacks: list[int] = field(default_factory=list)
    stop_reason: str = ""
    unit: str = "step"

    @property
    def best_val_loss(self) -> float:
        """The lowest validation loss, or ``nan`` without validation."""
        return min(self.val_loss, default=math.nan)


def make_optimizer(spec: OptimizerSpec, params: list[Tensor], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam, AdamW, or what a callable ``spec(params)`` returns.

    Adam and AdamW use torch's fused implementation where it supports the parameters (CPU from torch 2.4, CUDA):
    one kernel per tensor instead of about ten, four times faster for a 128-wide five-layer flow on CPU.
    """
    if spec in ("adam", "adamw"):
        kind = torch.optim.Adam if spec == "adam" else torch.optim.AdamW
        try:
            return kind(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, ValueError):  # this torch has no fused kernel for these tensors
            return kind(params, lr=lr, weight_decay=weight_decay)
    if callable(spec):
        return spec(params)
    raise ValueError(f"unknown optimizer {spec!r}; expected 'adam', 'adamw' or a callable(params) -> Optimizer")


def make_schedule(spec: ScheduleSpec, optimizer: torch.optim.Optimizer, max_steps: int, patience: int) -> Any:
    """No schedule, cosine decay over ``max_steps``, halving on plateaus, or what ``spec(optimizer)`` returns."""
    if spec is None:
        return None
    if spec == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_steps)
    if spec == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(patience // 2, 1))
    if callable(spec):
        return spec(optimizer)
    raise ValueError(f"unknown lr_schedule {spec!r}; expected None, 'cosine', 'plateau' or a callable(optimizer)")


def check_positive_ints(**values: int | None) -> None:
    """Refuse any given value that is not a positive int (``None`` passes)."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_settings(
    lr: float,
    optimizer: OptimizerSpec,
    lr_schedule: ScheduleSpec,
    max_grad_norm: float | None,
    patience: int | None,
    max_nonfinite: int,
) -> None:
    """Refuse bad optimization settings before anything is changed, naming the setting."""
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if not (optimizer in ("adam", "adamw") or callable(optimizer)):
        raise ValueError(f"unknown optimizer {optimizer!r}; expected 'adam', 'adamw' or a callable(params)")
    if not (lr_schedule in (None, "cosine", "plateau") or callable(lr_schedule)):
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}; expected None, 'cosine', 'plateau' or a callable")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be positive or None, got {max_grad_norm}")
    check_positive_ints(patience=patience, max_nonfinite=max_nonfinite)


def _snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _step(loss: Tensor, params: list[Tensor], optimizer: torch.optim.Optimizer, max_grad_norm: float | None) -> bool:
    """One optimizer step; returns False (and changes nothing) when the loss or the gradient is not finite."""
    optimizer.zero_grad(set_to_none=True)
    if not bool(torch.isfinite(loss)):
        return False
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, math.inf if max_grad_norm is None else max_grad_norm)
    if not bool(torch.isfinite(norm)):
        optimizer.zero_grad(set_to_none=True)
        return False
    optimizer.step()
    return True


def optimize(
    model: nn.Module,
    batch_loss: Callable[[], Tensor],
    *,
    max_steps: int,
    eval_every: int,
    validation_loss: Callable[[], float] | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: OptimizerSpec = "adam",
    lr_schedule: ScheduleSpec = None,
    max_grad_norm: float | None = 10.0,
    patience: int | None = 10,
    max_nonfinite: int = 10,
    progress: bool | None = None,
) -> History:
    """Minimize ``batch_loss()`` over ``model``'s parameters; leave the model in evaluation mode.

    Every ``eval_every`` steps (and at the end) the mean training loss is recorded and, when ``validation_loss``
    is given, it is called in evaluation mode without gradients; the weights of the best validation loss are kept
    and restored at the end, and ``patience`` evaluations without improvement stop the run. Without validation the
    last weights are kept. A step with a non-finite loss or gradient is skipped; ``max_nonfinite`` of them in a row
    restore the last good weights and halve the learning rate, and after three such rollbacks the run stops.
    """
    check_positive_ints(max_steps=max_steps, eval_every=eval_every)
    check_settings(lr, optimizer, lr_schedule, max_grad_norm, patience, max_nonfinite)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(optimizer, params, lr, weight_decay)
    schedule = make_schedule(lr_schedule, opt, max_steps, patience or 10)
    on_plateau = isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau)

    history = History()
    good_state, best, since_best, nonfinite_run = _snapshot(model), math.inf, 0, 0
    interval: list[float] = []
    model.train()
    with tqdm(total=max_steps, disable=None if progress is None else not progress, unit="step") as bar:
        for step in range(1, max_steps + 1):
            loss = batch_loss()
            if _step(loss, params, opt, max_grad_norm):
                nonfinite_run = 0
                interval.append(float(loss.detach()))
            else:
                history.skipped_steps += 1
                nonfinite_run += 1
                if nonfinite_run == max_nonfinite:
                    model.load_state_dict(good_state)
                    for group in opt.param_groups:
                        group["lr"] *= 0.5
                    opt.state.clear()
                    history.rollbacks.append(step)
                    nonfinite_run = 0
                    logger.warning(
                        "%d non-finite losses in a row: restored the last good weights, halved lr", max_nonfinite
                    )
                    if len(history.rollbacks) == MAX_ROLLBACKS:
                        history.stop_reason = f"non-finite losses persisted after {MAX_ROLLBACKS} rollbacks"
                        break
            if schedule is not None and not on_plateau:
                schedule.step()
            bar.update(1)
            if step % eval_every and step != max_steps:
                continue

            history.step.append(step)
            history.train_loss.append(sum(interval) / len(interval) if interval else math.nan)
            history.lr.append(opt.param_groups[0]["lr"])
            interval = []
            if validation_loss is None:
                if math.isfinite(history.train_loss[-1]):
                    good_state, history.best_step = _snapshot(model), step
                bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}")
                continue
            model.eval()
            with torch.no_grad():
                val = validation_loss()
            model.train()
            history.val_loss.append(val)
            bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", val=f"{val:.4f}")
            if on_plateau:
                schedule.step(val)
            if val < best:
                good_state, best, since_best, history.best_step = _snapshot(model), val, 0, step
            else:
                since_best += 1
                if patience is not None and since_best >= patience:
                    history.stop_reason = f"early stop: no better validation loss in {patience} evaluations"
                    break
        else:
            history.stop_reason = f"reached the budget of {max_steps} steps"
    if validation_loss is not None or history.rollbacks:
        model.load_state_dict(good_state)
    model.eval()
    logger.info("optimization ended (%s); kept step %d", history.stop_reason, history.best_step)
    return history
