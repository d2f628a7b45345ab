r"""Coupling layers (Dinh et al. 2015, *NICE*; Dinh et al. 2017, *Density estimation using Real NVP*).

A binary mask splits :math:`x` into a kept part :math:`x_A` and a transformed part :math:`x_B`:

.. math::

    z_A = x_A, \qquad z_B = \tau\big(x_B;\ \theta(x_A, c)\big), \qquad
    \log|\det J| = \sum_{i \in B} \log \tau'(x_i;\ \theta_i),

where the conditioner network :math:`\theta` sees the kept part and the context :math:`c`. Both directions cost
one network pass, since :math:`x_A = z_A`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from ..nn.mlp import MLP, Activation
from ..transformers import Affine, Transformer
from .base import Bijection, ShapeLike
from .permute import permute_last

__all__ = ["Coupling", "coupling_mask"]

MaskKind = Literal["half", "alternate"]


def coupling_mask(features: int, kind: MaskKind = "half", flip: bool = False) -> Tensor:
    """A boolean mask of the dimensions a coupling layer keeps (``True``) and transforms (``False``).

    ``"half"`` keeps the first ``features // 2`` dimensions, ``"alternate"`` the even-indexed ones; ``flip``
    swaps kept and transformed.
    """
    index = torch.arange(features)
    if kind == "half":
        mask = index < features // 2
    elif kind == "alternate":
        mask = index % 2 == 0
    else:
        raise ValueError(f"unknown coupling mask {kind!r}; expected 'half', 'alternate' or a boolean tensor")
    return ~mask if flip else mask


class Coupling(Bijection):
    """A coupling layer over vectors: the kept dimensions condition a transformer of the others.

    Args:
        event_shape: the number of dimensions ``D`` (or ``(D,)``).
        transformer: the elementwise map of the transformed part (default :class:`~torchnf.transformers.Affine`).
        mask: ``"half"``, ``"alternate"`` or a boolean tensor of shape ``(D,)``, ``True`` where a dimension is
            kept unchanged and conditions the others.
        flip: swap kept and transformed dimensions of a named mask.
        context_shape: shape of the context, or ``None``.
        hidden: hidden widths of the conditioner network.
        activation: its nonlinearity.
        residual: use residual blocks in the conditioner network.
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        transformer: Transformer | None = None,
        mask: MaskKind | Tensor = "half",
        flip: bool = False,
        context_shape: ShapeLike | None = None,
        hidden: Sequence[int] = (128, 128),
        activation: Activation = nn.ReLU,
        residual: bool = False,
    ) -> None:
        super().__init__(event_shape, context_shape)
        if len(self.event_shape) != 1:
            raise ValueError(f"Coupling acts on vectors; got event_shape {tuple(self.event_shape)}")
        features = self.event_shape[0]
        if isinstance(mask, Tensor):
            if mask.shape != (features,) or mask.dtype != torch.bool:
                raise ValueError(f"a coupling mask must be a bool tensor of shape ({features},), got {mask}")
            keep = ~mask if flip else mask
        else:
            keep = coupling_mask(features, mask, flip)
        if bool(keep.all()):
            raise ValueError("the coupling mask keeps every dimension; at least one must be transformed")
        kept, transformed = keep.nonzero().flatten(), (~keep).nonzero().flatten()
        self.register_buffer("kept", kept, persistent=False)
        self.register_buffer("transformed", transformed, persistent=False)
        self.register_buffer("unsplit", torch.argsort(torch.cat([kept, transformed])), persistent=False)
        self.register_buffer("split", torch.cat([kept, transformed]), persistent=False)
        # When the kept dimensions form one block at either end (the "half" masks), splitting and joining are slices
        # and a concatenation; otherwise a permutation by gathers (see permute_last).
        n_kept = len(kept)
        self.kept_block: Literal["first", "last"] | None = (
            "first" if bool(keep[:n_kept].all()) else "last" if bool(keep[features - n_kept :].all()) else None
        )
        self.transformer = Affine() if transformer is None else transformer
        context_features = 0 if self.context_shape is None else self.context_shape.numel()
        self.net = MLP(
            len(kept) + context_features,
            len(transformed) * self.transformer.n_params,
            hidden,
            activation,
            residual,
        )

    def _split_params(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        n_kept = len(self.kept)
        if self.kept_block == "first":
            x_kept, x_moved = x[..., :n_kept], x[..., n_kept:]
        elif self.kept_block == "last":
            x_moved, x_kept = x[..., : x.shape[-1] - n_kept], x[..., x.shape[-1] - n_kept :]
        else:
            x_kept, x_moved = permute_last(x, self.split, self.unsplit).split([n_kept, x.shape[-1] - n_kept], -1)
        h = x_kept
        if self.context_shape is not None:
            if context is None:
                raise ValueError("this coupling layer was built with a context_shape and needs a context")
            context = self.expand_context(context, self.batch_shape(x))
            h = torch.cat([h, context.flatten(x.dim() - 1)], dim=-1)
        params = self.net(h).unflatten(-1, (len(self.transformed), self.transformer.n_params))
        return x_kept, x_moved, params

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_kept, x_moved, params = self._split_params(x, context)
        z_moved, log_diag = self.transformer(x_moved, params)
        return self._join(x_kept, z_moved), log_diag.sum(-1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z_kept, z_moved, params = self._split_params(z, context)
        x_moved, log_diag = self.transformer.inverse(z_moved, params)
        return self._join(z_kept, x_moved), log_diag.sum(-1)

    def _join(self, kept: Tensor, moved: Tensor) -> Tensor:
        """The vector with ``kept`` and ``moved`` back in their places."""
        if self.kept_block == "first":
            return torch.cat([kept, moved], dim=-1)
        if self.kept_block == "last":
            return torch.cat([moved, kept], dim=-1)
        return permute_last(torch.cat([kept, moved], dim=-1), self.unsplit, self.split)
