"""The Gaussian baseline and the built-in data sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchnf.baselines import GaussianBaseline
from torchnf.datasets import two_moons


def test_gaussian_baseline_matches_the_closed_form() -> None:
    """The fitted Gaussian's log-density equals the maximum-likelihood normal's, computed by hand."""
    x = torch.randn(500, 3, dtype=torch.float64) @ torch.tensor(
        [[1.0, 0.5, 0.0], [0.0, 2.0, 0.3], [0, 0, 0.5]], dtype=torch.float64
    )
    mean, cov = x.mean(0), torch.cov(x.T, correction=0)
    diff = x - mean
    expected = -0.5 * (diff @ torch.linalg.inv(cov) * diff).sum(1) - 0.5 * torch.logdet(2 * torch.pi * cov)
    torch.testing.assert_close(GaussianBaseline(ridge=0).fit(x).log_prob(x), expected)


@pytest.mark.parametrize("bad", [np.zeros((1, 2)), np.zeros(3), np.array([[1.0, np.nan], [0.0, 1.0]])])
def test_gaussian_baseline_refuses_bad_data(bad: np.ndarray) -> None:
    """Too few points, a vector, or NaN is refused with a clear message."""
    with pytest.raises(ValueError, match="x "):
        GaussianBaseline().fit(bad)


def test_two_moons_is_deterministic() -> None:
    """The same seed gives the same points; another seed gives others."""
    assert np.array_equal(two_moons(100, seed=1), two_moons(100, seed=1))
    assert not np.array_equal(two_moons(100, seed=1), two_moons(100, seed=2))
    assert two_moons(100).shape == (100, 2)
