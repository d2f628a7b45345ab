"""The common face every library's model is given, so the timing and fitting code never branches on the library."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["Built"]


@dataclass(frozen=True)
class Built:
    """A model built by one library, seen through three calls.

    Attributes:
        module: the ``nn.Module`` holding every parameter (what the optimizer trains and ``.to`` moves).
        log_prob: data of shape ``(n, D)`` to log-densities of shape ``(n,)``, through the library's public API.
        sample: ``n`` to samples of shape ``(n, D)``, through the library's public API.
        adam: ``adam(parameters, lr)``, the Adam optimizer the library's users train with: torch's default unless
            the library makes its own (torchnf's ``fit`` uses the fused kernel).
    """

    module: nn.Module
    log_prob: Callable[[Tensor], Tensor]
    sample: Callable[[int], Tensor]
    adam: Callable[[Iterable[Tensor], float], torch.optim.Optimizer] = lambda params, lr: torch.optim.Adam(params, lr)
