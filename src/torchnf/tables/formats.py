"""The file formats, told apart by extension, and the checks on paths shared by reading and writing."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from .errors import DataFileError, _and, _clean

_DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": None}  # None: sniffed on reading, spaces on writing
EXTENSIONS: tuple[str, ...] = (*_DELIMITERS, ".npy", ".npz")
"""The supported file extensions."""

_WHITESPACE = " "  # the delimiter that stands for runs of whitespace
_CHUNK_ROWS = 65536  # text rows converted to or from numbers at a time


def _extension(path: Path, label: str) -> str:
    """The extension of ``path`` in lower case, one of :data:`EXTENSIONS`."""
    extension = path.suffix.lower()
    if extension not in EXTENSIONS:
        found = f"its extension {path.suffix!r} is not supported" if path.suffix else "it has no extension"
        raise DataFileError(
            f"cannot tell the format of {label}: {found}; the supported extensions are {_and(EXTENSIONS)}"
        )
    return extension


def _check_readable(path: Path, label: str) -> None:
    """Refuse a path that is missing, a folder, or an empty file."""
    if not path.exists():
        raise DataFileError(f"file not found: {label}")
    if path.is_dir():
        raise DataFileError(f"{label} is a folder, not a data file")
    if path.stat().st_size == 0:
        raise DataFileError(f"{label} is empty")


def _open(path: Path, label: str) -> IO[bytes]:
    """``path`` opened for reading bytes."""
    try:
        return open(path, "rb")
    except OSError as error:
        raise DataFileError(f"cannot read {label}: {error.strerror or _clean(error)}") from None
