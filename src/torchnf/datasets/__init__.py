"""Built-in data sets, generated on the spot or bundled with scikit-learn: nothing downloads.

Each generator in :mod:`~torchnf.datasets.toy` and table in :mod:`~torchnf.datasets.bundled` returns a float64
array of rows; :func:`load` takes any of them by name and splits it into training, validation and test rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import check_int, check_seed
from .bundled import breast_cancer, diabetes, digits, iris, wine
from .toy import checkerboard, circles, eight_gaussians, pinwheel, rings, two_moons, two_spirals

__all__ = [
    "DEFAULT_N",
    "Dataset",
    "breast_cancer",
    "checkerboard",
    "circles",
    "diabetes",
    "digits",
    "eight_gaussians",
    "iris",
    "load",
    "names",
    "pinwheel",
    "rings",
    "split",
    "two_moons",
    "two_spirals",
    "wine",
]

DEFAULT_N = 10_000
"""The number of points :func:`load` draws from a 2-D generator when ``n`` is not given."""

_TOY: tuple[Callable[..., np.ndarray], ...] = (
    two_moons,
    circles,
    eight_gaussians,
    pinwheel,
    two_spirals,
    checkerboard,
    rings,
)
_TABLES: tuple[Callable[..., np.ndarray], ...] = (digits, iris, wine, breast_cancer, diabetes)
_SOURCES = {source.__name__: source for source in (*_TOY, *_TABLES)}
_SPLIT_STREAM = 0x5EED  # mixed with the seed, so the split permutation is independent of the data's own draws


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A data set split into disjoint training, validation and test rows that together cover it.

    Attributes:
        name: the name it was loaded by.
        train: training rows, float64, shape ``(n_train, *event_shape)``.
        val: validation rows (for early stopping and model selection).
        test: test rows, to be touched once, for the final held-out log-likelihood.
        description: one line on what the data are.
    """

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    description: str = ""

    @property
    def event_shape(self) -> tuple[int, ...]:
        """Shape of one row, e.g. ``(2,)`` for the 2-D generators and ``(64,)`` for :func:`digits`."""
        return tuple(self.train.shape[1:])

    def __repr__(self) -> str:
        sizes = ", ".join(f"{part}={len(getattr(self, part))}" for part in ("train", "val", "test"))
        return f"Dataset(name={self.name!r}, event_shape={self.event_shape}, {sizes})"


def names() -> list[str]:
    """Every name :func:`load` accepts: the 2-D generators, then the scikit-learn tables."""
    return list(_SOURCES)


def _split(data: np.ndarray, seed: int, n: int | None, name: str, description: str) -> Dataset:
    rows = np.random.default_rng([_SPLIT_STREAM, seed]).permutation(len(data))[:n]
    n_held = max(1, round(len(rows) / 10))
    n_train = len(rows) - 2 * n_held
    cut = np.split(rows, [n_train, n_train + n_held])
    return Dataset(name, *(np.ascontiguousarray(data[part], dtype=np.float64) for part in cut), description)


def split(data: Any, seed: int = 0, name: str = "data", description: str = "") -> Dataset:
    """Split the rows of ``data``, shape ``(n, *event_shape)`` with ``n >= 3``, 80/10/10 by a permutation from ``seed``.

    The validation and test parts each take ``max(1, round(n / 10))`` rows and the training part the rest; the
    parts are copies, disjoint and together cover every row. :func:`load` splits its data sets this way.
    """
    try:
        array = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"data must be a numeric array; could not convert it: {error}") from None
    if array.ndim < 2 or len(array) < 3:
        raise ValueError(
            f"data must have shape (n, *event_shape) with n >= 3 rows (one per split at least), got {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"data contains {int((~np.isfinite(array)).sum())} NaN or infinite value(s)")
    return _split(array, check_seed(seed), None, str(name), str(description))


def load(name: str, seed: int = 0, n: int | None = None) -> Dataset:
    """Load the data set ``name`` (one of :func:`names`) split 80/10/10 into training, validation and test rows.

    ``seed`` fixes everything: the points a generator draws, the dequantization noise of :func:`digits`, and the
    split (by :func:`split`). ``n`` is the number of rows in all: for a 2-D generator the number of points to draw
    (default :data:`DEFAULT_N`, 10,000); for a table a random subset of its rows (default all of them).

    Example:
        >>> from torchnf.datasets import load
        >>> data = load("checkerboard", seed=0)
        >>> data.train.shape, data.val.shape, data.test.shape
        ((8000, 2), (1000, 2), (1000, 2))
        >>> load("digits", n=1000)
        Dataset(name='digits', event_shape=(64,), train=800, val=100, test=100)
    """
    if not isinstance(name, str) or name not in _SOURCES:
        raise ValueError(f"unknown data set {name!r}; expected one of: {', '.join(names())}")
    seed = check_seed(seed)
    if n is not None:
        n = check_int(n, "n", 3, " (the total number of rows, at least one per split) or None")
    source = _SOURCES[name]
    if source in _TOY:
        data = source(n=DEFAULT_N if n is None else n, seed=seed)
    else:
        data = source(seed) if source is digits else source()
        if n is not None and n > len(data):
            raise ValueError(f"n must be at most {len(data)}, the number of rows of {name!r}, or None; got {n}")
    first_line = (source.__doc__ or "").strip().partition("\n")[0]
    description = re.sub(r":\w+:`([^`]*)`", r"\1", first_line).replace("``", "")  # reST markup to plain text
    return _split(data, seed, n, name, description)
