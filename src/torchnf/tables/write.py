"""Writing numbers to a data file: :func:`write_table`, with text written at full precision and names quoted."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataFileError, _clean, _count
from .formats import _CHUNK_ROWS, _DELIMITERS, _WHITESPACE, _extension
from .text import _is_header


def write_table(path: str | Path, values: Any, columns: Sequence[str] | None = None) -> None:
    """Write numbers to a file in the format its extension names; :func:`read_table` reads them back exactly.

    Text files (``.txt``: separated by spaces) get full precision, each float written as the shortest decimal that
    reads back as the same number of its dtype, so float64 values read back exactly. They get a header line of
    ``columns`` when given, unless every name is a number (such a header could not be told from data, so it is left
    out); names are quoted where needed. ``.npy`` keeps the array's dtype and shape; ``.npz`` stores it under the
    key ``"values"``; neither stores ``columns``. Values that are not finite numbers are written as ``nan``,
    ``inf`` or ``-inf``.

    Args:
        path: the file to create or overwrite; its folder must exist.
        values: numbers (integers, floats or booleans) of shape ``(n,)`` or ``(n, d)``; ``.npy`` and ``.npz`` also
            take more dimensions.
        columns: the ``d`` column names, for text files.

    Raises:
        DataFileError: the extension is not supported, the folder does not exist, the file cannot be written, or
            the values or column names do not fit the format.
    """
    label = str(path)
    path = Path(path)
    extension = _extension(path, label)
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, RuntimeError) as error:
        raise DataFileError(f"cannot write {label}: the values are not an array of numbers ({_clean(error)})") from None
    if array.dtype.kind not in "biuf":
        raise DataFileError(f"cannot write {label}: the values must be numbers, got an array of dtype {array.dtype}")
    if not path.parent.is_dir():
        raise DataFileError(f"cannot write {label}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise DataFileError(f"cannot write {label}: it is a folder")
    lines = None
    if extension in _DELIMITERS:
        delimiter = _DELIMITERS[extension] or _WHITESPACE
        lines = _text_lines(array, columns, delimiter, label)  # checks the shape and names before opening the file
    try:
        if lines is not None:
            with open(path, "w", encoding="utf-8", newline="\n") as stream:
                stream.writelines(lines)
        else:
            with open(path, "wb") as stream:  # a file object, so NumPy adds no extension of its own
                if extension == ".npy":
                    np.save(stream, array, allow_pickle=False)
                else:
                    np.savez(stream, values=array)
    except OSError as error:
        raise DataFileError(f"cannot write {label}: {error.strerror or _clean(error)}") from None


def _text_lines(array: np.ndarray, columns: Sequence[str] | None, delimiter: str, label: str) -> Iterator[str]:
    """Check that ``array`` and ``columns`` fit a text file, and return a generator of its lines."""
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DataFileError(
            f"cannot write an array of shape {array.shape} to {label}: a text file holds rows and columns; use .npy "
            "or .npz for arrays of more than 2 dimensions"
        )
    names: list[str] | None = None
    if columns is not None:
        if isinstance(columns, str) or not all(isinstance(name, str) for name in columns):
            raise DataFileError(f"cannot write {label}: columns must be a list of names (strings), got {columns!r}")
        names = list(columns)
        if len(names) != array.shape[1]:
            raise DataFileError(
                f"cannot write {label}: {_count(len(names), 'column name')} given for values with "
                f"{_count(array.shape[1], 'column')}"
            )
        if any("\n" in name or "\r" in name for name in names):
            raise DataFileError(f"cannot write {label}: column names cannot contain line breaks")
        if not _is_header(names):
            names = None  # all numbers: a reader would take the header for data
    return _generate_lines(array, names, delimiter)


def _generate_lines(array: np.ndarray, names: list[str] | None, delimiter: str) -> Iterator[str]:
    """The lines of a text file: the header (when ``names``), then the rows of a 2-D numeric array."""
    if names is not None:
        yield delimiter.join(_quote(name, delimiter) for name in names) + "\n"
    if array.dtype.kind == "b":
        array = array.astype(np.uint8)
    # Python's str of a float64 and NumPy's of a smaller float are the shortest text that reads back as the same number
    python = array.dtype.kind in "iu" or array.dtype == np.float64
    for start in range(0, len(array), _CHUNK_ROWS):
        chunk = array[start : start + _CHUNK_ROWS]
        for row in (chunk if python else chunk.astype(str)).tolist():
            yield delimiter.join(map(str, row)) + "\n"


def _quote(name: str, delimiter: str) -> str:
    """A column name, quoted when it holds the delimiter, a quote, a leading ``#``, or (``.txt``) whitespace."""
    whitespace = name == "" or any(c.isspace() for c in name)
    special = whitespace if delimiter == _WHITESPACE else delimiter in name
    if special or '"' in name or name.lstrip().startswith("#"):
        return '"' + name.replace('"', '""') + '"'
    return name
