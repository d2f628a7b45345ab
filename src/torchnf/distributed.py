r"""Data-parallel training across processes: :func:`torchnf.fit` under ``torchrun``.

The scheme is PyTorch's DistributedDataParallel (DDP; Li et al. 2020, "PyTorch Distributed: Experiences on
Accelerating Data Parallel Training", *Proceedings of the VLDB Endowment* 13(12)): every process holds a full copy
of the model, draws its own minibatch, and the backward pass all-reduces (averages) the gradients, bucket by bucket
while it runs, so that every process takes the same optimizer step and the copies never drift apart. On top of it,
:func:`torchnf.fit` makes every decision around the steps agree:

* **Launch.** ``torchrun --nproc_per_node N script.py`` starts N processes with ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. :func:`setup` initializes the default process group from
  them (``env://``) unless the script did, with the ``gloo`` backend on CPU and ``nccl`` on CUDA, and moves a flow
  on CUDA to ``cuda:LOCAL_RANK`` (one GPU per process; see :func:`local_device`).
* **The same data, split once.** Every process passes the same data set (it is checked: :func:`check_same_data`).
  Process 0's seed is broadcast (:func:`broadcast_seed`), so every process draws the same train/validation split;
  the data standardization and data-dependent initializations (ActNorm) see the whole training set, identically
  everywhere, and DDP broadcasts process 0's weights and buffers when it wraps the model.
* **Disjoint shards.** Each process keeps the rows ``rank::world_size`` of one shared random permutation of the
  training rows (:func:`shard`) and draws its minibatches from them; ``fit``'s ``batch_size`` is the global batch,
  split evenly between the processes.
* **One loss, one decision.** The loss (the batch's negative log-likelihood and the bijections' regularization
  penalties) goes through the forward of the DDP wrapper (:func:`data_parallel`), which is what lets DDP hook the
  backward pass: ``Flow.forward`` is the checked ``log_prob``, not the training loss. DDP expects a gradient for
  every trainable parameter at every step unless told otherwise, so one probing backward pass decides whether to
  turn on ``find_unused_parameters``. With ``compile=True``, the compiled log-density runs inside that forward.
  Each step's loss is averaged over the processes
  (:func:`mean_over_processes`) before the non-finite and divergence guards look at it, so a step is skipped on
  every process or on none. The validation loss is the sum of the negative log-likelihoods over each process's
  shard of the validation set, all-reduced with the point count (:func:`sum_over_processes`): early stopping,
  learning-rate schedules and the best-weights restore take the same decisions everywhere, and the
  :class:`~torchnf.optimization.History` is identical on every process.
* **Buffers follow process 0.** DDP broadcasts process 0's buffers (BatchNorm's running statistics) at every forward
  pass, its default; :func:`broadcast_buffers` does it again before each validation and at the end, since each
  process's last training pass moved its own copy.
* **Save once.** Under an initialized process group, :func:`torchnf.io.save` (and :meth:`Flow.save`) writes on
  process 0 only while the others wait (:func:`on_main_process`), so every process of a script calls it (never
  under ``if rank == 0``, which would leave process 0 waiting for the others).

Greedy fitting (SINF) and variational fitting run in one process. Without an initialized process group of more than
one process, the helpers here act locally: reductions and broadcasts return their input, :func:`on_main_process`
just calls its function.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "barrier",
    "broadcast_buffers",
    "broadcast_seed",
    "check_same_data",
    "data_parallel",
    "is_initialized",
    "is_main_process",
    "launched_world_size",
    "local_device",
    "mean_over_processes",
    "on_main_process",
    "rank",
    "setup",
    "shard",
    "sum_over_processes",
    "use_distributed",
    "world_size",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
RENDEZVOUS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


# -- where this process stands ---------------------------------------------------------------------------------


def is_initialized() -> bool:
    """Whether a default process group is initialized (by :func:`setup` or by the script)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the default process group (0 without one)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """The number of processes in the default process group (1 without one)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    """Whether this process is rank 0, the one that shows progress and writes files (True without a group)."""
    return rank() == 0


def launched_world_size() -> int:
    """The number of processes a launcher such as ``torchrun`` started (its ``WORLD_SIZE``; 1 when unset)."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"the environment variable WORLD_SIZE must be an integer, got {value!r}") from None


def use_distributed(distributed: bool | None) -> bool:
    """Resolve ``fit``'s ``distributed`` option: ``None`` means data-parallel training when a process group of more
    than one process is initialized, or when a launcher started more than one process (``WORLD_SIZE > 1``);
    ``True`` insists on it (a group of one process included); ``False`` trains this process alone.

    Raises:
        TypeError: ``distributed`` is not ``True``, ``False`` or ``None``.
        RuntimeError: data-parallel training is asked for but impossible (no ``torch.distributed`` in this build of
            torch, or ``True`` with neither a process group nor the environment that ``torchrun`` sets).
    """
    if distributed is not None and not isinstance(distributed, bool):
        raise TypeError(f"distributed must be True, False or None (detect torchrun), got {distributed!r}")
    if distributed is False:
        return False
    if is_initialized():
        return distributed is True or dist.get_world_size() > 1
    launched = launched_world_size()
    if distributed is None and launched <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("data-parallel training needs torch.distributed, which this build of torch lacks")
    missing = [name for name in RENDEZVOUS if name not in os.environ]
    if missing:
        asked = "distributed=True" if distributed else f"WORLD_SIZE={launched}"
        raise RuntimeError(
            f"{asked} needs a process group: launch the script with torchrun (which sets RANK, WORLD_SIZE, "
            f"MASTER_ADDR and MASTER_PORT; {', '.join(missing)} unset here) or call "
            "torch.distributed.init_process_group first"
        )
    return True


def local_device(device: str | torch.device = "cuda") -> torch.device:
    """The device this process should use: for a CUDA ``device`` (when CUDA is available), ``cuda:LOCAL_RANK``, one
    GPU per process of a node as ``torchrun`` numbers them; otherwise the CPU, or ``device`` itself when it names
    one. Where each process sees a single GPU (``CUDA_VISIBLE_DEVICES`` set per process), the index is kept.

    Example: ``flow = Flow(RealNVP(2)).to(torchnf.distributed.local_device())``.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local = os.environ.get("LOCAL_RANK")
    if local is not None and local.isdigit() and int(local) < torch.cuda.device_count():
        return torch.device("cuda", int(local))
    return torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)


def setup(module: nn.Module) -> torch.device:
    """Make ``module`` ready for data-parallel training and return its device.

    A module on CUDA moves to :func:`local_device` (``cuda:LOCAL_RANK``), which becomes the current CUDA device.
    Without a default process group, one is initialized from the environment that ``torchrun`` sets (``env://``),
    with the ``nccl`` backend for a module on CUDA and ``gloo`` on CPU, and destroyed when the interpreter exits.
    A group the script initialized itself is used as it is.

    Raises:
        ValueError: the module is on the CPU but the process group's backend (``nccl``) reduces CUDA tensors only.
    """
    reference = next(iter([*module.parameters(), *module.buffers()]), None)
    device = torch.device("cpu") if reference is None else reference.device
    if device.type == "cuda":
        target = local_device(device)
        if target != device:
            logger.info("process %s: moving the flow from %s to %s (LOCAL_RANK)", rank(), device, target)
            module.to(target)
            device = target
        torch.cuda.set_device(device)
    if not is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        atexit.register(_destroy)
        logger.info("initialized a %s process group: rank %d of %d", backend, rank(), world_size())
    elif device.type != "cuda" and dist.get_backend() == "nccl":
        raise ValueError(
            "the process group's backend is nccl, which reduces CUDA tensors only, but the flow is on the CPU: put "
            "it on torchnf.distributed.local_device() or initialize the group with the gloo backend"
        )
    return device


def _destroy() -> None:
    if is_initialized():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    """Where small tensors for collectives must live: the current GPU under ``nccl``, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# -- splitting the data ----------------------------------------------------------------------------------------


def shard(
    n: int, generator: torch.Generator | None = None, *, process: int | None = None, processes: int | None = None
) -> Tensor:
    """The indices of one process's share of ``n`` rows: ``process::processes`` of a random permutation drawn from
    ``generator`` (every process must pass a generator in the same state, and then all draw the same permutation),
    or of ``range(n)`` without one. The shares are disjoint, cover every row, and differ in size by at most one.
    ``process`` and ``processes`` default to this process's rank and the world size."""
    process = rank() if process is None else process
    processes = world_size() if processes is None else processes
    if processes < 1 or not 0 <= process < processes:
        raise ValueError(f"process must lie in [0, processes), got process {process} of {processes}")
    order = torch.arange(n) if generator is None else torch.randperm(n, generator=generator)
    return order[process::processes]


def broadcast_seed(seed: int) -> int:
    """Process 0's ``seed``, on every process."""
    if world_size() == 1:
        return seed
    value = torch.tensor(seed, dtype=torch.int64, device=_collective_device())
    dist.broadcast(value, 0)
    return int(value)


def _fingerprint(t: Tensor) -> Tensor:
    """Four numbers that change when rows of ``t`` change or move: the count, and the sum, the sum of squares and
    a position-weighted sum of the row sums."""
    rows = t.reshape(t.shape[0], -1).double().sum(1)
    position = torch.arange(1, t.shape[0] + 1, dtype=torch.float64, device=t.device) / max(t.shape[0], 1)
    count = torch.tensor(float(t.shape[0]), dtype=torch.float64, device=t.device)
    return torch.stack([count, rows.sum(), rows.square().sum(), (rows * position).sum()])


def check_same_data(**tensors: Tensor | None) -> None:
    """Refuse data that differ between the processes (compared by a fingerprint, in one all-reduce): every
    process must pass the same data set, which :func:`torchnf.fit` shards itself. Raised on every process."""
    if world_size() == 1:
        return
    present = {name: t for name, t in tensors.items() if t is not None}
    if not present:
        return
    prints = torch.stack([_fingerprint(t).to(_collective_device()) for t in present.values()])
    extremes = torch.cat([prints, -prints])
    dist.all_reduce(extremes, dist.ReduceOp.MAX)
    high, low = extremes[: len(present)], -extremes[len(present) :]
    differ = (high - low).abs() > 1e-9 * (1 + high.abs().maximum(low.abs()))
    for name, bad in zip(present, differ.any(1).tolist(), strict=True):
        if bad:
            raise ValueError(
                f"{name} differs between the {world_size()} processes: every process must pass the same data "
                "(fit shards it between the processes itself)"
            )


# -- reducing across processes ---------------------------------------------------------------------------------


def mean_over_processes(value: Tensor) -> Tensor:
    """The mean of ``value`` over the processes (a new tensor; ``value`` itself without a group)."""
    if world_size() == 1:
        return value
    total = value.detach().to(_collective_device(), copy=True)
    dist.all_reduce(total)
    return (total / world_size()).to(value.device)


def sum_over_processes(*values: float) -> list[float]:
    """The sums of the numbers ``values`` over the processes, in float64 and one all-reduce."""
    if world_size() == 1:
        return [float(v) for v in values]
    total = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(total)
    return total.tolist()


@torch.no_grad()
def broadcast_buffers(module: nn.Module) -> None:
    """Copy process 0's buffers (running statistics, flags) into every process's ``module``."""
    if world_size() == 1:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, 0)


def barrier() -> None:
    """Wait until every process gets here (nothing without a group)."""
    if world_size() > 1:
        dist.barrier()


def on_main_process(function: Callable[[], T]) -> T | None:
    """Call ``function`` on process 0 only, the others waiting until it returns; its result on process 0, ``None``
    elsewhere. Every process must call this (it synchronizes them). An exception on process 0 is raised there and,
    as a :class:`RuntimeError` naming it, on every other process, so that none waits forever."""
    if world_size() == 1:
        return function()
    result, error = None, None
    if is_main_process():
        try:
            result = function()
        except Exception as caught:  # reported to the other processes, then raised here
            error = caught
    status: list[Any] = [None if error is None else f"{type(error).__name__}: {error}"]
    dist.broadcast_object_list(status, 0, device=_collective_device())  # the others wait here until it is done
    if error is not None:
        raise error
    if status[0] is not None:
        raise RuntimeError(f"process 0 failed: {status[0]}")
    return result


# -- the DDP wrapper -------------------------------------------------------------------------------------------


class _Loss(nn.Module):
    """A module whose forward is ``loss``, over ``module``'s parameters: what DDP wraps, since its gradient hooks
    need the loss to go through its own forward."""

    def __init__(self, module: nn.Module, loss: Callable[..., Tensor]) -> None:
        super().__init__()
        self.module = module
        self.loss = loss

    def forward(self, *args: Any) -> Tensor:
        return self.loss(*args)


def data_parallel(module: nn.Module, loss: Callable[..., Tensor], *probe: Any) -> nn.parallel.DistributedDataParallel:
    """Wrap ``loss`` (a function of a batch returning a scalar computed with ``module``) in DistributedDataParallel:
    calling the result computes the loss on this process's batch, and its backward pass leaves in ``module``'s
    parameters the gradient averaged over the processes.

    Wrapping broadcasts process 0's parameters and buffers. The wrapper's gradient hooks live as long as the
    returned module: drop it after training, so that later backward passes stay local.

    DDP must know whether some parameters get no gradient from a forward pass: ``loss(*probe)`` is differentiated
    once (``module``'s buffers restored afterwards), and any trainable parameter it leaves without a gradient turns
    on ``find_unused_parameters`` (which costs a walk over the autograd graph at every step). The loss must
    therefore include every term that depends on the parameters, regularization penalties too.
    """
    parameters = [p for p in module.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError(f"{type(module).__name__} has no trainable parameters to train in parallel")
    saved = [b.detach().clone() for b in module.buffers()]
    value = loss(*probe)
    if not value.requires_grad:
        raise ValueError("the loss does not depend on any trainable parameter")
    unused = any(g is None for g in torch.autograd.grad(value, parameters, allow_unused=True))
    with torch.no_grad():
        for buffer, before in zip(module.buffers(), saved, strict=True):
            buffer.copy_(before)
    device = parameters[0].device
    return nn.parallel.DistributedDataParallel(
        _Loss(module, loss), device_ids=[device] if device.type == "cuda" else None, find_unused_parameters=unused
    )
