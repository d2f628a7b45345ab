"""Checks of user input at the public entry points, with messages that name the argument and what was expected."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .bijections.base import Shape

__all__ = ["as_context", "as_float64", "as_points", "as_sample_shape", "as_tensor"]


def as_tensor(value: Any, name: str) -> Tensor:
    """A tensor of ``value`` (tensors pass through; array-likes must be numeric)."""
    if isinstance(value, Tensor):
        return value
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a numeric array or tensor; could not convert it: {error}") from None
    if array.dtype.kind not in "biufc":
        raise TypeError(f"{name} must be a numeric array or tensor, got an array of dtype {array.dtype}")
    return torch.from_numpy(array)


def as_float64(value: Any, name: str) -> Tensor:
    """``value`` as a finite real float64 tensor on the CPU (the constants of targets and simulators)."""
    t = as_tensor(value, name)
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must be real numbers, got dtype {t.dtype}")
    t = t.detach().to(device="cpu", dtype=torch.float64)
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(f"{name} must be finite: {name} contains {int(bad.sum())} NaN or infinite value(s)")
    return t


def _check_values(t: Tensor, name: str) -> None:
    if t.is_complex():
        raise TypeError(f"{name} must be real floating point, got complex dtype {t.dtype}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be floating point, got dtype {t.dtype}; convert it, e.g. with .float()")
    # A finite sum proves every value finite (NaN and inf propagate) with one reduction; a non-finite sum (or an
    # overflowing one) falls back to the elementwise check.
    if bool(torch.isfinite(t.detach().sum())):
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or infinite value(s), the first at index {first}")


def _shape_text(shape: Shape) -> str:
    return "(..., " + ", ".join(map(str, shape)) + ")"


def as_points(
    value: Any,
    name: str,
    event_shape: Shape,
    dtype: torch.dtype,
    device: torch.device,
    allow_empty: bool = True,
) -> Tensor:
    """Check that ``value`` is finite real data of shape ``(*batch, *event_shape)``; move it to dtype and device."""
    t = as_tensor(value, name)
    n = len(event_shape)
    if t.dim() < n or t.shape[t.dim() - n :] != event_shape:
        raise ValueError(
            f"{name} must have shape {_shape_text(event_shape)}: batch dimensions followed by the event shape "
            f"{tuple(event_shape)}; got shape {tuple(t.shape)}"
        )
    if not allow_empty and t.numel() == 0:
        raise ValueError(f"{name} is empty: it must hold at least one point of shape {tuple(event_shape)}")
    _check_values(t, name)
    return t.to(dtype=dtype, device=device)


def as_context(
    value: Any,
    context_shape: Shape | None,
    batch_shape: Shape | None,
    dtype: torch.dtype,
    device: torch.device,
    name: str = "context",
) -> Tensor | None:
    """Check a context against the flow's ``context_shape`` and, when given, the data's ``batch_shape``."""
    if context_shape is None:
        if value is not None:
            raise ValueError(f"this flow takes no context, but {name} was given")
        return None
    if value is None:
        raise ValueError(f"this flow is conditional: pass a {name} of shape {_shape_text(context_shape)}")
    t = as_points(value, name, context_shape, dtype, device)
    if batch_shape is not None:
        c_batch = t.shape[: t.dim() - len(context_shape)]
        try:
            fits = torch.broadcast_shapes(c_batch, batch_shape) == batch_shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"{name} has batch shape {tuple(c_batch)}, which does not broadcast to the data's batch shape "
                f"{tuple(batch_shape)}"
            )
    return t


def as_sample_shape(n: Any) -> Shape:
    """Check a number of samples (an int or a sequence of ints, none negative)."""
    dims = [n] if not isinstance(n, (tuple, list, torch.Size)) else list(n)
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
            raise ValueError(f"the number of samples must be a non-negative int or a tuple of them, got {n!r}")
    return torch.Size(int(d) for d in dims)
