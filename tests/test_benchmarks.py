"""The benchmark scripts run (on a tiny budget; their figures come from running them in full)."""

from __future__ import annotations

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
