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
