"""Argument checks shared by the data-set modules; every failure is a ``ValueError`` naming the argument."""

from __future__ import annotations

import numpy as np


def check_int(value: object, name: str, minimum: int, why: str = "") -> int:
    """``value`` as an ``int`` when it is an integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{why}, got {value!r}")
    return int(value)


def check_seed(seed: object) -> int:
    """``seed`` as an ``int`` when it is a non-negative integer."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_real(value: object, name: str, minimum: float | None = None, strict: bool = False) -> float:
    """``value`` as a ``float`` when it is a finite real number, ``>= minimum`` (``> minimum`` when ``strict``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    x = float(value)
    if not np.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    if minimum is not None and (x <= minimum if strict else x < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum:g}, got {x}")
    return x
