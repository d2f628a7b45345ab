"""Image data files for the ``torchnf`` command: NPY/NPZ arrays of images, told apart from tables by their shape.

An ``.npy`` or ``.npz`` array of 3 dimensions holds grey images ``(n, H, W)``; one of 4 dimensions holds images
with channels, channels first ``(n, C, H, W)``, or channels last ``(n, H, W, C)`` when that is unambiguous: ``C``
is 1 or 3 while ``H`` and ``W`` are larger than 4 (``(n, 28, 28, 1)``, ``(n, 32, 32, 3)``). Anything else, and every
text file, is a table of rows (:func:`torchnf.tables.read_table`).

The file's dtype is kept alongside the values (float64, like a table's), because it decides how many levels
discrete images have by default: 256 for ``uint8``, otherwise the largest value plus one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .tables import DataFileError, Table, read_table
from .tables.arrays import _read_npy, _read_npz, _table_from_array
from .tables.formats import _check_readable, _extension

__all__ = ["ImageArray", "images_for_model", "read_data"]


@dataclass(frozen=True, eq=False)
class ImageArray:
    """Images read from an ``.npy``/``.npz`` file by :func:`read_data`.

    Attributes:
        values: the images as float64, channels first: ``(n, C, H, W)``.
        dtype: the dtype of the array in the file.
        channels_last: whether the file stored them channels last, ``(n, H, W, C)``.
        dropped_rows: the images left out by ``drop_invalid`` (counted from 1).
        label: the file (and array) as messages name it.
    """

    values: np.ndarray
    dtype: np.dtype
    channels_last: bool = False
    dropped_rows: list[int] = field(default_factory=list)
    label: str = "data"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        channels, height, width = self.values.shape[1:]
        return channels, height, width

    @property
    def integer_valued(self) -> bool:
        """Whether every value is an integer (an integer or boolean dtype, or floats with no fractional part)."""
        return self.dtype.kind in "biu" or bool(np.all(self.values == np.round(self.values)))

    def default_levels(self) -> int:
        """The number of levels of discrete images: 256 for ``uint8``, else the largest value plus one (at least 2)."""
        if self.dtype == np.uint8:
            return 256
        return max(2, int(self.values.max()) + 1)


def _channels_last(shape: Sequence[int], channels_last: bool | None) -> bool:
    """Whether the item shape ``(a, b, c)`` of a 4-dimensional array is channels last: as asked, or when
    unambiguous (``c`` is 1 or 3 and ``a``, ``b`` exceed 4)."""
    if channels_last is not None:
        return channels_last
    a, b, c = shape
    return c in (1, 3) and a > 4 and b > 4


def read_data(
    path: str | Path,
    columns: Sequence[str | int] | None = None,
    drop_invalid: bool = False,
    key: str | None = None,
    channels_last: bool | None = None,
) -> Table | ImageArray:
    """Read a data file: images from an ``.npy``/``.npz`` array of 3 or 4 dimensions, a :class:`Table` otherwise.

    Args:
        path: the file; its extension sets the format.
        columns: columns to select from a table; refused for images (by :func:`~torchnf.tables.read_table`'s rule).
        drop_invalid: leave out the images (rows) holding values that are not finite numbers.
        key: the array to read from an ``.npz`` archive of several arrays.
        channels_last: the layout of a 4-dimensional array: ``True`` for ``(n, H, W, C)``, ``False`` for
            ``(n, C, H, W)``, ``None`` to tell (channels last only when unambiguous; see the module).
    """
    label = str(path)
    path = Path(path)
    extension = _extension(path, label)
    if extension not in (".npy", ".npz"):
        return read_table(path, columns, drop_invalid, key)
    if key is not None and extension != ".npz":
        raise DataFileError(f"key={key!r} picks an array from an .npz archive, but {label} is not one")
    _check_readable(path, label)
    if extension == ".npy":
        array = _read_npy(path, label)
    else:
        array, label = _read_npz(path, label, key)
    if array.ndim not in (3, 4) or columns is not None:
        return _table_from_array(array, label, columns, drop_invalid)
    table = _table_from_array(array, label, None, drop_invalid)  # checks the dtype and the values, drops rows
    values = table.values
    last = False
    if values.ndim == 3:
        values = values[:, None]
    elif _channels_last(values.shape[1:], channels_last):
        values, last = values.transpose(0, 3, 1, 2), True
    return ImageArray(np.ascontiguousarray(values), array.dtype, last, table.dropped_rows, label)


def images_for_model(data: Table | ImageArray, image_shape: Sequence[int], label: str) -> np.ndarray:
    """The images of ``data`` as ``(n, C, H, W)`` float64, matched to a model fitted on images ``image_shape``.

    Accepted: channels first or last, ``(n, H, W)`` for one channel, and rows of ``C * H * W`` values (a table, or
    images flattened in C order). The layout is the one whose shape matches the model's, so it is never ambiguous.
    """
    channels, height, width = (int(v) for v in image_shape)
    if isinstance(data, ImageArray):
        values = data.values.transpose(0, 2, 3, 1) if data.channels_last else data.values  # the file's layout
        label = data.label
    else:
        values = data.values
    n, item = values.shape[0], tuple(values.shape[1:])
    if item == (channels, height, width):
        return np.ascontiguousarray(values)
    if item == (height, width, channels):
        return np.ascontiguousarray(values.transpose(0, 3, 1, 2))
    if item == (height, width) and channels == 1:
        return values[:, None]
    if len(item) == 1 and item[0] == channels * height * width:
        return values.reshape(n, channels, height, width)
    raise DataFileError(
        f"{label} holds items of shape {item}, but the model was fitted on images of shape {(channels, height, width)}"
        f" (channels first; channels last {(height, width, channels)}, or rows of {math.prod(image_shape)} values,"
        " are accepted too)"
    )
