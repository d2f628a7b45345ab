"""The Gaussian and independent categorical baselines and the built-in data sets."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
import torch

from torchnf.baselines import GaussianBaseline, IndependentCategoricalBaseline
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


def test_categorical_baseline_sums_to_one_over_every_configuration() -> None:
    """On a 2x2 event with 3 levels, the 81 configurations' probabilities sum to 1, and log_prob takes any batch
    shape (here the configurations as a 9x9 grid)."""
    torch.manual_seed(0)
    x = torch.randint(0, 3, (20, 2, 2))
    baseline = IndependentCategoricalBaseline(levels=3).fit(x)
    grid = torch.tensor(list(itertools.product(range(3), repeat=4))).reshape(9, 9, 2, 2)
    log_p = baseline.log_prob(grid)
    assert log_p.shape == (9, 9) and log_p.dtype == torch.float64
    torch.testing.assert_close(log_p.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(baseline.probs.sum(-1), torch.ones(2, 2, dtype=torch.float64))


def test_categorical_baseline_smoothing_matches_the_counts() -> None:
    """pi = (count + alpha) / (n + K alpha): alpha 0 is the plain frequency (an unseen level is impossible), and the
    log-probability of a point is the sum over its coordinates; integer, float and NumPy data agree."""
    x = np.array([[0, 3], [0, 3], [1, 3], [0, 2]])  # coordinate 0 never takes 2 or 3, coordinate 1 never 0 or 1
    for alpha in (0.0, 0.5, 2.0):
        baseline = IndependentCategoricalBaseline(levels=4, alpha=alpha).fit(x)
        expected = (torch.tensor([[3, 1, 0, 0], [0, 0, 1, 3]], dtype=torch.float64) + alpha) / (4 + 4 * alpha)
        torch.testing.assert_close(baseline.probs, expected)
        point = torch.tensor([[1.0, 2.0]])
        torch.testing.assert_close(baseline.log_prob(point), (expected[0, 1] * expected[1, 2]).log().reshape(1))
        torch.testing.assert_close(baseline.log_prob(point.long()), baseline.log_prob(point.numpy()))
    assert IndependentCategoricalBaseline(levels=4, alpha=0).fit(x).log_prob(np.array([[2, 3]])).item() == -math.inf
    assert math.isfinite(IndependentCategoricalBaseline(levels=4).fit(x).log_prob(np.array([[2, 3]])).item())


def test_categorical_baseline_bits_per_dim() -> None:
    """Bits per dimension is the mean -log2 P(x) over points, divided by the number of coordinates; a uniform fit
    (every level equally often) costs log2 K bits per coordinate."""
    x = torch.tensor([[0, 1, 2], [1, 2, 0], [2, 0, 1]]).reshape(3, 3, 1)
    baseline = IndependentCategoricalBaseline(levels=3).fit(x)
    assert baseline.event_shape == (3, 1)
    assert baseline.bits_per_dim(x) == pytest.approx(math.log2(3))
    skewed = IndependentCategoricalBaseline(levels=3, alpha=0.1).fit(torch.zeros(10, 3, 1))
    assert skewed.bits_per_dim(x[:1]) == pytest.approx(-float(skewed.log_prob(x[:1])) / (3 * math.log(2)))
    scalar = IndependentCategoricalBaseline(levels=2).fit(torch.tensor([0, 1, 1, 1]))  # event shape ()
    assert scalar.bits_per_dim(torch.tensor([1])) == pytest.approx(-math.log2(3.5 / 5))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.array([[0.0, 1.5]]), "integer levels 0, 1, ..., 2; it holds 1.5 at index (0, 1)"),
        (np.array([[0, 3]]), "it holds 3.0"),
        (np.array([[-1, 0]]), "it holds -1.0"),
        (np.array([[0.0, np.nan]]), "it holds nan"),
        (np.zeros((0, 2)), "x is empty"),
        (np.array(1.0), "got a scalar"),
    ],
    ids=["fraction", "too high", "negative", "nan", "empty", "scalar"],
)
def test_categorical_baseline_refuses_bad_data(bad: np.ndarray, message: str) -> None:
    """Non-integer, out-of-range, non-finite and empty data are refused, naming the offending value."""
    with pytest.raises(ValueError, match=re.escape(message)):
        IndependentCategoricalBaseline(levels=3).fit(bad)


def test_categorical_baseline_refuses_bad_settings_and_queries() -> None:
    """Bad levels or alpha, log_prob before fit, a wrong event shape, an empty batch and strings are refused."""
    for levels in (1, 2.0, True):
        with pytest.raises(ValueError, match="levels must be an int of at least 2"):
            IndependentCategoricalBaseline(levels=levels)  # type: ignore[arg-type]
    for alpha in (-0.1, math.inf, math.nan):
        with pytest.raises(ValueError, match="alpha must be a finite number"):
            IndependentCategoricalBaseline(levels=3, alpha=alpha)
    baseline = IndependentCategoricalBaseline(levels=3)
    with pytest.raises(RuntimeError, match="call fit before log_prob"):
        baseline.log_prob(np.zeros((1, 2)))
    baseline.fit(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 2\)"):
        baseline.log_prob(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="x is empty"):
        baseline.bits_per_dim(np.zeros((0, 2)))
    assert baseline.log_prob(np.zeros((0, 2))).shape == (0,)
    with pytest.raises(ValueError, match=r"it holds 5\.0"):
        baseline.log_prob(np.array([[0, 5]]))
    with pytest.raises(TypeError, match="numeric array"):
        baseline.fit([["a", "b"]])


def test_two_moons_is_deterministic() -> None:
    """The same seed gives the same points; another seed gives others."""
    assert np.array_equal(two_moons(100, seed=1), two_moons(100, seed=1))
    assert not np.array_equal(two_moons(100, seed=1), two_moons(100, seed=2))
    assert two_moons(100).shape == (100, 2)
