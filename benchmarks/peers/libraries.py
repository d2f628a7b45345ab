"""The libraries compared, found at run time: a peer that is missing or fails to import is skipped, with the reason."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from .adapter import Built
from .spec import ModelSpec

__all__ = ["LIBRARIES", "OURS", "PEERS", "Library", "builder", "probe"]

LIBRARIES: tuple[str, ...] = ("torchnf", "torchnf-compiled", "zuko", "nflows", "normflows", "torchflows")
"""Every library the harness knows, torchnf first; ``torchnf-compiled`` is torchnf with its ``torch.compile`` path."""

OURS: tuple[str, ...] = LIBRARIES[:2]
PEERS: tuple[str, ...] = LIBRARIES[2:]


def _distribution(name: str) -> str:
    return name.split("-")[0]


def _module(name: str) -> str:
    return f"build_{name.replace('-', '_')}"


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
        installed = version(_distribution(name))
    except PackageNotFoundError:
        return Library(name, error="not installed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(f"{__package__}.{_module(name)}")
    except Exception as error:  # any import-time failure (e.g. an incompatible torch) means: skip this library
        return Library(name, installed, f"import failed: {type(error).__name__}: {error}")
    return Library(name, installed)


def builder(name: str) -> Callable[[str, int, ModelSpec], Built]:
    """The ``build(model, dim, spec)`` function of library ``name`` (which must be available)."""
    return importlib.import_module(f"{__package__}.{_module(name)}").build
