"""Column selection: header names, 0-based indices, or strings of digits, with helpful messages for mistakes."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import DataFileError, _and, _count, _names

Columns = Sequence[str | int] | str | int | None
"""What ``read_table(columns=...)`` takes: ``None`` (all), one name or index, or a sequence of them."""


def _select(columns: Columns, names: list[str], header: bool, label: str) -> list[int]:
    """The 0-based indices of the selected columns, in the order selected; ``header`` says whether names are real."""
    if columns is None:
        return list(range(len(names)))
    items: list[Any] = [columns] if isinstance(columns, (str, int, np.integer)) else list(columns)
    if not items:
        raise DataFileError(f"no columns of {label} were selected: the list of columns is empty")
    index: list[int] = []
    for item in items:
        i = _column(item, names, header, label)
        if i in index:
            column = repr(names[i]) if header else str(i)
            raise DataFileError(f"column {column} of {label} is selected more than once")
        index.append(i)
    return index


def _column(item: Any, names: list[str], header: bool, label: str) -> int:
    """The 0-based index of one selected column: a header name first, then an index."""
    if isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
        return _column_index(int(item), len(names), label)
    if not isinstance(item, str):
        raise DataFileError(f"columns are selected by name or by 0-based index, got {item!r}")
    if header:
        matches = [i for i, name in enumerate(names) if name == item]
        if len(matches) > 1:
            raise DataFileError(
                f"the header of {label} names more than one column {item!r} (columns {_and(matches)}, counted "
                "from 0); select it by index"
            )
        if matches:
            return matches[0]
    digits = item.strip()
    if digits.isascii() and digits.isdecimal():
        return _column_index(int(digits), len(names), label)
    if not header:
        raise DataFileError(
            f"{label} has no header, so its columns are selected by 0-based index (0 to {len(names) - 1}), "
            f"not by a name like {item!r}"
        )
    same_case = [name for name in names if name.casefold() == item.casefold()]
    close = same_case or difflib.get_close_matches(item, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DataFileError(f"{label} has no column named {item!r}{hint}; its columns are {_names(names)}")


def _column_index(i: int, width: int, label: str) -> int:
    """``i``, checked to be a column of a table ``width`` columns wide."""
    if not 0 <= i < width:
        raise DataFileError(
            f"column index {i} is out of range: {label} has {_count(width, 'column')}, numbered from 0 to {width - 1}"
        )
    return i
