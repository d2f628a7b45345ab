"""Data-parallel fitting (``fit(distributed=...)``, :mod:`torchnf.distributed`): the pieces that need no second
process, a process group of one in this process, and two CPU processes launched by ``torchrun`` with ``gloo``
running ``distributed_fit.py`` (which fits RealNVP to two moons and saves it).

The quality figures behind ``test_parallel_fit_is_as_good_as_a_single_process_fit`` (RealNVP with 4 layers of
32x32, 300 steps, global batch 256, lr 3e-3, one thread per process; test log-likelihoods in nats per point, the
Gaussian baseline's being -1.890):

====  ===========  =============  ==========
seed  one process  two processes  difference
====  ===========  =============  ==========
0     -0.809       -0.838         0.029
1     -0.754       -0.794         0.040
2     -0.818       -0.766         0.052
3     -0.730       -0.678         0.052
4     -0.677       -0.822         0.145
5     -0.952       -0.896         0.056
6     -0.718       -0.746         0.028
7     -0.723       -0.565         0.158
8     -0.643       -0.812         0.169
9     -0.900       -0.918         0.018
mean  -0.773       -0.787
====  ===========  =============  ==========

Both beat the baseline by over 0.9 nats on every seed and differ by at most 0.17 nats (300 steps leave the fits
short of convergence, so runs over different minibatches differ that much): the test asks for a margin of 0.8 nats
over the baseline and a difference under 0.35 nats.

The GPU tests (skipped without CUDA) run ``nccl`` with one process per GPU (one process on a single-GPU machine),
and ``gloo`` with two processes sharing the first GPU, which NCCL refuses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import distributed_fit  # the torchrun script, beside this file
import pytest
import torch
import torch.distributed as dist
from torch import nn

import torchnf
from torchnf import SINF, Flow, RealNVP
from torchnf import distributed as ddp
from torchnf.baselines import GaussianBaseline

SCRIPT = Path(distributed_fit.__file__)
TIMEOUT = 300  # seconds for one torchrun, far above the ~15 s it takes, so that a hang fails instead of blocking
BASELINE_MARGIN = 0.8  # nats by which both fits must beat the Gaussian
MAX_DIFFERENCE = 0.35  # nats between the one-process and two-process test log-likelihoods
RENDEZVOUS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def torchrun(out: Path, *options: str, processes: int = 2) -> list[dict[str, Any]]:
    """Run ``distributed_fit.py`` under torchrun; return each process's record, by rank."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--standalone"]
    command += [str(SCRIPT), str(out), *options]
    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    ) as run:
        try:
            output, _ = run.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)  # torchrun and its workers
            output, _ = run.communicate()
            pytest.fail(f"torchrun did not finish in {TIMEOUT} s:\n{output[-4000:]}")
    if run.returncode != 0:
        pytest.fail(f"torchrun failed with exit code {run.returncode}:\n{output[-4000:]}")
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(processes)]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    out = tmp_path_factory.mktemp("torchrun")
    return torchrun(out), out


@pytest.fixture
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as if started without torchrun."""
    for name in RENDEZVOUS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def group_of_one(tmp_path: Path, no_launcher: None) -> Any:
    """A gloo process group of this process alone, destroyed afterwards."""
    if ddp.is_initialized():
        pytest.skip("a process group is already initialized in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def moons_flow(seed: int = 0) -> Flow:
    torch.manual_seed(seed)
    return Flow(RealNVP(2, layers=2, hidden=(16,)))


# -- no second process -----------------------------------------------------------------------------------------


def test_shards_are_disjoint_balanced_and_cover_every_row() -> None:
    shards = [ddp.shard(10, torch.Generator().manual_seed(3), process=p, processes=3) for p in range(3)]
    assert [len(s) for s in shards] == [4, 3, 3]
    assert sorted(torch.cat(shards).tolist()) == list(range(10))
    permutation = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(shards[1], permutation[1::3])  # every process draws the same permutation from the same seed
    assert ddp.shard(7, process=1, processes=2).tolist() == [1, 3, 5]
    assert ddp.shard(5).tolist() == list(range(5))  # without a group: everything


@pytest.mark.parametrize("process, processes", [(2, 2), (-1, 2), (0, 0)])
def test_shard_refuses_a_process_outside_the_world(process: int, processes: int) -> None:
    with pytest.raises(ValueError, match="process must lie in"):
        ddp.shard(10, process=process, processes=processes)


@pytest.mark.parametrize("value", ["yes", 1, 0, "auto"])
def test_distributed_must_be_a_bool_or_none(value: Any) -> None:
    with pytest.raises(TypeError, match="distributed must be True, False or None"):
        ddp.use_distributed(value)
    with pytest.raises(TypeError, match="distributed must be True, False or None"):
        moons_flow().fit(torch.randn(50, 2), steps=1, distributed=value)


def test_auto_detection_follows_the_launcher(no_launcher: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not ddp.use_distributed(None)
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node 1
    assert not ddp.use_distributed(None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not ddp.use_distributed(False)
    with pytest.raises(RuntimeError, match=r"launch the script with torchrun.*MASTER_ADDR"):
        ddp.use_distributed(None)  # WORLD_SIZE alone is not a rendezvous
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer"):
        ddp.use_distributed(None)


def test_distributed_true_without_a_process_group_is_refused_before_anything_changes(no_launcher: None) -> None:
    flow = moons_flow()
    before = {k: v.clone() for k, v in flow.state_dict().items()}
    with pytest.raises(RuntimeError, match="distributed=True needs a process group: launch the script with torchrun"):
        flow.fit(torch.randn(50, 2), steps=1, distributed=True)
    assert all(torch.equal(before[k], v) for k, v in flow.state_dict().items())
    assert flow.history is None


def test_without_a_process_group_the_helpers_act_locally(tmp_path: Path, no_launcher: None) -> None:
    assert (ddp.rank(), ddp.world_size(), ddp.is_main_process(), ddp.is_initialized()) == (0, 1, True, False)
    value = torch.tensor(2.5)
    assert ddp.mean_over_processes(value) is value
    assert ddp.sum_over_processes(1.5, 2) == [1.5, 2.0]
    assert ddp.broadcast_seed(7) == 7
    ddp.check_same_data(x=value, context=None)
    ddp.barrier()
    assert ddp.on_main_process(lambda: 3) == 3
    assert ddp.local_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert ddp.local_device() == torch.device("cpu")


# -- a process group of one, in this process -------------------------------------------------------------------


def test_a_group_of_one_trains_through_ddp_and_saves(group_of_one: None, tmp_path: Path, one_thread: None) -> None:
    x = torch.as_tensor(distributed_fit.moons()[0][:1000])
    flow = moons_flow()
    history = flow.fit(x, steps=100, seed=0, progress=False, distributed=True)
    assert len(history.val_loss) == 2 and history.val_loss[-1] < history.val_loss[0]
    assert not flow.training
    flow.save(tmp_path / "flow.safetensors")
    loaded = torchnf.load(tmp_path / "flow.safetensors")
    assert torch.equal(loaded.log_prob(x[:5]), flow.log_prob(x[:5]))
    assert not ddp.use_distributed(None)  # a group of one process: no point in wrapping by default


def test_parameters_without_a_gradient_turn_on_find_unused_parameters(group_of_one: None) -> None:
    model = nn.ModuleDict({"used": nn.Linear(2, 2), "norm": nn.BatchNorm1d(2), "unused": nn.Linear(2, 1)})

    def loss(x: torch.Tensor) -> torch.Tensor:
        return model["norm"](model["used"](x)).square().mean()

    wrapped = ddp.data_parallel(model, loss, torch.randn(8, 2))
    assert wrapped.find_unused_parameters
    assert torch.equal(model["norm"].running_mean, torch.zeros(2))  # the probing pass left the buffers alone
    for _ in range(2):  # DDP accepts the parameter that never gets a gradient, step after step
        wrapped(torch.randn(8, 2)).backward()
    assert model["unused"].weight.grad is None and model["used"].weight.grad is not None
    dense = nn.Linear(2, 1)
    assert not ddp.data_parallel(dense, lambda x: dense(x).mean(), torch.randn(4, 2)).find_unused_parameters


def test_greedy_fitting_is_refused_in_parallel(group_of_one: None) -> None:
    flow = Flow(SINF(2))
    with pytest.raises(ValueError, match="fitted greedily, which runs in one process: pass distributed=False"):
        flow.fit(torch.randn(100, 2), distributed=True)


# -- two processes under torchrun ---------------------------------------------------------------------------------


def test_processes_end_with_identical_weights_and_history(two_processes: tuple[list[dict[str, Any]], Path]) -> None:
    records, _ = two_processes
    first, second = records
    assert (first["world_size"], first["backend"], second["rank"]) == (2, "gloo", 1)
    assert first["hash"] == second["hash"]  # they started from different weights (seeded by rank)
    assert first["history"] == second["history"]
    assert first["history"]["step"][-1] == distributed_fit.STEPS
    assert first["test_log_likelihood"] == second["test_log_likelihood"]


def test_the_model_file_is_written_once_and_loads(two_processes: tuple[list[dict[str, Any]], Path]) -> None:
    records, out = two_processes
    assert [r["writes"] for r in records] == [1, 0]
    assert all(r["loaded_hash"] == r["hash"] for r in records)  # every process could read it after save returned
    flow = torchnf.load(out / "flow.safetensors")
    _, test = distributed_fit.moons()
    with torch.no_grad():
        test_log_likelihood = float(flow.log_prob(test).mean())
    assert test_log_likelihood == pytest.approx(records[0]["test_log_likelihood"], abs=1e-5)


def test_parallel_fit_is_as_good_as_a_single_process_fit(
    two_processes: tuple[list[dict[str, Any]], Path], no_launcher: None, one_thread: None
) -> None:
    records, _ = two_processes
    train, test = distributed_fit.moons()
    baseline = float(GaussianBaseline().fit(train).log_prob(test).mean())
    _, single = distributed_fit.fit_moons(distributed=False)
    parallel = records[0]["test_log_likelihood"]
    assert single > baseline + BASELINE_MARGIN
    assert parallel > baseline + BASELINE_MARGIN
    assert abs(single - parallel) < MAX_DIFFERENCE


def test_every_process_takes_the_same_decisions(two_processes: tuple[list[dict[str, Any]], Path]) -> None:
    first, second = two_processes[0]
    # a step whose loss is non-finite on one process only is skipped on both, and the weights stay identical
    assert first["skip"]["skipped"] == second["skip"]["skipped"] == 1
    assert first["skip"] == second["skip"]
    # data that differ between the processes are refused on both
    for record in (first, second):
        assert record["different_data"].startswith("ValueError: x differs between the 2 processes")
    # process 0's failure to save is raised on process 0 and reported on process 1, neither waiting forever
    assert first["save_error"].startswith("FileNotFoundError: cannot save to")
    assert second["save_error"].startswith("RuntimeError: process 0 failed: FileNotFoundError")


@pytest.mark.slow
def test_compiled_fit_under_torchrun(tmp_path: Path) -> None:
    first, second = torchrun(tmp_path, "--compile", "--steps", "100")
    assert first["hash"] == second["hash"] and first["history"] == second["history"]
    assert first["history"]["val_loss"][-1] < first["history"]["val_loss"][0]


# -- GPUs ----------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs a CUDA GPU")
def test_nccl_with_one_process_per_gpu(tmp_path: Path) -> None:
    processes = min(torch.cuda.device_count(), 2)
    records = torchrun(tmp_path, "--device", "cuda", "--distributed", processes=processes)
    assert [r["backend"] for r in records] == ["nccl"] * processes
    assert [r["device"] for r in records] == [f"cuda:{rank}" for rank in range(processes)]  # cuda:LOCAL_RANK
    assert len({r["hash"] for r in records}) == 1 and len({json.dumps(r["history"]) for r in records}) == 1
    assert sum(r["writes"] for r in records) == 1
    train, test = distributed_fit.moons()
    baseline = float(GaussianBaseline().fit(train).log_prob(test).mean())
    assert records[0]["test_log_likelihood"] > baseline + BASELINE_MARGIN


@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs a CUDA GPU")
def test_gloo_with_cuda_tensors_in_two_processes(tmp_path: Path) -> None:
    first, second = torchrun(tmp_path, "--device", "cuda", "--backend", "gloo")
    assert (first["backend"], first["device"]) == ("gloo", "cuda:0")
    assert first["hash"] == second["hash"] and first["history"] == second["history"]
    assert first["writes"] + second["writes"] == 1
    assert first["skip"] == second["skip"] and first["skip"]["skipped"] == 1
