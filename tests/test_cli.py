"""The ``torchnf`` command."""

from __future__ import annotations

import re

from click.testing import CliRunner

from torchnf.cli import main
from torchnf.demo import run_demo


def test_demo_prints_the_comparison_table() -> None:
    """``torchnf demo`` prints the flow's and the Gaussian's log-likelihoods and exits 0."""
    result = CliRunner().invoke(main, ["demo", "--steps", "60"])
    assert result.exit_code == 0, result.output
    assert re.search(r"\| RealNVP \| -?\d+\.\d{3} \| -?\d+\.\d{3} \|", result.output)
    assert "| full-covariance Gaussian |" in result.output
    assert "60 steps in" in result.output


def test_demo_flow_beats_the_gaussian() -> None:
    """Even a short demo fit is far better than the Gaussian on held-out data."""
    result = run_demo(steps=300, progress=False)
    assert result.flow_test > result.gaussian_test + 0.5, result
