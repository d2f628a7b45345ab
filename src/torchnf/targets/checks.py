r"""The checks shared by everything that pairs a flow with a target: variational fitting, importance sampling and
the samplers of :mod:`torchnf.mcmc`. One place, so that the messages agree."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..flow import Flow
    from .base import LogDensity

__all__ = ["check_density_flow", "check_log_target", "evaluate_log_target"]


def check_density_flow(flow: Any, purpose: str) -> Flow:
    """Refuse what is not a continuous, unconditional :class:`~torchnf.Flow`; ``purpose`` (such as
    ``"fit_variational"``) names the caller in the messages."""
    from ..flow import Flow

    if not isinstance(flow, Flow):
        raise TypeError(f"{purpose} needs a torchnf Flow, got {type(flow).__name__}")
    if flow.dequantization is not None:
        raise ValueError(
            f"{purpose} needs a continuous flow; this one is dequantized (its samples are discrete and its log_prob "
            "is a bound, not a density)"
        )
    if flow.context_shape is not None:
        raise ValueError(
            f"{purpose} takes an unconditional flow; {type(flow.bijection).__name__} expects a context of shape "
            f"{tuple(flow.context_shape)}"
        )
    return flow


def check_log_target(log_target: Any, event_shape: torch.Size) -> None:
    """Refuse a ``log_target`` that is not callable, or that declares an ``event_shape`` other than the flow's."""
    if not callable(log_target):
        raise TypeError(f"log_target must be callable, log_target(x) -> log-density; got {type(log_target).__name__}")
    shape = getattr(log_target, "event_shape", None)
    if isinstance(shape, (tuple, torch.Size)) and tuple(shape) != tuple(event_shape):
        raise ValueError(
            f"log_target's event_shape {tuple(shape)} differs from the flow's event_shape {tuple(event_shape)}"
        )


def evaluate_log_target(log_target: LogDensity, x: Tensor, *, strict: bool = True) -> Tensor:
    r"""``log_target(x)`` for points ``(n, *event_shape)``, checked to be a floating tensor of shape ``(n,)``.

    With ``strict``, NaN or :math:`+\infty` raise (:math:`-\infty`, zero density, is allowed): a target that returns
    them at points a flow drew is broken. Samplers pass ``strict=False``: there a diverging trajectory may reach
    points where the density is not finite, and the Metropolis test rejects them.
    """
    value = log_target(x)
    n = x.shape[0]
    if not isinstance(value, Tensor):
        raise TypeError(
            f"log_target must return a tensor of shape ({n},), one log-density per point; got {type(value).__name__}"
        )
    if value.shape != (n,):
        raise ValueError(
            f"log_target must return one log-density per point, shape ({n},), for points of shape "
            f"{tuple(x.shape)}; got shape {tuple(value.shape)}"
        )
    if not value.is_floating_point():
        raise TypeError(f"log_target must return floating-point values, got dtype {value.dtype}")
    if strict:
        bad = torch.isnan(value) | (value == math.inf)
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise ValueError(
                f"log_target returned {float(value[i].detach())} for {int(bad.sum())} of {n} points (e.g. at "
                f"{x[i].tolist()}); a log-density must be finite or -inf"
            )
    return value
