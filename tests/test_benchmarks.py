"""The benchmark scripts run (on a tiny budget; their figures come from running them in full)."""

from __future__ import annotations

import math
import re
import runpy
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_equal_steps_2d_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """One step per preset prints one finite line per preset."""
    module = runpy.run_path(str(BENCHMARKS / "equal_steps_2d.py"))
    module["main"]("checkerboard", 1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(module["PRESETS"])
    assert all(re.search(r" test -?\d+\.\d{3} ", line) for line in lines), lines


def test_digits_presets_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """One step of two cheap presets prints the Gaussian baseline and one finite line per preset."""
    module = runpy.run_path(str(BENCHMARKS / "digits_presets.py"))
    module["main"](1, ["RealNVP", "MAF"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3, lines
    assert "Gaussian baseline" in lines[0]
    assert [line.split()[1] for line in lines[1:]] == ["MAF", "RealNVP"]
    assert all(re.search(r" test -?\d+\.\d{3} ", line) for line in lines), lines
    assert all(re.search(r" steps +1 ", line) for line in lines[1:]), lines


@pytest.mark.usefixtures("one_thread")  # two threads on this tiny work only add synchronization
def test_digits_images_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """One step of two image models prints the categorical baseline and one finite bits/dim line per model, in the
    order named."""
    module = runpy.run_path(str(BENCHMARKS / "digits_images.py"))
    module["main"](1, ["glow-variational", "vector-rqnsf-uniform"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3, lines
    assert "independent categorical" in lines[0] and " test 2.415 bits/dim" in lines[0]
    assert [line.split()[1] for line in lines[1:]] == ["glow-variational", "vector-rqnsf-uniform"]
    assert all(re.search(r" test \d+\.\d{3} bits/dim", line) for line in lines), lines
    assert all(re.search(r" steps +1 ", line) for line in lines[1:]), lines
    with pytest.raises(SystemExit, match="unknown model"):
        module["main"](1, ["glow"])


def test_floor_runs(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A row per preset, with positive times and ratios to the floor."""
    import torch

    threads = torch.get_num_threads()
    monkeypatch.syspath_prepend(str(BENCHMARKS.parent))
    from benchmarks import floor

    assert floor.main(["--dims", "2", "--presets", "MAF", "CouplingRQNSF", "--repeats", "1", "--batch", "16"]) == 0
    torch.set_num_threads(threads)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| MAF |", "| CouplingRQNSF |"))]
    assert [row.split("|")[1].strip() for row in rows] == ["MAF", "CouplingRQNSF"]
    assert all(float(cell) > 0 for row in rows for cell in row.strip("|").split("|")[2:]), rows


@pytest.mark.usefixtures("one_thread")  # tiny chains: threads only add synchronization
def test_sampling_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """Five variational steps and ten draws on the 2-D mixture: the fit's table, then one row per sampler with an
    acceptance, timings, a positive ESS, an R-hat, errors and the right-mode weight."""
    module = runpy.run_path(str(BENCHMARKS / "sampling.py"))
    module["main"](5, 10, ["mixture-2d"])
    out = capsys.readouterr().out
    assert out.startswith("### mixture-2d: GaussianMixture")
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("| ")]
    fit = next(row for row in rows if row[0] == "mixture-2d")
    assert fit[2] == "5 (5)" and fit[6] == "0.000" and 0 <= float(fit[7]) <= 1, fit
    samplers = [row for row in rows if row[0] in ("MALA", "HMC", "IMH", "NeuTra-HMC", "FlowMCMC", "FlowMCMC, refit")]
    assert [row[0] for row in samplers] == ["MALA", "HMC", "IMH", "NeuTra-HMC", "FlowMCMC", "FlowMCMC, refit"]
    for row in samplers:
        assert all(0 <= float(rate) <= 1 for rate in row[1].split(" / ")), row
        assert float(row[4].replace(",", "")) > 0 and float(row[7]) >= 0.9, row
        assert all(math.isfinite(float(cell.replace(",", ""))) for cell in row[2:]), row
        assert 0 <= float(row[10]) <= 1, row
    assert len(samplers[4][1].split(" / ")) == 2  # FlowMCMC: local moves and flow jumps
    assert "16 chains, 10 draws, 5 warm-up iterations" in out
    with pytest.raises(SystemExit, match="unknown target"):
        module["main"](5, 10, ["no-such-target"])


@pytest.mark.usefixtures("one_thread")
def test_amortized_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """Five steps on 300 simulations of each task: a per-fit row with a C2ST in [0, 1] per task."""
    from benchmarks import amortized  # a package module (relative imports): imported, not run as a path

    argv = ["--simulations", "300", "--seeds", "0", "--observations", "1", "--draws", "50", "--steps", "5"]
    assert amortized.main(argv) == 0
    out = capsys.readouterr().out
    for task in ("gaussian-linear", "two-moons"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {task} | 300 | 0 |"))
        c2st = float(row.strip("|").split("|")[6].split()[0])
        assert 0 <= c2st <= 1, row
