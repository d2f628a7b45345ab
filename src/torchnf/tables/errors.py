"""The error that reading and writing raise, and the helpers that word its one-line messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_SHOWN_LINES = 5  # line numbers listed in a message before "and N more"
_SHOWN_PROBLEMS = 3  # offending values described in a message
_SHOWN_NAMES = 20  # column or array names listed in a message


class DataFileError(ValueError):
    """A data file that cannot be read or written; the message is one sentence naming the file and the place."""


def _clean(error: BaseException) -> str:
    """An exception's message on one line, without a final period."""
    return " ".join(str(error).split()).rstrip(".") or type(error).__name__


def _and(items: Sequence[Any]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    texts = [str(item) for item in items]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]


def _count(n: int, noun: str) -> str:
    """``1 column``, ``2 columns``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _some(texts: Sequence[str], limit: int) -> str:
    """The first ``limit`` texts joined by :func:`_and`, the rest counted: ``a, b and 3 more``."""
    shown = list(texts[:limit])
    if len(texts) > limit:
        shown.append(f"{len(texts) - limit} more")
    return _and(shown)


def _names(names: Sequence[str]) -> str:
    """``'x', 'y' and 'z'``, quoted, at most :data:`_SHOWN_NAMES` of them."""
    return _some([repr(name) for name in names], _SHOWN_NAMES)


def _numbers(numbers: Sequence[int], noun: str) -> str:
    """``line 4``, ``lines 4, 9 and 12 (3 rows)``, ``lines 4, 9, 12, 15, 20 and 32 more (37 rows)``."""
    if len(numbers) == 1:
        return f"{noun} {numbers[0]}"
    return f"{noun}s {_some([str(n) for n in numbers], _SHOWN_LINES)} ({len(numbers)} rows)"


def _invalid_message(numbers: Sequence[int], noun: str, label: str, examples: str) -> str:
    """Rows ``numbers`` (counted as ``noun``) of ``label`` hold values that are not finite numbers."""
    if len(numbers) == 1:
        problem, them = "has a value that is not a finite number", "it"
    else:
        problem, them = "have values that are not finite numbers", "them"
    return (
        f"{_numbers(numbers, noun)} of {label} {problem}: {examples}; fix {them}, or drop such rows "
        "(drop_invalid=True; --drop-invalid on the command line)"
    )


def _all_invalid_message(rows: int, label: str, examples: str) -> str:
    """Dropping the invalid rows of ``label`` left none of its ``rows`` data rows."""
    every = "the only data row" if rows == 1 else f"every one of the {rows} data rows"
    return (
        f"no rows of {label} are left after dropping invalid rows: {every} has a value that is not a finite "
        f"number, e.g. {examples}"
    )
