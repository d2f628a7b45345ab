r"""The posterior of Bayesian logistic regression: a realistic, correlated, unimodal target of moderate dimension.

The data are scikit-learn's bundled tables (nothing downloads) or arrays passed in.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from .._validation import as_float64
from .base import Target, check_positive

__all__ = ["BayesianLogisticRegression"]


def _bundled(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer, load_iris

    if name == "breast_cancer":
        features, labels = load_breast_cancer(return_X_y=True)
        return features, labels
    features, labels = load_iris(return_X_y=True)
    keep = labels != 0  # versicolor (0) against virginica (1): they overlap, so the posterior stays bounded
    return features[keep], (labels[keep] == 2).astype(np.float64)


class BayesianLogisticRegression(Target):
    r"""The posterior of the weights :math:`\beta` of a logistic regression with a Gaussian prior,

    .. math::
        \log\tilde\pi(\beta) = \sum_{n=1}^N \Big(y_n \log\sigma(x_n^\top\beta) + (1 - y_n)\log\sigma(-x_n^\top\beta)
            \Big) - \frac{\|\beta\|^2}{2 s^2},

    the likelihood evaluated as :math:`\log\sigma((2y_n - 1)\,x_n^\top\beta)` with ``logsigmoid`` (finite for any
    finite :math:`\beta`); :math:`\beta` may carry batch dimensions, ``(*batch, d)``. It is the standard benchmark
    of Girolami and Calderhead (2011, "Riemann manifold Langevin and Hamiltonian Monte Carlo methods", *JRSS B*,
    section 7), there with :math:`s^2 = 100`. Its normalizer (the evidence) and moments are unknown (``None``), and
    it has no exact sampler.

    The features are standardized (each column centered and divided by its standard deviation, ``ddof=0``; a
    constant column is only centered) unless ``standardize=False``; with ``intercept`` a column of ones comes first,
    so :math:`\beta_1` is the intercept and :math:`d = p + 1`. ``features`` (``(N, d)``, after standardization and
    the intercept) and ``labels`` (``(N,)``, 0 or 1) are buffers, in the default dtype until the target is
    converted.

    Args:
        features: the covariates, ``(N, p)``; with ``labels``, instead of ``data``.
        labels: the classes, ``(N,)``, each 0 or 1 (or booleans).
        data: a bundled table when no arrays are given (the default ``"breast_cancer"``): ``"breast_cancer"``, the
            569 × 30 Wisconsin diagnostic breast-cancer table (Street, Wolberg and Mangasarian 1993; label 1 for
            benign), or ``"iris"``, the 100 versicolor and virginica flowers of Fisher's iris (4 features; label 1
            for virginica), both from :mod:`sklearn.datasets`.
        prior_scale: the prior's standard deviation :math:`s > 0`.
        intercept: prepend a column of ones.
        standardize: standardize the columns first.

    Example:
        >>> target = BayesianLogisticRegression(data="iris")
        >>> target.dim, target.features.shape
        (5, torch.Size([100, 5]))
        >>> round(target.log_prob(torch.zeros(5)).item(), 4)  # N log(1/2)
        -69.3147
    """

    datasets: ClassVar[tuple[str, ...]] = ("breast_cancer", "iris")
    """The bundled tables ``data`` can name."""

    features: Tensor
    labels: Tensor

    def __init__(
        self,
        features: Any = None,
        labels: Any = None,
        *,
        data: str | None = None,
        prior_scale: float = 1.0,
        intercept: bool = True,
        standardize: bool = True,
    ) -> None:
        if (features is None) != (labels is None):
            raise ValueError("pass both features and labels, or neither (and name a bundled table with data)")
        if features is None:
            data = "breast_cancer" if data is None else data
            if data not in self.datasets:
                raise ValueError(f"unknown data {data!r}; expected one of {', '.join(self.datasets)}")
            features, labels = _bundled(data)
        elif data is not None:
            raise ValueError(f"pass either features and labels or data, not both (got data={data!r})")
        x = as_float64(features, "features")
        y = as_float64(labels, "labels")
        if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"features must have shape (N, p) with N, p >= 1, got shape {tuple(x.shape)}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"labels must have shape ({x.shape[0]},), one per row of features; got {tuple(y.shape)}")
        if not bool(((y == 0) | (y == 1)).all()):
            bad = sorted({float(v) for v in y[(y != 0) & (y != 1)].tolist()})[:5]
            raise ValueError(f"labels must be 0 or 1, got other values such as {bad}")
        if standardize:
            std = x.std(0, correction=0)
            x = (x - x.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))
        if intercept:
            x = torch.cat([torch.ones(x.shape[0], 1, dtype=x.dtype), x], dim=1)
        super().__init__(x.shape[1])
        self.prior_scale = check_positive(prior_scale, "prior_scale")
        self.data = data
        dtype = torch.get_default_dtype()
        self.register_buffer("features", x.to(dtype))
        self.register_buffer("labels", y.to(dtype))

    def log_prob(self, x: Tensor) -> Tensor:
        self._check_points(x)
        logits = x @ self.features.to(x.dtype).T  # (*batch, N)
        signs = 2 * self.labels.to(x.dtype) - 1
        log_likelihood = F.logsigmoid(signs * logits).sum(-1)
        return log_likelihood - 0.5 * x.square().sum(-1) / self.prior_scale**2

    @property
    def log_prior_normalizer(self) -> float:
        r"""The log-normalizer :math:`\frac d2 \log(2\pi s^2)` of the prior, which :meth:`log_prob` leaves out."""
        return 0.5 * self.dim * math.log(2 * math.pi * self.prior_scale**2)

    def extra_repr(self) -> str:
        source = "arrays" if self.data is None else repr(self.data)
        return f"data={source}, rows={self.features.shape[0]}, dim={self.dim}, prior_scale={self.prior_scale:g}"
