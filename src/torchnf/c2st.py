r"""The classifier two-sample test (C2ST): can a classifier tell two samples apart?

Given draws :math:`x_1, \dots, x_n \sim P` and :math:`y_1, \dots, y_m \sim Q`, label them 0 and 1, train a
classifier on part of them and measure its accuracy on the rest (Lopez-Paz and Oquab 2017, "Revisiting classifier
two-sample tests", *ICLR*). If :math:`P = Q` no classifier beats chance, 0.5 for samples of equal size; the better
the classifier separates them, the closer to 1 the accuracy. The optimal classifier's accuracy is
:math:`\tfrac12 + \tfrac12\,\mathrm{TV}(P, Q)` for equal sizes, so a C2ST accuracy (of a classifier that is not
optimal) estimates a lower bound on that.

This module follows the variant of the SBI benchmark (Lueckmann, Boelts, Greenberg, Gonçalves and Macke 2021,
"Benchmarking simulation-based inference", *AISTATS*), which scores approximate posteriors against reference
posterior draws: both samples are standardized with the first sample's per-feature mean and standard deviation, the
classifier is scikit-learn's :class:`~sklearn.neural_network.MLPClassifier` with two hidden layers of
:math:`10d` ReLU units for :math:`d` features (Adam, up to 10,000 epochs), and the score is the mean accuracy over a
:math:`k`-fold cross-validation (here stratified, so that every fold holds both samples in proportion). The benchmark
uses 10,000 draws of each; fewer give a noisier score.

One departure, by default: the MLP stops early on held-out data (``early_stopping=True``: 10% of each training fold,
stopping after 10 epochs, and at least :data:`PATIENCE_STEPS` minibatch steps, without a better validation
accuracy; see :func:`default_classifier`), where the benchmark's stops on the training loss
alone and so trains until it has memorized its folds. On 1,000 draws of each of two 10-D Gaussians whose means
differ by 0.3 in every coordinate (the optimal accuracy is :math:`\Phi(0.3\sqrt{10}/2) = 0.682`) the benchmark's
classifier scored 0.600 in 26 s, the early-stopping one 0.670 in 1.1 s; on two samples of one Gaussian, 0.487 and
0.515. ``default_classifier(dim, seed, early_stopping=False)`` is the benchmark's. The classifier runs with one BLAS
thread by default (``threads``): its matrices are small, and on a machine shared with other jobs two threads made it
15 times slower.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from ._validation import as_tensor

__all__ = ["PATIENCE_STEPS", "C2STResult", "c2st", "classifier_two_sample_test", "default_classifier"]

PATIENCE_STEPS = 200
"""The least number of minibatch steps without a better held-out accuracy before the default classifier stops."""
_BATCH_SIZE = 200  # scikit-learn's "auto" batch size is min(200, rows)
_VALIDATION_FRACTION = 0.1  # scikit-learn's default


@dataclass(frozen=True)
class C2STResult:
    """The outcome of a classifier two-sample test (:func:`classifier_two_sample_test`).

    Attributes:
        accuracy: the mean cross-validated accuracy: the C2ST score.
        fold_accuracies: the accuracy on each held-out fold.
        chance: the accuracy of always guessing the larger sample, :math:`\\max(n, m) / (n + m)`: 0.5 for samples of
            equal size, and what ``accuracy`` is expected to be when the two distributions are the same.
        sizes: the number of rows of each sample, ``(n, m)``.
    """

    accuracy: float
    fold_accuracies: tuple[float, ...]
    chance: float
    sizes: tuple[int, int]

    @property
    def spread(self) -> float:
        """The standard deviation of the fold accuracies (``0`` for a single fold): a rough noise level."""
        return float(np.std(self.fold_accuracies, ddof=1)) if len(self.fold_accuracies) > 1 else 0.0


def _as_rows(value: Any, name: str) -> np.ndarray:
    """``value`` (a tensor or an array-like) as a float64 array ``(n, d)``; ``(n,)`` counts as one feature."""
    t = as_tensor(value, name)
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must be real numbers, got dtype {t.dtype}")
    array = t.detach().cpu().double().numpy()
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d) (or (n,) for one feature), got shape {array.shape}")
    if array.shape[1] == 0:
        raise ValueError(f"{name} has no features: shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or infinite value(s), the first in row {row}")
    return array


def default_classifier(
    dim: int, seed: int = 0, *, early_stopping: bool = True, rows: int | None = None
) -> MLPClassifier:
    """The SBI benchmark's classifier for ``dim`` features: an MLP with two hidden layers of ``10 * dim`` ReLU units,
    trained by Adam (minibatches of 200) for up to 10,000 epochs, seeded by ``seed``.

    With ``early_stopping`` (the default here, not the benchmark's; see the module docstring) it holds out 10% of
    its training rows and stops when their accuracy has not improved for 10 epochs or for :data:`PATIENCE_STEPS`
    minibatch steps, whichever is longer, given the number of training ``rows`` (``None``: 10 epochs). On a small
    sample an epoch is one or two minibatches, and 10 of them teach the network nothing: two 1-D samples of 200, 4
    standard deviations apart, scored 0.48 with a patience of 10 epochs and 0.94 with 200 steps (the best possible
    is 0.98).

    Example:
        >>> default_classifier(3).hidden_layer_sizes
        (30, 30)
        >>> default_classifier(3, rows=1000).n_iter_no_change  # 900 rows after the hold-out: 5 steps an epoch
        40
    """
    patience = 10
    if rows is not None and early_stopping:
        fitted = max(1, int(rows * (1 - _VALIDATION_FRACTION)))
        steps_per_epoch = math.ceil(fitted / min(_BATCH_SIZE, fitted))
        patience = max(patience, math.ceil(PATIENCE_STEPS / steps_per_epoch))
    return MLPClassifier(
        hidden_layer_sizes=(10 * dim, 10 * dim),
        activation="relu",
        solver="adam",
        batch_size="auto",  # min(200, rows)
        max_iter=10_000,
        early_stopping=early_stopping,
        validation_fraction=_VALIDATION_FRACTION,
        n_iter_no_change=patience,
        random_state=seed,
    )


def classifier_two_sample_test(
    p_samples: Any,
    q_samples: Any,
    *,
    folds: int = 5,
    seed: int = 0,
    classifier: Any = None,
    standardize: bool = True,
    threads: int | None = 1,
) -> C2STResult:
    r"""Run the classifier two-sample test of ``p_samples`` against ``q_samples`` and return its details.

    Both samples, of shapes ``(n, d)`` and ``(m, d)`` (tensors or arrays; ``(n,)`` is one feature), are labelled 0
    and 1; with ``standardize`` both are shifted and scaled by the per-feature mean and standard deviation of
    ``p_samples`` (a feature that is constant there is only shifted). ``classifier`` (any scikit-learn classifier;
    by default :func:`default_classifier`, the SBI benchmark's MLP with early stopping) is cross-validated over
    ``folds`` stratified, shuffled folds (:class:`~sklearn.model_selection.StratifiedKFold` with
    ``random_state=seed``) with :func:`~sklearn.model_selection.cross_val_score`. The result is deterministic for a
    given ``seed``; the global random state is not used.

    Args:
        p_samples: the first sample, usually the reference (exact posterior draws).
        q_samples: the second sample, usually the approximation's draws.
        folds: the number of cross-validation folds, at least 2; each sample needs at least that many rows.
        seed: seeds the folds and the default classifier.
        classifier: a scikit-learn classifier (cloned, never fitted in place), or ``None`` for the default.
        standardize: standardize by the first sample's moments (the benchmark's z-scoring).
        threads: the most BLAS threads the classifier may use, set with :func:`threadpoolctl.threadpool_limits`
            for the duration of the call (``None``: leave them as they are).

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> p, q = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g) + 4
        >>> result = classifier_two_sample_test(p, q, folds=2)
        >>> result.accuracy > 0.95, len(result.fold_accuracies), result.chance
        (True, 2, 0.5)
    """
    p = _as_rows(p_samples, "p_samples")
    q = _as_rows(q_samples, "q_samples")
    if p.shape[1] != q.shape[1]:
        raise ValueError(
            f"p_samples and q_samples must have the same number of features, got {p.shape[1]} and {q.shape[1]}"
        )
    if isinstance(folds, bool) or not isinstance(folds, numbers.Integral) or folds < 2:
        raise ValueError(f"folds must be an integer of at least 2, got {folds!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    for name, rows in (("p_samples", p), ("q_samples", q)):
        if rows.shape[0] < folds:
            raise ValueError(f"{name} has {rows.shape[0]} row(s); each sample needs at least folds={folds} rows")
    if standardize:
        mean, std = p.mean(0), p.std(0, ddof=1)  # p has at least folds >= 2 rows
        std = np.where(std > 0, std, 1.0)
        p, q = (p - mean) / std, (q - mean) / std
    if classifier is None:
        rows = (p.shape[0] + q.shape[0]) * (int(folds) - 1) // int(folds)  # the training rows of a fold
        classifier = default_classifier(p.shape[1], int(seed), rows=rows)
    elif not (hasattr(classifier, "fit") and hasattr(classifier, "predict")):
        raise TypeError(f"classifier must be a scikit-learn classifier, got {type(classifier).__name__}")
    data = np.concatenate([p, q])
    labels = np.concatenate([np.zeros(p.shape[0], dtype=np.int64), np.ones(q.shape[0], dtype=np.int64)])
    splitter = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=int(seed))
    limits = contextlib.nullcontext() if threads is None else threadpool_limits(limits=int(threads))
    with warnings.catch_warnings(), limits:
        # an MLP that stops at max_iter still gives a valid (if weaker) classifier: its accuracy is the score
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        scores = cross_val_score(clone(classifier), data, labels, cv=splitter, scoring="accuracy", error_score="raise")
    sizes = (int(p.shape[0]), int(q.shape[0]))
    return C2STResult(
        accuracy=float(np.mean(scores)),
        fold_accuracies=tuple(float(s) for s in scores),
        chance=max(sizes) / sum(sizes),
        sizes=sizes,
    )


def c2st(
    p_samples: Any,
    q_samples: Any,
    *,
    folds: int = 5,
    seed: int = 0,
    classifier: Any = None,
    standardize: bool = True,
    threads: int | None = 1,
) -> float:
    r"""The C2ST accuracy of ``p_samples`` against ``q_samples``: 0.5 when a classifier cannot tell them apart
    (for samples of equal size), 1.0 when it separates them fully.

    The mean cross-validated accuracy of :func:`classifier_two_sample_test` (which see for the arguments, and for
    the per-fold accuracies). As in the SBI benchmark (Lueckmann et al. 2021), ``p_samples`` is usually the reference
    posterior's draws and ``q_samples`` the approximation's, of equal sizes.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> p, q = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g)
        >>> 0.35 < c2st(p, q, folds=2) < 0.65
        True
    """
    return classifier_two_sample_test(
        p_samples, q_samples, folds=folds, seed=seed, classifier=classifier, standardize=standardize, threads=threads
    ).accuracy
