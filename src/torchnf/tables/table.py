"""The :class:`Table` that ``read_table`` returns, and the refusing or dropping of rows that are not finite numbers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import DataFileError, _all_invalid_message, _invalid_message


@dataclass(frozen=True, eq=False)
class Table:
    """Numeric data read from a file by :func:`~torchnf.tables.read_table`.

    Attributes:
        values: the data as float64, of shape ``(n, d)``: one row per data row, one column per selected column.
            An ``.npy``/``.npz`` array of more than two dimensions keeps its shape ``(n, *rest)``.
        columns: the ``d`` column names: the header's, or the 0-based column indices as strings (``"0"``,
            ``"1"``, ...) when the file has no header (always so for ``.npy``/``.npz``). An array of more than two
            dimensions has the single generic name ``"values"``.
        dropped_rows: the rows left out by ``drop_invalid``, in increasing order: line numbers for text files,
            array rows counted from 1 for ``.npy``/``.npz``.
    """

    values: np.ndarray
    columns: list[str]
    dropped_rows: list[int] = field(default_factory=list)


def _valid_table(
    values: np.ndarray,
    names: list[str],
    bad: Sequence[int],
    numbers: list[int],
    noun: str,
    label: str,
    examples: str,
    drop_invalid: bool,
    counted: str = "",
) -> Table:
    """``values`` as a :class:`Table`, unless some rows are invalid: then refused, or left out with ``drop_invalid``.

    Args:
        values: the rows, finite or not.
        names: the column names.
        bad: the 0-based indices of the invalid rows, in increasing order.
        numbers: how messages and :attr:`Table.dropped_rows` name those rows (line numbers, rows counted from 1).
        noun: what ``numbers`` count: ``"line"`` or ``"row"``.
        label: the file, as messages name it.
        examples: the first few offending values, described.
        drop_invalid: leave the invalid rows out instead of refusing the file.
        counted: added to ``label`` when refusing, to say how ``numbers`` count.
    """
    if len(bad) == 0:
        return Table(np.ascontiguousarray(values), names)
    if not drop_invalid:
        raise DataFileError(_invalid_message(numbers, noun, label + counted, examples))
    if len(bad) == len(values):
        raise DataFileError(_all_invalid_message(len(values), label, examples))
    keep = np.ones(len(values), dtype=bool)
    keep[np.asarray(bad)] = False
    return Table(np.ascontiguousarray(values[keep]), names, list(numbers))
