"""Reading delimited text files: comments and blank lines, separator sniffing, header detection, quoted fields, and
conversion to numbers a chunk of rows at a time, noting the rows that are not finite numbers."""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from .columns import Columns, _select
from .errors import _SHOWN_PROBLEMS, DataFileError, _count
from .formats import _CHUNK_ROWS, _WHITESPACE, _open
from .table import Table, _valid_table

_WHITESPACE_FIELD = re.compile(r'\s*(?:"((?:[^"]|"")*)"|([^\s"]+))(?=\s|$)')


def _read_text(path: Path, label: str, delimiter: str | None, columns: Columns, drop_invalid: bool) -> Table:
    """The table in a text file whose fields are separated by ``delimiter`` (``None``: sniffed)."""
    with _open(path, label) as stream:
        lines = _data_lines(stream, label)
        first = next(lines, None)
        if first is None:
            raise DataFileError(f"{label} holds no data: it is empty or has only blank lines and comments")
        first_line, first_text = first
        second = next(lines, None)
        separator = _sniff([first_text] + ([] if second is None else [second[1]])) if delimiter is None else delimiter
        first_fields = _split(first_text, separator, first_line, label)
        header = _is_header(first_fields)
        width = len(first_fields)
        names = first_fields if header else [str(i) for i in range(width)]
        index = _select(columns, names, header, label)
        names = [names[i] for i in index]

        def selected(rows: Iterator[tuple[int, str]]) -> Iterator[tuple[int, list[str]]]:
            for line_number, text in rows:
                fields = _split(text, separator, line_number, label)
                if len(fields) != width:
                    where = "the header on line" if header else "line"
                    raise DataFileError(
                        f"line {line_number} of {label} has {_count(len(fields), 'field')}, but {where} {first_line} "
                        f"has {width}; every row must have the same number of fields"
                    )
                yield line_number, [fields[i] for i in index]

        rows = selected(itertools.chain([] if header else [first], [] if second is None else [second], lines))
        blocks: list[np.ndarray] = []
        line_numbers: list[int] = []
        bad: list[int] = []  # indices into line_numbers
        problems: list[str] = []
        for chunk in iter(lambda: list(itertools.islice(rows, _CHUNK_ROWS)), []):
            values = _to_floats([fields for _, fields in chunk], len(names))
            for i in np.flatnonzero(~np.isfinite(values).all(axis=1)).tolist():
                bad.append(len(line_numbers) + i)
                if len(problems) < _SHOWN_PROBLEMS:
                    problems.append(_problem(*chunk[i], names, header))
            line_numbers.extend(line_number for line_number, _ in chunk)
            blocks.append(values)
    if not line_numbers:
        raise DataFileError(f"{label} has a header (line {first_line}) but no data rows")
    examples = "; ".join(problems) + ("" if header else " (columns counted from 0)")
    numbers = [line_numbers[i] for i in bad]
    return _valid_table(np.concatenate(blocks), names, bad, numbers, "line", label, examples, drop_invalid)


def _data_lines(stream: IO[bytes], label: str) -> Iterator[tuple[int, str]]:
    """The line number and text of each line that is neither blank nor a comment."""
    for line_number, raw in enumerate(stream, start=1):
        try:
            text = raw.decode("utf-8-sig" if line_number == 1 else "utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise DataFileError(f"line {line_number} of {label} is not UTF-8 text; is it a text data file?") from None
        stripped = text.strip()
        if stripped and not stripped.startswith("#"):
            yield line_number, text


def _sniff(texts: list[str]) -> str:
    """The delimiter of a ``.txt`` file: tab or comma when every one of ``texts`` has it, else whitespace."""
    for delimiter in ("\t", ","):
        if all(delimiter in text for text in texts):
            return delimiter
    return _WHITESPACE


def _split(text: str, delimiter: str, line_number: int, label: str) -> list[str]:
    """The fields of one line, without surrounding whitespace or quotes."""
    if '"' not in text:
        return text.split() if delimiter == _WHITESPACE else [f.strip() for f in text.split(delimiter)]
    unclosed = DataFileError(f'line {line_number} of {label} has a misplaced or unclosed quote (")')
    if delimiter == _WHITESPACE:
        fields, position, text = [], 0, text.rstrip()
        while position < len(text):
            match = _WHITESPACE_FIELD.match(text, position)
            if match is None:
                raise unclosed
            quoted, bare = match.groups()
            fields.append(bare if quoted is None else quoted.replace('""', '"').strip())
            position = match.end()
        return fields
    try:
        fields = next(csv.reader([text], delimiter=delimiter, skipinitialspace=True, strict=True))
    except csv.Error:
        raise unclosed from None
    return [f.strip() for f in fields]


def _to_float(text: str) -> float:
    """``text`` as a number, NaN when it is not one."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _is_number(text: str) -> bool:
    """Whether :class:`float` reads ``text`` (``nan`` and ``inf`` included)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_header(fields: Sequence[str]) -> bool:
    """Whether a first row is a header: some field is neither empty nor a number."""
    return any(f != "" and not _is_number(f) for f in fields)


def _to_floats(rows: list[list[str]], width: int) -> np.ndarray:
    """Rows of fields as a float64 array of shape ``(len(rows), width)``; NaN where a field is not a number."""
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError:  # some field is not a number: convert one by one
        values = np.array([[_to_float(f) for f in row] for row in rows], dtype=np.float64)
    return values.reshape(len(rows), width)


def _problem(line_number: int, fields: list[str], names: list[str], header: bool) -> str:
    """Where the first value of an invalid row that is not a finite number is, and what it is."""
    name, text = next((n, t) for n, t in zip(names, fields, strict=True) if not np.isfinite(_to_float(t)))
    column = repr(name) if header else name
    return f"line {line_number}, column {column}: {repr(text) if text else 'empty'}"
