"""torchnf models through its ``torch.compile`` path: the torchnf builds, with densities computed by
:func:`torchnf.training.compiled_log_prob` (``fullgraph=True``; what ``Flow.fit(compile=True)`` trains with).

The input checks of ``Flow.log_prob`` still run, outside the compiled graph; sampling is torchnf's eager
``Flow.sample``. The compilation (seconds to a minute) happens in the warm-up calls and is not timed.
"""

from __future__ import annotations

from torch import Tensor

from torchnf.training import compiled_log_prob

from . import build_torchnf
from .adapter import Built
from .spec import ModelSpec

__all__ = ["build"]


def build(model: str, dim: int, spec: ModelSpec) -> Built:
    """The torchnf flow for ``model`` over ``dim`` dimensions, its densities compiled."""
    eager = build_torchnf.build(model, dim, spec)
    flow = eager.module
    compiled = compiled_log_prob(flow)  # type: ignore[arg-type]

    def log_prob(x: Tensor) -> Tensor:
        points, context = flow.check_data(x, None)  # type: ignore[operator]
        return compiled(points, context)

    return Built(flow, log_prob, eager.sample, eager.adam)
