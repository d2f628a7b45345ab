r"""Permuting the last axis by a gather in both passes.

:math:`y = x_{[\ldots, \pi]}` has the gradient :math:`\partial L/\partial x = (\partial L/\partial y)_{[\ldots,
\pi^{-1}]}`, another gather. Autograd's backward of ``index_select`` is a scatter instead (``index_add`` into
zeros), which is slower, and which torch 2.13's CPU compiler (inductor) miscompiles when it vectorizes it,
writing out of bounds. Coupling layers and :class:`~torchnf.bijections.Permutation` go through
:func:`permute_last`, so they compile safely with ``torch.compile``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["permute_last"]


class _PermuteLast(torch.autograd.Function):
    generate_vmap_rule = True  # torch.func transforms (jacrev, vmap) see through it

    @staticmethod
    def forward(x: Tensor, permutation: Tensor, inverse: Tensor) -> Tensor:
        return x.index_select(-1, permutation)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor], output: Tensor) -> None:
        ctx.save_for_backward(inputs[1], inputs[2])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        permutation, inverse = ctx.saved_tensors
        return permute_last(grad, inverse, permutation), None, None  # differentiable again


def permute_last(x: Tensor, permutation: Tensor, inverse: Tensor) -> Tensor:
    """``x[..., permutation]``, for a ``permutation`` of the last axis whose inverse is ``inverse``."""
    return _PermuteLast.apply(x, permutation, inverse)
