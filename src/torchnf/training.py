r"""Maximum-likelihood fitting (forward KL).

The loss is the mean negative log-likelihood in nats per point, :math:`-\frac1B\sum_b \log p(x_b \mid c_b)`,
over minibatches sliced by random index from in-memory tensors (no per-sample data loader), minimized by the
shared loop :func:`torchnf.optimization.optimize`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from . import distributed as ddp
from .bijections.base import Bijection
from .bijections.normalization import ActNorm
from .distributions import StandardNormal
from .optimization import History, OptimizerSpec, ScheduleSpec, check_positive_ints, check_settings, optimize

if TYPE_CHECKING:
    from .flow import Flow

__all__ = ["FitMethod", "History", "bijections_of", "evaluate", "fit", "regularization_loss"]

FitMethod = Literal["auto", "greedy", "gradient"]


def _check_rows(flow: Flow, x: Any, context: Any, name: str, context_name: str) -> tuple[Tensor, Tensor | None]:
    """Validate a data set: ``(n, *event_shape)`` points with ``(n, *context_shape)`` contexts, ``n >= 1``."""
    x, context = flow.check_data(x, context, name, context_name, allow_empty=False)
    if x.dim() != len(flow.event_shape) + 1:
        raise ValueError(f"{name} must have shape (n, {', '.join(map(str, flow.event_shape))}), got {tuple(x.shape)}")
    domain = flow.bijection.domain
    if flow.dequantization is None and domain is not None:
        outside = (x <= domain[0]) | (x >= domain[1])
        if bool(outside.any()):
            raise ValueError(
                f"{name} has {int(outside.sum())} value(s) outside the open interval {domain} where "
                f"{type(flow.bijection).__name__} has a density (e.g. {float(x[outside][0])!r}); scale the data into "
                "it, or give discrete data a dequantization (torchnf.dequantization)"
            )
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


def _rows(x: Tensor, context: Tensor | None, index: Tensor | slice) -> tuple[Tensor, Tensor | None]:
    """The rows ``index`` of the points and of their contexts."""
    if isinstance(index, Tensor):
        index = index.to(x.device)
    return x[index], None if context is None else context[index]


def _batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[Tensor]:
    """Endless random minibatch indices; an incomplete last batch is dropped when a full one exists."""
    while True:
        order = torch.randperm(n, generator=generator).to(device)
        chunks = order.split(batch_size)
        if len(chunks) > 1 and len(chunks[-1]) < batch_size:
            chunks = chunks[:-1]
        yield from chunks


def evaluate(flow: Flow, x: Tensor, context: Tensor | None = None, batch_size: int = 4096) -> float:
    """Mean negative log-likelihood of ``x`` (nats per point), in chunks, in evaluation mode.

    A dequantized flow's bound is estimated with the same noise at every call (drawn from a fixed seed, without
    touching the global random state), so that validation losses compare models, not noise draws.
    """
    return _total_nll(flow, x, context, batch_size) / x.shape[0]


@torch.no_grad()
def _total_nll(flow: Flow, x: Tensor, context: Tensor | None = None, batch_size: int = 4096) -> float:
    """The summed negative log-likelihood of ``x``, as :func:`evaluate` computes it (0 without points)."""
    was_training = flow.training
    flow.eval()
    total = 0.0
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices, enabled=flow.dequantization is not None):
        if flow.dequantization is not None:
            torch.manual_seed(0)
        for start in range(0, x.shape[0], batch_size):
            stop = start + batch_size
            c = None if context is None else context[start:stop]
            total += -float(flow.unchecked_log_prob(x[start:stop], c).sum())
    flow.train(was_training)
    return total


def fit(
    flow: Flow,
    x: Any,
    context: Any = None,
    *,
    validation_data: Any = None,
    validation_context: Any = None,
    validation_fraction: float = 0.1,
    standardize: bool | None = None,
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
    method: FitMethod = "auto",
    compile: bool = False,
    distributed: bool | None = None,
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
        standardize: set the flow's fixed standardization (:attr:`Flow.standardization`) from the training data
            when it is not set yet, so the bijection sees data of zero mean and unit variance per dimension while
            densities stay in raw units. A flow fitted before keeps its standardization. ``None`` (the default)
            standardizes unless the flow is dequantized or its bijection has a bounded
            :attr:`~torchnf.Bijection.domain` (a logit pre-transform), whose data must stay where they are.
        steps: the maximum number of optimizer steps.
        epochs: the maximum number of passes over the training data (``steps`` wins when both are given; when
            neither is, up to 5,000 steps).
        batch_size: points per step (the whole training set if it is smaller). In data-parallel training, the
            global batch: each of the ``W`` processes draws ``batch_size // W`` points from its shard per step, so
            ``steps``, ``epochs``, ``lr`` and ``eval_every`` mean what they mean in one process.
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
        method: ``"gradient"`` (minibatch gradient descent on the negative log-likelihood), ``"greedy"`` (a
            bijection that is built layer by layer, such as :class:`~torchnf.architectures.SINF`, grows its layers
            with its own ``fit_greedy``, stopping on the validation data; the gradient options do not apply), or
            ``"auto"``: greedy when the bijection supports it, gradient otherwise. ``"gradient"`` fine-tunes a
            greedily fitted flow.
        compile: compile the training loss (forward and backward) with ``torch.compile(fullgraph=True)``. The
            first step then takes seconds to a minute to compile; later steps fuse the elementwise work of the
            transformers, which pays for spline and sigmoid flows over many steps (see ``benchmarks/RESULTS.md``)
            and needs a C++ compiler on CPU. The flow itself is unchanged.
        distributed: data-parallel training with DistributedDataParallel over the processes of a
            ``torch.distributed`` process group, such as the ones ``torchrun --nproc_per_node N script.py`` starts
            (see :mod:`torchnf.distributed`). ``None`` (the default) trains in parallel when a group of more than
            one process is initialized or ``torchrun`` started more than one (``WORLD_SIZE > 1``), initializing the
            group if the script has not (``gloo`` on CPU, ``nccl`` on CUDA, where the flow moves to
            ``cuda:LOCAL_RANK``); ``True`` insists on it (an error without a group or torchrun's environment);
            ``False`` fits in this process alone. Every process must pass the same data and options: the split and
            the seed are process 0's, each process trains on a disjoint shard of the training rows and validates on
            a shard of the validation rows (summed over the processes), and every process ends with the same
            weights and :class:`History`. The progress bar shows on process 0 only. Greedy fitting runs in one
            process only.

    Returns:
        The :class:`History` of losses and events, also kept in ``flow.history``.
    """
    parallel = ddp.use_distributed(distributed)
    if parallel:
        ddp.setup(flow)  # the process group, and the flow on this process's GPU
    x, context = _check_rows(flow, x, context, "x", "context")
    standardize = _standardize(flow, standardize)
    greedy = _greedy(flow, method, steps, epochs)
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be True or False, got {compile!r}")
    if compile and greedy:
        raise ValueError("compile applies to gradient fitting; a greedy fit has no training loss to compile")
    if parallel and greedy:
        raise ValueError(
            f"{type(flow.bijection).__name__} is fitted greedily, which runs in one process: pass distributed=False "
            "to fit it in every process alone (with the same seed they fit alike), or method='gradient' to "
            "fine-tune a fitted one in parallel"
        )
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must lie in [0, 1), got {validation_fraction}")
    check_positive_ints(steps=steps, epochs=epochs, batch_size=batch_size, eval_every=eval_every)
    check_settings(lr, optimizer, lr_schedule, max_grad_norm, patience, max_nonfinite)

    generator = torch.Generator()
    # without a seed, draw one from the global generator: torch.manual_seed still makes the fit reproducible
    seed = int(torch.randint(2**62, ())) if seed is None else seed
    generator.manual_seed(ddp.broadcast_seed(seed) if parallel else seed)
    if validation_data is not None:
        x_val, c_val = _check_rows(flow, validation_data, validation_context, "validation_data", "validation_context")
        x_train, c_train = x, context
    else:
        x_train, c_train, x_val, c_val = _split(x, context, validation_fraction, generator)

    if greedy:
        return _fit_greedy(flow, x_train, x_val, standardize, generator, progress)

    n_train = x_train.shape[0]
    processes = ddp.world_size() if parallel else 1
    if n_train < processes:
        raise ValueError(f"{n_train} training point(s) cannot be shared between {processes} processes")
    batch_size = min(batch_size, n_train)
    per_process = min(max(batch_size // processes, 1), n_train // processes)
    steps_per_epoch = max(n_train // (per_process * processes), 1)
    max_steps = steps if steps is not None else (epochs * steps_per_epoch if epochs is not None else 5000)
    if parallel:  # every process holds the same split; each keeps a disjoint shard of it
        ddp.check_same_data(x=x_train, context=c_train, validation_data=x_val, validation_context=c_val)
        x_own, c_own = _rows(x_train, c_train, ddp.shard(n_train, generator))
        if x_val is not None:
            x_val, c_val = _rows(x_val, c_val, ddp.shard(x_val.shape[0]))
    else:
        x_own, c_own = x_train, c_train
    batches = _batches(x_own.shape[0], per_process, generator, x.device)
    log_prob = compiled_log_prob(flow) if compile else flow.unchecked_log_prob

    bijections = bijections_of(flow)

    def nll(x_batch: Tensor, c_batch: Tensor | None) -> Tensor:
        return -log_prob(x_batch, c_batch).mean() + regularization_loss(flow, bijections)

    if standardize and not flow.standardization.fitted and n_train >= 2:
        flow.standardization.fit(x_train)  # the whole training set, on every process
    flow.train()
    _initialize_data_dependent(flow, x_train, c_train, batch_size)
    # DDP averages the gradients over the processes when the loss goes through its forward
    loss = ddp.data_parallel(flow, nll, *_rows(x_train, c_train, slice(per_process))) if parallel else nll

    def batch_loss() -> Tensor:
        idx = next(batches)
        return loss(x_own[idx], None if c_own is None else c_own[idx])

    flow.history = optimize(
        flow,
        batch_loss,
        max_steps=max_steps,
        eval_every=eval_every or min(max(steps_per_epoch, 50), 1000, max_steps),
        validation_loss=None if x_val is None else (lambda: _validation_loss(flow, x_val, c_val, parallel)),
        lr=lr,
        weight_decay=weight_decay,
        optimizer=optimizer,
        lr_schedule=lr_schedule,
        max_grad_norm=max_grad_norm,
        patience=patience,
        max_nonfinite=max_nonfinite,
        progress=progress if not parallel or ddp.is_main_process() else False,
        average=ddp.mean_over_processes if parallel else None,
    )
    if parallel:
        ddp.broadcast_buffers(flow)  # each process's last training pass moved its own running statistics
    return flow.history


def _validation_loss(flow: Flow, x: Tensor, context: Tensor | None, parallel: bool) -> float:
    """:func:`evaluate`; in data-parallel training, over every process's shard of the validation data (the sum of
    the negative log-likelihoods over the sum of the point counts), with process 0's buffers."""
    if not parallel:
        return evaluate(flow, x, context)
    ddp.broadcast_buffers(flow)
    total, count = ddp.sum_over_processes(_total_nll(flow, x, context), x.shape[0])
    return total / count


def _standardize(flow: Flow, standardize: bool | None) -> bool:
    """Whether to standardize the data: by default unless the bijection's data must stay in place."""
    fixed = flow.dequantization is not None or flow.bijection.domain is not None
    if standardize is None:
        return not fixed
    if standardize and fixed:
        raise ValueError(
            "standardize=True would move the data: this flow is dequantized or its bijection has a bounded domain "
            f"({type(flow.bijection).__name__}); leave standardize at None"
        )
    return bool(standardize)


def _greedy(flow: Flow, method: str, steps: int | None, epochs: int | None) -> bool:
    """Whether ``method`` means greedy fitting for this flow; refuse combinations that cannot work."""
    if method not in ("auto", "greedy", "gradient"):
        raise ValueError(f"unknown method {method!r}; expected 'auto', 'greedy' or 'gradient'")
    supported = callable(getattr(flow.bijection, "fit_greedy", None))
    name = type(flow.bijection).__name__
    if method == "greedy" and not supported:
        raise ValueError(f"method='greedy' needs a bijection with fit_greedy (such as SINF); {name} has none")
    greedy = method == "greedy" or (method == "auto" and supported)
    if greedy:
        if flow.dequantization is not None:
            raise ValueError(f"{name} is fitted greedily, which does not support a dequantization")
        if flow.context_shape is not None:
            raise ValueError(f"{name} is fitted greedily, which does not support a context")
        if not isinstance(flow.base, StandardNormal):
            raise ValueError(f"{name} is fitted greedily towards a StandardNormal base, not {type(flow.base).__name__}")
        if steps is not None or epochs is not None:
            raise ValueError(
                f"steps and epochs count gradient steps, but {name} is fitted greedily (its layer budget is its "
                "max_layers); to fine-tune it by gradient descent, pass method='gradient' (command line: --method "
                "gradient)"
            )
    elif not any(p.requires_grad for p in flow.parameters()):
        raise ValueError(f"{name} has no trainable parameters yet; fit it with method='greedy' first")
    return greedy


def _fit_greedy(
    flow: Flow,
    x: Tensor,
    validation: Tensor | None,
    standardize: bool,
    generator: torch.Generator,
    progress: bool | None,
) -> History:
    """Greedy fitting in the standardized space; the recorded losses are in raw units, like gradient fitting's."""
    if standardize and not flow.standardization.fitted and x.shape[0] >= 2:
        flow.standardization.fit(x)
    x, log_det = flow.standardization(x)
    validation = None if validation is None else flow.standardization(validation)[0]
    history = flow.bijection.fit_greedy(x, validation, generator=generator, progress=progress)
    offset = float(log_det[0])
    history.train_loss = [loss - offset for loss in history.train_loss]
    history.val_loss = [loss - offset for loss in history.val_loss]
    flow.history = history
    flow.eval()
    return history


def regularization_loss(flow: Flow, bijections: Sequence[Bijection] | None = None) -> Tensor | float:
    """The sum of the penalties that the flow's bijections recorded in :attr:`Bijection.regularization` during the
    last call, which it clears (0 when there are none). A training loop passes ``bijections``, the flow's
    bijections listed once (:func:`bijections_of`), instead of walking every module at each step."""
    total: Tensor | float = 0.0
    for module in bijections_of(flow) if bijections is None else bijections:
        penalty = module.regularization
        if penalty is not None:
            total = total + penalty
            module.regularization = None
    return total


def bijections_of(flow: Flow) -> list[Bijection]:
    """Every :class:`Bijection` among the flow's modules (those that may record a regularization)."""
    return [module for module in flow.modules() if isinstance(module, Bijection)]


def compiled_log_prob(flow: Flow) -> Callable[[Tensor, Tensor | None], Tensor]:
    """``flow.unchecked_log_prob`` compiled by ``torch.compile(fullgraph=True)``: one graph, or an error, never a
    silent fallback to Python. Batches of one shape, in one grad mode, reuse one compiled graph (autograd included).

    torch caches compiled graphs per code object and refuses to recompile one more than a few times, so each call
    compiles a function with a code object of its own: fitting many flows in one process never reaches that limit.
    """

    def log_prob(x: Tensor, context: Tensor | None) -> Tensor:
        return flow.unchecked_log_prob(x, context)

    log_prob.__code__ = log_prob.__code__.replace()  # a fresh code object, so a fresh cache
    return torch.compile(log_prob, fullgraph=True, dynamic=False)


@torch.no_grad()
def _initialize_data_dependent(flow: Flow, x: Tensor, context: Tensor | None, batch_size: int) -> None:
    """Run one forward pass on a large batch so data-dependent initializations (ActNorm) see representative data."""
    if not any(isinstance(m, ActNorm) and not m.initialized for m in flow.modules()):
        return
    n = min(x.shape[0], max(batch_size, 1024))
    flow.unchecked_log_prob(x[:n], None if context is None else context[:n])
