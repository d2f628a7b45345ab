"""Reading ``.npy`` and ``.npz`` files with :func:`numpy.load`, never unpickling, and turning an array into a Table.

``np.load(..., allow_pickle=False)`` reads an array's header first and raises ValueError for an object array before
reading its data, so the pickle inside such a file is never executed; an ``.npz`` archive's arrays are loaded one at
a time with the same guarantee. The file's signature is checked first, so that NumPy's own guess of the format (a
ZIP, an ``.npy`` or a pickle) never disagrees with the extension.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .columns import Columns, _select
from .errors import _SHOWN_PROBLEMS, DataFileError, _clean, _names
from .formats import _open
from .table import Table, _valid_table

_NPY_SIGNATURE = np.lib.format.MAGIC_PREFIX
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # an archive, an empty archive: what np.load takes for .npz
_KINDS = {"U": "text", "S": "bytes", "M": "dates", "m": "time spans", "V": "records"}


def _read_npy(path: Path, label: str) -> np.ndarray:
    """The array in an ``.npy`` file."""
    with _open(path, label) as stream:
        if stream.read(len(_NPY_SIGNATURE)) != _NPY_SIGNATURE:
            raise DataFileError(f"{label} is not a NumPy .npy file: it does not start with the .npy signature")
        stream.seek(0)
        with _loading(label):
            return np.load(stream, allow_pickle=False)


def _read_npz(path: Path, label: str, key: str | None) -> tuple[np.ndarray, str]:
    """The chosen array of an ``.npz`` archive, and the label that names it in messages."""
    with _open(path, label) as stream:
        if not stream.read(len(_NPY_SIGNATURE)).startswith(_ZIP_SIGNATURES):
            raise DataFileError(f"{label} is not a NumPy .npz archive (it is not a ZIP file)")
        stream.seek(0)
        try:
            with np.load(stream, allow_pickle=False) as archive:
                keys = [name.removesuffix(".npy") for name in archive.zip.namelist() if name.endswith(".npy")]
                if not keys:
                    raise DataFileError(f"{label} holds no arrays")
                if key is None:
                    if len(keys) > 1:
                        raise DataFileError(f"{label} holds {len(keys)} arrays, {_names(keys)}; choose one with key")
                    key = keys[0]
                elif key not in keys:
                    raise DataFileError(f"{label} has no array named {key!r}; its arrays are {_names(keys)}")
                where = f"array {key!r} of {label}" if len(keys) > 1 else label
                with _loading(where):
                    array = archive[key + ".npy"]
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as error:
            raise DataFileError(f"{label} is a damaged .npz archive: {_clean(error)}") from None
    if not isinstance(array, np.ndarray):  # NumPy gives the bytes of a member that is not an .npy file
        raise DataFileError(f"{where} is not a NumPy .npy file: it does not start with the .npy signature")
    return array, where


@contextmanager
def _loading(where: str) -> Iterator[None]:
    """Turn the errors of loading an array into DataFileErrors that name ``where``."""
    try:
        yield
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise DataFileError(
                f"{where} holds Python objects (dtype object), which are refused because loading them would need "
                "pickle, which can run arbitrary code; save a plain numeric array instead"
            ) from None
        raise DataFileError(f"{where} is damaged or truncated: {_clean(error)}") from None
    except (OSError, EOFError) as error:
        raise DataFileError(f"{where} is damaged or truncated: {_clean(error)}") from None


def _table_from_array(array: np.ndarray, label: str, columns: Columns, drop_invalid: bool) -> Table:
    """A numeric array as a Table of float64 rows: its columns selected, its rows that are not finite checked."""
    kind = array.dtype.kind
    if kind == "c":
        raise DataFileError(f"{label} holds complex numbers (dtype {array.dtype}); only real numbers are supported")
    if kind not in "biuf":
        raise DataFileError(
            f"{label} holds {_KINDS.get(kind, 'values')} (dtype {array.dtype}), not numbers; expected floats, "
            "integers or booleans"
        )
    if array.ndim == 0:
        raise DataFileError(f"{label} holds a single number (a 0-dimensional array), not rows of data")
    if array.shape[0] == 0:
        raise DataFileError(f"{label} holds no rows: its array has shape {array.shape}")
    values = array.astype(np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim == 2:
        if values.shape[1] == 0:
            raise DataFileError(f"{label} has no columns: its array has shape {array.shape}")
        index = _select(columns, [str(i) for i in range(values.shape[1])], False, label)
        values, names = values[:, index], [str(i) for i in index]
    elif columns is not None:
        raise DataFileError(
            f"columns can only be selected from a table of rows and columns, but {label} holds an array of shape "
            f"{array.shape}"
        )
    else:
        names = ["values"]
    flat = values.reshape(len(values), int(np.prod(values.shape[1:])))
    finite = np.isfinite(flat)
    bad = np.flatnonzero(~finite.all(axis=1)).tolist()
    problems = []
    for i in bad[:_SHOWN_PROBLEMS]:
        j = int(np.flatnonzero(~finite[i])[0])
        where = f"row {i + 1}, column {names[j]}" if values.ndim == 2 else f"row {i + 1}"
        problems.append(f"{where}: {flat[i, j]}")
    numbers = [i + 1 for i in bad]
    examples = "; ".join(problems)
    return _valid_table(values, names, bad, numbers, "row", label, examples, drop_invalid, " (rows counted from 1)")
