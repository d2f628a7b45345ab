r"""scikit-learn's bundled tables as density-estimation data: the features only, float64; nothing downloads.

The values are returned raw, in their own units (:func:`torchnf.fit` standardizes with training statistics).
Apart from :func:`digits`, which is dequantized, they are as recorded: a column measured to a fixed precision
(iris to 0.1 cm) or taking few values (the sex column of :func:`diabetes`) lies on a lattice, where a flexible
density can grow without bound on the training rows, so judge a model by its held-out likelihood.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, load_wine

from ._checks import check_seed

__all__ = ["breast_cancer", "diabetes", "digits", "iris", "wine"]


def _features(loader: Callable[..., Any], **kwargs: Any) -> np.ndarray:
    return np.ascontiguousarray(loader(**kwargs).data, dtype=np.float64)


def digits(seed: int = 0) -> np.ndarray:
    r"""The 1,797 8×8 images of :func:`sklearn.datasets.load_digits` as 64-D points, uniformly dequantized.

    Each pixel is an integer :math:`v \in \{0, \dots, 16\}`; the returned point is :math:`x = v + w` with
    :math:`w \sim \mathcal U[0, 1)^{64}` drawn from ``seed``, so :math:`x` is continuous, lies in
    :math:`[0, 17)^{64}` and :math:`\lfloor x \rfloor = v`. A density :math:`p` on :math:`x` defines the discrete
    model :math:`P(v) = \int_{[0,1)^{64}} p(v + w)\,dw`, and by Jensen's inequality
    :math:`\log P(v) \ge \mathbb E_w \log p(v + w)` (Theis et al., 2016, "A note on the evaluation of generative
    models"). Shape ``(1797, 64)``.
    """
    pixels = _features(load_digits)
    return pixels + np.random.default_rng(check_seed(seed)).random(pixels.shape)


def iris() -> np.ndarray:
    """Fisher's (1936) iris flowers: sepal length and width, petal length and width in cm, shape ``(150, 4)``.

    From :func:`sklearn.datasets.load_iris`; recorded to 0.1 cm, and two rows are identical.
    """
    return _features(load_iris)


def wine() -> np.ndarray:
    """13 chemical measurements (alcohol, malic acid, ..., proline) of Italian wines, shape ``(178, 13)``.

    From :func:`sklearn.datasets.load_wine`; the columns' scales differ by more than three orders of magnitude.
    """
    return _features(load_wine)


def breast_cancer() -> np.ndarray:
    """30 features of cell nuclei in breast-mass images (Wisconsin diagnostic), shape ``(569, 30)``.

    From :func:`sklearn.datasets.load_breast_cancer`: the mean, standard error and worst value of ten measurements.
    """
    return _features(load_breast_cancer)


def diabetes() -> np.ndarray:
    """Ten baseline variables of diabetes patients (Efron et al., 2004), in raw units, shape ``(442, 10)``.

    Age (years), sex (1 or 2), body-mass index, mean blood pressure and six blood serum measurements, from
    :func:`sklearn.datasets.load_diabetes` with ``scaled=False``.
    """
    return _features(load_diabetes, scaled=False)
