"""The peer-comparison harness (``benchmarks/peers``) on a tiny configuration: torchnf alone, then torchnf with each
peer that is installed (peers are not in the dev setup, so those tests skip without them)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--dims", "2", "--layers", "1", "--hidden", "8", "--threads", "1"]
SPEED = ["speed", *TINY, "--repeats", "1", "--sample-repeats", "1", "--warmup", "1", "--in-process"]
MODELS = ("MAF", "RealNVP", "CouplingRQNSF", "MaskedAutoregressiveRQNSF")
VARIATIONAL = ["--steps", "3", "--targets", "U1", "--models", "RealNVP", "--layers", "1", "--hidden", "8"]


@pytest.fixture(scope="module")
def peers() -> Iterator[ModuleType]:
    """The ``benchmarks.peers`` package (importable from the repository root), restoring torch's thread count."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT))
        import benchmarks.peers.cli

        yield benchmarks.peers
    torch.set_num_threads(threads)


def _rows(report: str, title: str) -> list[list[str]]:
    """The body rows of the Markdown table under the heading that starts with ``title``."""
    section = report.split(f"### {title}", 1)[1].split("###", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_speed_tables_torchnf_alone(peers: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """One row per model in each operation's table, a time per cell, no ratio without a peer, and the header; the
    raw results render to the same tables again."""
    assert peers.cli.main([*SPEED, "--libraries", "torchnf", "--json", str(tmp_path / "raw.jsonl")]) == 0
    report = capsys.readouterr().out
    assert peers.cli.main(["render", str(tmp_path / "raw.jsonl")]) == 0
    assert capsys.readouterr().out.strip() in report
    assert "torch.set_num_threads(1)" in report and f"torch {torch.__version__}" in report
    assert "- command: `" in report and "speed --dims 2" in report
    assert report.count(": fastest timed call, ms") == 3 and report.count(": peak memory growth, MiB") == 3
    for title in ("Training step", "log_prob of a batch", "Sampling a batch"):
        rows = _rows(report, title)
        assert [row[0] for row in rows] == list(MODELS)
        assert all(row[1] == "2" and re.fullmatch(r"\d[\d,.]*", row[2]) and row[3] == "-" for row in rows), rows
    assert [row[2] for row in _rows(report, "Trainable parameters")] == ["60", "34", "223", "438"]


@pytest.mark.parametrize("peer", ["zuko", "nflows", "normflows", "torchflows"])
def test_speed_tables_with_a_peer(peer: str, peers: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """With an installed peer: its column is filled, the ratio names it, and the builders agree on parameters."""
    pytest.importorskip(peer)
    assert peers.cli.main([*SPEED, "--libraries", "torchnf", peer, "--operations", "train_step", "sample"]) == 0
    report = capsys.readouterr().out
    for row in _rows(report, "Training step") + _rows(report, "Sampling a batch"):
        assert re.fullmatch(r"\d[\d,.]*", row[3]), row
        assert re.fullmatch(rf"\d+\.\d\dx \({peer}\)", row[4]), row
    assert all(row[2] == row[3] for row in _rows(report, "Trainable parameters"))


def test_missing_peer_is_skipped(
    peers: ModuleType, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer that is not installed is named in the output and left out of the tables."""
    from importlib.metadata import PackageNotFoundError

    def version(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(peers.libraries, "version", version)
    assert peers.libraries.probe("zuko").error == "not installed"
    assert peers.cli.main([*SPEED, "--libraries", "zuko", "--models", "MAF", "--operations", "log_prob"]) == 0
    captured = capsys.readouterr()
    assert "skipping zuko: not installed" in captured.err and "- skipped zuko: not installed" in captured.out


def test_a_case_in_a_worker_process(peers: ModuleType) -> None:
    """The default isolation: a case in a fresh process gives a time, a memory figure and a parameter count."""
    from benchmarks.peers.case import Case
    from benchmarks.peers.spec import ModelSpec
    from benchmarks.peers.speed import run_group

    case = Case("torchnf", "MAF", 2, "log_prob", ModelSpec(1, (8,)), batch=64, warmup=1, repeats=2, threads=1)
    (result,) = run_group([case], kill_after_s=60)
    assert not result.error and result.median_ms > 0 and result.repeats == 2 and result.parameters == 60
    assert result.peak_mib is not None
    (hung,) = run_group([case], kill_after_s=0.05)  # a worker cannot even start that fast: it is killed
    assert hung.error.startswith("timeout") and hung.median_ms is None


def test_a_failing_case_is_reported(peers: ModuleType) -> None:
    """A case that cannot be built gives a result with the error instead of raising."""
    from benchmarks.peers.case import Case
    from benchmarks.peers.spec import ModelSpec
    from benchmarks.peers.worker import run_case

    result = run_case(Case("torchnf", "NoSuchModel", 2, "log_prob", ModelSpec(1, (8,)), threads=1))
    assert result.error.startswith("ValueError: unknown model") and result.median_ms is None


def test_budget_caps_a_slow_call(peers: ModuleType) -> None:
    """A first call over the budget is the only measurement; repeats stop once they have used the budget."""
    from benchmarks.peers.timing import measure

    slow = measure(lambda: time.sleep(0.03), warmup=3, repeats=5, budget_s=0.01)
    assert slow.once and len(slow.times_s) == 1 and slow.median_s >= 0.03
    capped = measure(lambda: time.sleep(0.02), warmup=1, repeats=50, budget_s=0.05)
    assert not capped.once and 1 <= len(capped.times_s) <= 4


def test_quality_table(peers: ModuleType, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A fraction of a second of fitting still gives a finite test log-likelihood (of the best validation weights)
    and step counts."""
    argv = ["quality", *TINY[2:], "--libraries", "torchnf", "--models", "RealNVP", "--datasets", "checkerboard"]
    assert peers.cli.main([*argv, "--seconds", "0.3", "--eval-every", "0.1", "--json", str(tmp_path / "f.jsonl")]) == 0
    report = capsys.readouterr().out
    assert peers.cli.main(["render", str(tmp_path / "f.jsonl")]) == 0
    assert _rows(capsys.readouterr().out, "Test log-likelihood") == _rows(report, "Test log-likelihood")
    (row,) = _rows(report, "Test log-likelihood")
    assert row[:3] == ["checkerboard", "2", "RealNVP"] and -20 < float(row[3]) < 0
    (steps,) = _rows(report, "Adam steps")
    taken, best = re.fullmatch(r"([\d,]+) \(([\d,]+)\)", steps[3]).groups()
    assert int(taken.replace(",", "")) >= int(best.replace(",", "")) >= 0 and int(taken.replace(",", "")) >= 1


def test_fit_stops_at_a_non_finite_loss_keeping_the_best_weights(peers: ModuleType) -> None:
    """A loss that turns non-finite ends the fit early; the best validated weights before it are restored."""
    from benchmarks.peers.adapter import Built
    from benchmarks.peers.quality import fit_for

    torch.manual_seed(0)
    module = torch.nn.Linear(1, 1)
    calls = []

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        calls.append(module.training)
        value = -(x - module.bias).square().sum(-1)
        return value * float("nan") if sum(calls) > 5 else value  # the sixth training batch diverges

    built = Built(module, log_prob, lambda n: torch.zeros(n, 1))
    steps, best, seconds, stopped = fit_for(built, torch.randn(64, 1), torch.randn(16, 1), 5.0, 0.0, 16, 0.1, 0)
    assert stopped and steps == 5 and 0 <= best <= 5 and seconds < 5 and not module.training
    assert torch.isfinite(module.bias).all()


def test_compiled_torchnf_has_its_own_column(peers: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """torchnf's compiled path is timed like a library; without a peer there is no speed-up to show."""
    argv = [*SPEED, "--libraries", "torchnf", "torchnf-compiled", "--models", "RealNVP", "--operations", "log_prob"]
    assert peers.cli.main(argv) == 0
    report = capsys.readouterr().out
    assert "| torchnf speed-up | torchnf-compiled speed-up |" in report
    (row,) = _rows(report, "log_prob of a batch")
    assert row[:2] == ["RealNVP", "2"] and all(re.fullmatch(r"\d[\d,.]*", cell) for cell in row[2:4])
    assert row[4:] == ["-", "-"]


def _variational_rows(report: str) -> list[list[str]]:
    """The rows of the reverse-KL comparison's table (all RealNVP here)."""
    lines = [line for line in report.splitlines() if line.startswith("| RealNVP |")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def _check_variational_row(row: list[str]) -> None:
    """A step time, no skipped step, and diagnostics in range: the ELBO below the log Z of the same draws."""
    assert float(row[3]) > 0 and float(row[4]) >= 0 and row[5] == "0", row
    elbo, log_z = (float(cell.split(" ± ")[0]) for cell in row[6:8])
    assert elbo <= log_z + 1e-3 and 0 < float(row[8]) <= 1 and re.fullmatch(r"-?\d+\.\d\d", row[9]), row


def test_variational_torchnf_alone(peers: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """Without peers: fit_variational and the plain loop each give a row, with the same parameter count."""
    from benchmarks import peers_variational

    assert peers_variational.main([*VARIATIONAL, "--libraries"]) == 0
    report = capsys.readouterr().out
    assert "- command: `.venv/bin/python -m benchmarks.peers_variational --steps 3" in report
    assert "### U1: RezendePotential(name='U1'), true log Z 1.8775" in report
    rows = _variational_rows(report)
    assert [row[1] for row in rows] == ["fit_variational", "torchnf loop"]
    assert all(row[2] == "34" for row in rows), rows
    for row in rows:
        _check_variational_row(row)


@pytest.mark.parametrize("peer", ["zuko", "nflows", "normflows", "torchflows"])
def test_variational_with_a_peer(peer: str, peers: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """With an installed peer: its plain reverse-KL loop gives a row with as many parameters as torchnf's."""
    pytest.importorskip(peer)
    from benchmarks import peers_variational

    assert peers_variational.main([*VARIATIONAL, "--libraries", peer]) == 0
    rows = _variational_rows(capsys.readouterr().out)
    assert [row[1] for row in rows] == ["fit_variational", "torchnf loop", peer]
    assert len({row[2] for row in rows}) == 1, rows
    _check_variational_row(rows[-1])
