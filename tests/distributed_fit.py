"""Data-parallel fitting under torchrun, for ``test_distributed.py`` (and an example of a torchrun script).

Every process fits the same RealNVP to the same two moons with ``flow.fit`` (which notices torchrun and trains with
DistributedDataParallel), saves it with ``flow.save`` (written once, by process 0), and writes what the test
compares to ``OUT/rank{RANK}.json``: a hash of its weights, its history, its test log-likelihood, how many times it
wrote the model file, and the outcome of a few checks that need several processes::

    python -m torch.distributed.run --nproc_per_node 2 --standalone tests/distributed_fit.py OUT

``--backend gloo`` initializes the process group in the script (as a user may) instead of letting ``fit`` do it;
``--device cuda`` trains on the GPU (``fit`` moves the flow to ``cuda:LOCAL_RANK``); ``--compile`` fits with
``compile=True``; ``--distributed`` passes ``distributed=True``, without which ``fit`` trains in parallel only when
torchrun started more than one process.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.distributed as dist
from torch import Tensor, nn

import torchnf
from torchnf import Flow, RealNVP
from torchnf import distributed as ddp
from torchnf.datasets import two_moons
from torchnf.optimization import optimize

STEPS = 300


def moons() -> tuple[Tensor, Tensor]:
    """The quality tests' two moons (see ``conftest.moons_split``): 4,000 training and 1,000 test points."""
    x = torch.as_tensor(two_moons(5000, noise=0.05, seed=0), dtype=torch.float32)
    return x[:4000], x[4000:]


def state_hash(flow: nn.Module) -> str:
    """A hash of every parameter and buffer, by name."""
    digest = hashlib.sha256()
    for name, tensor in sorted(flow.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def fit_moons(
    steps: int = STEPS, device: str = "cpu", distributed: bool | None = None, seed: int = 0, compile: bool = False
) -> tuple[Flow, float]:
    """Fit a small RealNVP to the moons; return it and its test log-likelihood (nats per point). Each process starts
    from different weights (seeded by ``seed`` and its rank): the fit must broadcast process 0's."""
    train, test = moons()
    torch.manual_seed(1000 * seed + ddp.rank())
    flow = Flow(RealNVP(2, layers=4, hidden=(32, 32))).to(device)
    options = {"steps": steps, "batch_size": 256, "lr": 3e-3, "seed": seed, "compile": compile}
    flow.fit(train, progress=False, distributed=distributed, **options)
    with torch.no_grad():
        return flow, float(flow.log_prob(test).mean())


def _error(call: Any) -> str:
    """The type and message of what ``call()`` raises ('' when nothing)."""
    try:
        call()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return ""


def skipped_everywhere(device: str) -> dict[str, Any]:
    """``optimize`` with DDP when only process 1's loss is non-finite at step 3: every process must skip it."""
    torch.manual_seed(ddp.rank())
    model = nn.Linear(2, 1).to(device)
    x = torch.randn(64, 2, device=device)

    def mse(batch: Tensor) -> Tensor:
        return model(batch).square().mean()

    loss = ddp.data_parallel(model, mse, x[:8])
    step = 0

    def batch_loss() -> Tensor:
        nonlocal step
        step += 1
        value = loss(x[8 * (step % 8) : 8 * (step % 8) + 8])
        return value * math.nan if (step == 3 and ddp.rank() == 1) else value

    history = optimize(model, batch_loss, max_steps=10, eval_every=5, progress=False, average=ddp.mean_over_processes)
    return {"skipped": history.skipped_steps, "hash": state_hash(model), "train_loss": history.train_loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="fit with compile=True")
    parser.add_argument("--distributed", action="store_true", help="pass distributed=True (needed for one process)")
    parser.add_argument("--backend", default=None, help="initialize the process group here with this backend")
    args = parser.parse_args()
    if args.backend is not None:
        dist.init_process_group(args.backend)

    writes = 0
    save_file = safetensors.torch.save_file

    def counting_save_file(*a: Any, **k: Any) -> None:
        nonlocal writes
        writes += 1
        save_file(*a, **k)

    safetensors.torch.save_file = counting_save_file  # torchnf.io calls it through the module

    start = time.perf_counter()
    distributed = True if args.distributed else None
    flow, test_log_likelihood = fit_moons(args.steps, args.device, distributed, args.seed, args.compile)
    seconds = time.perf_counter() - start
    path = args.out / "flow.safetensors"
    flow.save(path)
    loaded = torchnf.load(path, device=flow.device)  # every process may read it once save returns
    train, _ = moons()
    record = {
        "rank": ddp.rank(),
        "world_size": ddp.world_size(),
        "device": str(flow.device),
        "backend": dist.get_backend(),
        "hash": state_hash(flow),
        "loaded_hash": state_hash(loaded),
        "history": dataclasses.asdict(flow.history),
        "test_log_likelihood": test_log_likelihood,
        "fit_seconds": seconds,
        "writes": writes,
        # every process must refuse data that differ between processes, and hear of process 0's failure to save
        "different_data": _error(lambda: Flow(RealNVP(2)).to(args.device).fit(train + ddp.rank(), steps=1)),
        "save_error": _error(lambda: flow.save(args.out / "missing" / "flow.safetensors")),
        "skip": skipped_everywhere(str(flow.device)),
    }
    (args.out / f"rank{ddp.rank()}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
