"""The libraries compared, found at run time: a peer that is missing or fails to import is skipped, with the reason."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from .adapter import Built
from .spec import ModelSpec

__all__ = ["LIBRARIES", "PEERS", "Library", "builder", "probe"]

LIBRARIES: tuple[str, ...] = ("torchnf", "zuko", "nflows", "normflows", "torchflows")
"""Every library the harness knows, torchnf first."""

PEERS: tuple[str, ...] = LIBRARIES[1:]


@dataclass(frozen=True)
class Library:
    """A library's availability.

    Attributes:
        name: its import name.
        version: the installed distribution's version, or ``""``.
        error: why it cannot be used (not installed, or its import failed), or ``""`` when it can.
    """

    name: str
    version: str = ""
    error: str = ""

    @property
    def available(self) -> bool:
        """Whether its builder can be used."""
        return not self.error


def probe(name: str) -> Library:
    """Import the library ``name`` and its builder module, reporting a failure instead of raising it."""
    if name not in LIBRARIES:
        raise ValueError(f"unknown library {name!r}; expected one of {', '.join(LIBRARIES)}")
    try:
        installed = version(name)
    except PackageNotFoundError:
        return Library(name, error="not installed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(f"{__package__}.build_{name}")
    except Exception as error:  # any import-time failure (e.g. an incompatible torch) means: skip this library
        return Library(name, installed, f"import failed: {type(error).__name__}: {error}")
    return Library(name, installed)


def builder(name: str) -> Callable[[str, int, ModelSpec], Built]:
    """The ``build(model, dim, spec)`` function of library ``name`` (which must be available)."""
    return importlib.import_module(f"{__package__}.build_{name}").build
