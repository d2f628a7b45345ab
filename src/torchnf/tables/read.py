"""Reading a data file, whatever its format: :func:`read_table`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .arrays import _read_npy, _read_npz, _table_from_array
from .errors import DataFileError
from .formats import _DELIMITERS, _check_readable, _extension
from .table import Table
from .text import _read_text


def read_table(
    path: str | Path,
    columns: Sequence[str | int] | str | int | None = None,
    drop_invalid: bool = False,
    key: str | None = None,
) -> Table:
    """Read a numeric table (or, from ``.npy``/``.npz``, an array of rows) from a file; see :mod:`torchnf.tables`.

    Args:
        path: the file; its extension sets the format (one of :data:`~torchnf.tables.EXTENSIONS`).
        columns: the columns to keep, in this order (default all): header names, or 0-based indices as ints or
            as strings of digits. A string is a header name when the header has that name, an index otherwise.
            A single name or index selects one column. Columns left out may hold anything (labels, say).
        drop_invalid: leave out the rows with a selected value that is not a finite number (a non-number, an
            empty field, NaN or ±inf) and list them in :attr:`Table.dropped_rows`, instead of refusing the file.
        key: the array to read from an ``.npz`` archive of several arrays.

    Raises:
        DataFileError: the file is missing, unreadable or malformed; has no data rows (none left after dropping);
            has rows of different lengths, or (unless ``drop_invalid``) values that are not finite numbers; holds
            an array that is not numeric (objects, strings, complex); or ``columns`` or ``key`` names something
            the file does not have.
    """
    label = str(path)
    path = Path(path)
    extension = _extension(path, label)
    if key is not None and extension != ".npz":
        raise DataFileError(f"key={key!r} picks an array from an .npz archive, but {label} is not one")
    _check_readable(path, label)
    if extension in _DELIMITERS:
        return _read_text(path, label, _DELIMITERS[extension], columns, drop_invalid)
    if extension == ".npy":
        array = _read_npy(path, label)
    else:
        array, label = _read_npz(path, label, key)
    return _table_from_array(array, label, columns, drop_invalid)
