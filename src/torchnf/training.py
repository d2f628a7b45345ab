r"""Maximum-likelihood fitting: one loop for every flow.

The loss is the mean negative log-likelihood in nats per point, :math:`-\frac1B\sum_b \log p(x_b \mid c_b)`,
minimized with Adam or AdamW on minibatches sliced by random index from in-memory tensors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .bijections.normalization import ActNorm

if TYPE_CHECKING:
    from .flow import Flow

__all__ = ["History", "fit"]

logger = logging.getLogger(__name__)

OptimizerSpec = Literal["adam", "adamw"] | Callable[..., torch.optim.Optimizer]
ScheduleSpec = Literal["cosine", "plateau"] | Callable[[torch.optim.Optimizer], Any] | None


@dataclass
class History:
    """What happened during :func:`fit`.

    Attributes:
        step: the step count at each evaluation.
        train_loss: mean training loss (nats per point) over the steps since the previous evaluation.
        val_loss: validation loss at each evaluation (empty without validation data).
        lr: learning rate at each evaluation.
        best_step: the step whose weights were kept (the best validation loss), or the last step.
        skipped_steps: steps skipped because the loss or the gradient was not finite.
        rollbacks: steps at which repeated non-finite losses restored the last good weights and halved the rate.
        stop_reason: why training ended.
    """

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_step: int = 0
    skipped_steps: int = 0
    rollbacks: list[int] = field(default_factory=list)
    stop_reason: str = ""

    @property
    def best_val_loss(self) -> float:
        """The lowest validation loss, or ``nan`` without validation."""
        return min(self.val_loss, default=math.nan)


def _check_rows(flow: Flow, x: Any, context: Any, name: str, context_name: str) -> tuple[Tensor, Tensor | None]:
    """Validate a data set: ``(n, *event_shape)`` points with ``(n, *context_shape)`` contexts, ``n >= 1``."""
    x, context = flow.check_data(x, context, name, context_name, allow_empty=False)
    if x.dim() != len(flow.event_shape) + 1:
        raise ValueError(f"{name} must have shape (n, {', '.join(map(str, flow.event_shape))}), got {tuple(x.shape)}")
    if context is not None and flow.context_shape is not None:
        expected = (x.shape[0], *flow.context_shape)
        if context.shape != expected:
            raise ValueError(
                f"{context_name} must hold one context per point of {name}, shape {expected}; "
                f"got {tuple(context.shape)}"
            )
    return x, context


def _split(
    x: Tensor, context: Tensor | None, fraction: float, generator: torch.Generator
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    n = x.shape[0]
    n_val = round(n * fraction)
    if n_val == 0:
        return x, context, None, None
    if n - n_val < 1:
        raise ValueError(f"validation_fraction={fraction} leaves no training data out of {n} points")
    order = torch.randperm(n, generator=generator).to(x.device)
    val, train = order[:n_val], order[n_val:]
    if context is None:
        return x[train], None, x[val], None
    return x[train], context[train], x[val], context[val]


def _batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[Tensor]:
    """Endless random minibatch indices; an incomplete last batch is dropped when a full one exists."""
    while True:
        order = torch.randperm(n, generator=generator).to(device)
        chunks = order.split(batch_size)
        if len(chunks) > 1 and len(chunks[-1]) < batch_size:
            chunks = chunks[:-1]
        yield from chunks


def _make_optimizer(spec: OptimizerSpec, params: list[Tensor], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if spec == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if spec == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if callable(spec):
        return spec(params)
    raise ValueError(f"unknown optimizer {spec!r}; expected 'adam', 'adamw' or a callable(params) -> Optimizer")


def _make_schedule(spec: ScheduleSpec, optimizer: torch.optim.Optimizer, max_steps: int, patience: int) -> Any:
    if spec is None:
        return None
    if spec == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_steps)
    if spec == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(patience // 2, 1))
    if callable(spec):
        return spec(optimizer)
    raise ValueError(f"unknown lr_schedule {spec!r}; expected None, 'cosine', 'plateau' or a callable(optimizer)")


def _snapshot(flow: Flow) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in flow.state_dict().items()}


@torch.no_grad()
def evaluate(flow: Flow, x: Tensor, context: Tensor | None = None, batch_size: int = 4096) -> float:
    """Mean negative log-likelihood of ``x`` (nats per point), in chunks, in evaluation mode."""
    was_training = flow.training
    flow.eval()
    total = 0.0
    for start in range(0, x.shape[0], batch_size):
        stop = start + batch_size
        c = None if context is None else context[start:stop]
        total += -float(flow.unchecked_log_prob(x[start:stop], c).sum())
    flow.train(was_training)
    return total / x.shape[0]


def fit(
    flow: Flow,
    x: Any,
    context: Any = None,
    *,
    validation_data: Any = None,
    validation_context: Any = None,
    validation_fraction: float = 0.1,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: OptimizerSpec = "adam",
    lr_schedule: ScheduleSpec = None,
    max_grad_norm: float | None = 10.0,
    patience: int | None = 10,
    eval_every: int | None = None,
    max_nonfinite: int = 10,
    seed: int | None = None,
    progress: bool | None = None,
) -> History:
    """Fit ``flow`` to data ``x`` (and ``context``) by maximum likelihood.

    Args:
        flow: the flow to train, in place; it is trained in training mode and left in evaluation mode.
        x: data of shape ``(n, *event_shape)``, a tensor or a NumPy array (float64 is fine: it is converted to
            the flow's dtype).
        context: contexts of shape ``(n, *context_shape)`` for a conditional flow.
        validation_data: held-out data; when ``None``, a random ``validation_fraction`` of ``x`` is held out.
        validation_context: contexts of ``validation_data``.
        validation_fraction: the share of ``x`` held out when no ``validation_data`` is given; 0 trains on all
            of it, without early stopping.
        steps: the maximum number of optimizer steps.
        epochs: the maximum number of passes over the training data (``steps`` wins when both are given; when
            neither is, up to 5,000 steps).
        batch_size: points per step (the whole training set if it is smaller).
        lr: learning rate.
        weight_decay: weight decay (L2 for Adam, decoupled for AdamW).
        optimizer: ``"adam"``, ``"adamw"``, or a callable taking the parameters and returning an optimizer.
        lr_schedule: ``None``, ``"cosine"`` (to zero over the step budget), ``"plateau"`` (halve when the
            validation loss stalls) or a callable taking the optimizer and returning a scheduler stepped every step.
        max_grad_norm: clip the gradient norm to this value (``None``: no clipping).
        patience: stop after this many evaluations without a better validation loss, and restore the best
            weights (``None``: never stop early; the best weights are still restored).
        eval_every: steps between evaluations (default: one epoch, but at least 50 and at most 1,000 steps).
        max_nonfinite: after this many consecutive steps with a non-finite loss or gradient (each one skipped),
            restore the last good weights and halve the learning rate; after three such rollbacks, stop.
        seed: seed for the validation split and the minibatch order.
        progress: show a progress bar (``None``: only when the output is a terminal).

    Returns:
        The :class:`History` of losses and events.
    """
    x, context = _check_rows(flow, x, context, "x", "context")
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must lie in [0, 1), got {validation_fraction}")
    for name, value in (("steps", steps), ("epochs", epochs), ("batch_size", batch_size), ("eval_every", eval_every)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")

    generator = torch.Generator()
    # without a seed, draw one from the global generator: torch.manual_seed still makes the fit reproducible
    generator.manual_seed(int(torch.randint(2**62, ())) if seed is None else seed)
    if validation_data is not None:
        x_val, c_val = _check_rows(flow, validation_data, validation_context, "validation_data", "validation_context")
        x_train, c_train = x, context
    else:
        x_train, c_train, x_val, c_val = _split(x, context, validation_fraction, generator)

    n_train = x_train.shape[0]
    batch_size = min(batch_size, n_train)
    steps_per_epoch = max(n_train // batch_size, 1)
    max_steps = steps if steps is not None else (epochs * steps_per_epoch if epochs is not None else 5000)
    eval_every = eval_every or min(max(steps_per_epoch, 50), 1000, max_steps)
    patience = patience if x_val is not None else None

    params = [p for p in flow.parameters() if p.requires_grad]
    opt = _make_optimizer(optimizer, params, lr, weight_decay)
    schedule = _make_schedule(lr_schedule, opt, max_steps, patience or 10)

    flow.train()
    _initialize_data_dependent(flow, x_train, c_train, batch_size)

    history = History()
    good_state = _snapshot(flow)
    best = math.inf
    since_best = 0
    nonfinite_run = 0
    interval_losses: list[float] = []
    indices = _batches(n_train, batch_size, generator, x.device)
    bar = tqdm(total=max_steps, disable=None if progress is None else not progress, unit="step")
    step = 0
    try:
        while step < max_steps:
            idx = next(indices)
            c = None if c_train is None else c_train[idx]
            loss = -flow.unchecked_log_prob(x_train[idx], c).mean()
            opt.zero_grad(set_to_none=True)
            finite = bool(torch.isfinite(loss))
            if finite:
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm else math.inf)
                finite = bool(torch.isfinite(norm))
            step += 1
            bar.update(1)
            if finite:
                opt.step()
                nonfinite_run = 0
                interval_losses.append(float(loss.detach()))
            else:
                history.skipped_steps += 1
                nonfinite_run += 1
                if nonfinite_run >= max_nonfinite:
                    flow.load_state_dict(good_state)
                    for group in opt.param_groups:
                        group["lr"] *= 0.5
                    opt.state.clear()
                    history.rollbacks.append(step)
                    nonfinite_run = 0
                    logger.warning("non-finite loss for %d steps: restored last good weights, halved lr", max_nonfinite)
                    if len(history.rollbacks) >= 3:
                        history.stop_reason = "non-finite losses persisted after 3 rollbacks"
                        break
            if schedule is not None and not isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
                schedule.step()

            if step % eval_every == 0 or step == max_steps:
                train_loss = sum(interval_losses) / len(interval_losses) if interval_losses else math.nan
                interval_losses = []
                history.step.append(step)
                history.train_loss.append(train_loss)
                history.lr.append(opt.param_groups[0]["lr"])
                postfix = {"loss": f"{train_loss:.4f}"}
                if x_val is not None:
                    val_loss = evaluate(flow, x_val, c_val)
                    history.val_loss.append(val_loss)
                    postfix["val"] = f"{val_loss:.4f}"
                    if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        schedule.step(val_loss)
                    if val_loss < best:
                        best, since_best, history.best_step = val_loss, 0, step
                        good_state = _snapshot(flow)
                    else:
                        since_best += 1
                    if patience is not None and since_best >= patience:
                        history.stop_reason = f"early stop: no better validation loss in {patience} evaluations"
                        break
                elif math.isfinite(train_loss):
                    good_state, history.best_step = _snapshot(flow), step
                bar.set_postfix(postfix)
        else:
            history.stop_reason = f"reached the budget of {max_steps} steps"
    finally:
        bar.close()
    if x_val is not None or history.rollbacks:
        flow.load_state_dict(good_state)
    flow.eval()
    logger.info("fit ended after %d steps (%s); kept step %d", step, history.stop_reason, history.best_step)
    return history


@torch.no_grad()
def _initialize_data_dependent(flow: Flow, x: Tensor, context: Tensor | None, batch_size: int) -> None:
    """Run one forward pass on a large batch so data-dependent initializations (ActNorm) see representative data."""
    if not any(isinstance(m, ActNorm) and not m.initialized for m in flow.modules()):
        return
    n = min(x.shape[0], max(batch_size, 1024))
    flow.unchecked_log_prob(x[:n], None if context is None else context[:n])
