"""The classifier two-sample test: chance for one distribution, near 1 for separated ones, near the optimal accuracy
for a known overlap; seeded, invariant to affine maps of the data, and strict about its input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from torchnf.c2st import C2STResult, c2st, classifier_two_sample_test, default_classifier


def _normal(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


def test_same_distribution_is_chance() -> None:
    """Two samples of one Gaussian: about 0.5 (the standard deviation of a mean accuracy over 1,000 points is 0.016)."""
    assert abs(c2st(_normal(500, 3, 0), _normal(500, 3, 1)) - 0.5) < 0.06


def test_separated_distributions_are_told_apart() -> None:
    assert c2st(_normal(300, 2, 0), _normal(300, 2, 1, shift=5.0)) > 0.98


def test_overlap_gives_the_optimal_accuracy() -> None:
    r"""Means :math:`\delta` apart along one axis: the best accuracy is :math:`\Phi(\delta / 2)`, 0.691 for
    :math:`\delta = 1`, which the MLP nearly reaches."""
    p, q = _normal(1000, 2, 0), _normal(1000, 2, 1)
    q[:, 0] += 1.0
    optimal = 0.5 * (1 + math.erf(0.5 / math.sqrt(2)))
    assert abs(c2st(p, q) - optimal) < 0.04


def test_result_details() -> None:
    result = classifier_two_sample_test(_normal(100, 2, 0), _normal(60, 2, 1, shift=3.0), folds=4)
    assert isinstance(result, C2STResult)
    assert len(result.fold_accuracies) == 4 and result.sizes == (100, 60)
    assert result.chance == 100 / 160
    assert result.accuracy == pytest.approx(float(np.mean(result.fold_accuracies)))
    assert result.spread >= 0


def test_seeded_and_leaves_global_state_alone() -> None:
    p, q = _normal(200, 2, 0), _normal(200, 2, 1, shift=0.5)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    first = classifier_two_sample_test(p, q, folds=3, seed=4)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True))
    assert classifier_two_sample_test(p, q, folds=3, seed=4) == first


def test_standardization_removes_scale() -> None:
    """With the standardization by the first sample, an affine map of both samples changes (almost) nothing; data
    far from unit scale still work."""
    p, q = _normal(300, 2, 0), _normal(300, 2, 1, shift=0.7)
    scale, shift = torch.tensor([1e4, 1e-3], dtype=torch.float64), torch.tensor([5e5, -3.0], dtype=torch.float64)
    plain = c2st(p, q, folds=3)
    assert abs(c2st(p * scale + shift, q * scale + shift, folds=3) - plain) < 0.02
    assert c2st(p, q, folds=3, standardize=False) > 0.6


def test_inputs_numpy_one_feature_and_custom_classifier() -> None:
    p, q = _normal(200, 1, 0).numpy(), _normal(200, 1, 1, shift=4.0).numpy()
    assert c2st(p[:, 0], q[:, 0], folds=2) > 0.95
    classifier = LogisticRegression()
    assert c2st(p, q, folds=2, classifier=classifier) > 0.95
    assert not hasattr(classifier, "coef_")  # cloned, not fitted in place
    assert c2st(p.astype(np.float32), q, folds=2, threads=None) > 0.95


def test_constant_feature() -> None:
    """A feature that is constant in the first sample is only shifted, not divided by zero."""
    p, q = _normal(100, 2, 0), _normal(100, 2, 1, shift=-2.0)
    p[:, 1] = 2.0
    assert c2st(p, q, folds=2) > 0.9


def test_default_classifier() -> None:
    classifier = default_classifier(4, seed=3)
    assert classifier.hidden_layer_sizes == (40, 40) and classifier.random_state == 3 and classifier.early_stopping
    assert not default_classifier(4, early_stopping=False).early_stopping


def test_input_errors() -> None:
    p = _normal(20, 2, 0)
    with pytest.raises(ValueError, match="same number of features, got 2 and 3"):
        c2st(p, _normal(20, 3, 1))
    with pytest.raises(ValueError, match="q_samples has 4 row"):
        c2st(p, _normal(4, 2, 1))
    with pytest.raises(ValueError, match="p_samples has 2 row"):
        c2st(p[:2], _normal(20, 2, 1), folds=3)
    bad = p.clone()
    bad[3, 1] = math.nan
    with pytest.raises(ValueError, match=r"p_samples contains 1 NaN or infinite value.*row 3"):
        c2st(bad, p)
    bad[3, 1] = math.inf
    with pytest.raises(ValueError, match="q_samples contains 1 NaN"):
        c2st(p, bad)
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        c2st(p.reshape(20, 1, 2), p)
    with pytest.raises(ValueError, match="no features"):
        c2st(torch.zeros(20, 0), torch.zeros(20, 0))
    with pytest.raises(TypeError, match="real numbers"):
        c2st(p.to(torch.complex128), p)
    with pytest.raises(TypeError, match="numeric"):
        c2st(np.array([["a", "b"]] * 20), p)
    for folds in (1, 2.5, True):
        with pytest.raises(ValueError, match="folds must be"):
            c2st(p, p, folds=folds)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed must be"):
        c2st(p, p, seed=-1)
    with pytest.raises(ValueError, match="threads must be"):
        c2st(p, p, threads=0)
    with pytest.raises(TypeError, match="scikit-learn classifier"):
        c2st(p, p, classifier=object())
