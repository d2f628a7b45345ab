r"""Affine and shift transformers.

The affine transformer :math:`\tau(x) = e^{s} x + t` is the transformer of RealNVP (Dinh et al. 2017, *Density
estimation using Real NVP*) and MAF (Papamakarios et al. 2017, *Masked autoregressive flow for density
estimation*). The shift transformer :math:`\tau(x) = x + t` is NICE's additive coupling (Dinh et al. 2015, *NICE:
Non-linear independent components estimation*).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Transformer

__all__ = ["Affine", "Shift"]


class Affine(Transformer):
    r"""The affine map :math:`\tau(x) = e^{s} x + t` with a softly bounded log-scale.

    The conditioner's raw output :math:`(\tilde s, t)` gives :math:`s = b \tanh(\tilde s / b)`, so
    :math:`|s| < b`: the scale can neither overflow nor collapse, in either direction, whatever the network
    outputs; :math:`\tilde s = 0` gives :math:`s = 0`, so zero parameters are the identity. The
    log-derivative is :math:`s`.

    Args:
        log_scale_bound: the bound :math:`b` on the log-scale of one layer.
    """

    n_params = 2

    def __init__(self, log_scale_bound: float = 3.0) -> None:
        super().__init__()
        if not log_scale_bound > 0:
            raise ValueError(f"log_scale_bound must be positive, got {log_scale_bound}")
        self.log_scale_bound = float(log_scale_bound)

    def _scale_shift(self, params: Tensor) -> tuple[Tensor, Tensor]:
        raw_log_scale, shift = params.unbind(-1)
        bound = self.log_scale_bound
        return bound * torch.tanh(raw_log_scale / bound), shift

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale, shift = self._scale_shift(params)
        return x * log_scale.exp() + shift, log_scale

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale, shift = self._scale_shift(params)
        return (y - shift) * torch.exp(-log_scale), -log_scale

    def extra_repr(self) -> str:
        return f"log_scale_bound={self.log_scale_bound}"


class Shift(Transformer):
    r"""The volume-preserving shift :math:`\tau(x) = x + t`; its log-derivative is zero."""

    n_params = 1

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        shift = params[..., 0]
        return x + shift, torch.zeros_like(x)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        shift = params[..., 0]
        return y - shift, torch.zeros_like(y)
