"""nflows models, composed from nflows transforms.

Choices: autoregressive layers are nflows' masked transforms with a feed-forward MADE of ``len(H) - 1`` blocks
(``use_residual_blocks=False``), so the MADE has as many masked linear layers, of the same widths, as torchnf's;
note that nflows' MADE applies no nonlinearity after its first layer (its blocks are linear-then-activation), so it
has one ReLU fewer. The order is reversed between layers by ``ReversePermutation``. Coupling layers use
``nflows.nn.nets.MLP`` (ReLU, hidden widths ``H``) over the conditioning half, with the same half masks as torchnf.
Affine scales are nflows' own (``softplus`` for MAF, ``sigmoid(s + 2)`` for couplings, plus 1e-3); splines have
``tails="linear"`` and ``tail_bound=bound`` with the default minimum bin sizes and derivative. Standard normal base;
``Flow.log_prob`` and ``Flow.sample``.
"""

from __future__ import annotations

import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.nn.nets import MLP
from nflows.transforms import (
    AffineCouplingTransform,
    CompositeTransform,
    MaskedAffineAutoregressiveTransform,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    PiecewiseRationalQuadraticCouplingTransform,
    ReversePermutation,
    Transform,
)
from torch import nn

from .adapter import Built
from .spec import ModelSpec, half_mask
from .wrappers import IgnoreContext

__all__ = ["build"]


def _net_factory(spec: ModelSpec):
    def create(in_features: int, out_features: int) -> nn.Module:
        return IgnoreContext(MLP((in_features,), (out_features,), list(spec.hidden)), spec.hidden[-1])

    return create


def _layer(model: str, dim: int, spec: ModelSpec, i: int) -> Transform:
    if model in ("RealNVP", "CouplingRQNSF"):
        mask = torch.tensor(half_mask(dim, i), dtype=torch.int)
        if model == "RealNVP":
            return AffineCouplingTransform(mask, _net_factory(spec))
        return PiecewiseRationalQuadraticCouplingTransform(
            mask, _net_factory(spec), num_bins=spec.bins, tails="linear", tail_bound=spec.bound
        )
    made = {
        "features": dim,
        "hidden_features": spec.equal_width("nflows"),
        "num_blocks": len(spec.hidden) - 1,
        "use_residual_blocks": False,
    }
    if model == "MAF":
        return MaskedAffineAutoregressiveTransform(**made)
    if model == "MaskedAutoregressiveRQNSF":
        return MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
            **made, num_bins=spec.bins, tails="linear", tail_bound=spec.bound
        )
    raise ValueError(f"unknown model {model!r}")


def build(model: str, dim: int, spec: ModelSpec) -> Built:
    """The nflows flow for ``model`` over ``dim`` dimensions."""
    autoregressive = model in ("MAF", "MaskedAutoregressiveRQNSF")
    transforms: list[Transform] = []
    for i in range(spec.layers):
        if autoregressive and i > 0:
            transforms.append(ReversePermutation(dim))
        transforms.append(_layer(model, dim, spec, i))
    flow = Flow(CompositeTransform(transforms), StandardNormal([dim]))
    return Built(flow, flow.log_prob, flow.sample)
