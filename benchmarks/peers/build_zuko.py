"""zuko models, composed from zuko's lazy transformations.

Choices: MAF is ``zuko.flows.MAF(D, transforms=L, hidden_features=H)`` (orders reversed at every layer, as in
torchnf). The autoregressive spline flow is what ``zuko.flows.NSF`` builds, a MAF with ``MonotonicRQSTransform``
and ``bins`` bins, with the spline bound passed explicitly. zuko's ``RealNVP`` and ``NSF(passes=2)`` use checkered
masks (and NSF a masked MLP over all inputs), so the coupling flows are built from ``GeneralCouplingTransform`` with
a plain MLP over the conditioning half and the same half masks as torchnf. Affine layers use zuko's
``MonotonicAffineTransform`` (log-scale softly clipped), splines ``MonotonicRQSTransform`` on ``[-bound, bound]``
with identity tails. ReLU networks, standard normal base. A density is ``flow().log_prob(x)`` and a sample
``flow().sample((n,))``: zuko rebuilds the distribution at every call, which is how it is used.
"""

from __future__ import annotations

from functools import partial

import torch
import zuko
from torch import Tensor
from zuko.distributions import DiagNormal
from zuko.flows import Flow, GeneralCouplingTransform, UnconditionalDistribution
from zuko.transforms import MonotonicAffineTransform, MonotonicRQSTransform

from .adapter import Built
from .spec import ModelSpec, half_mask

__all__ = ["build"]


def _coupling(dim: int, spec: ModelSpec, spline: bool) -> Flow:
    if spline:
        univariate = partial(MonotonicRQSTransform, bound=spec.bound)
        shapes = [(spec.bins,), (spec.bins,), (spec.bins - 1,)]
    else:
        univariate, shapes = MonotonicAffineTransform, [(), ()]
    layers = [
        # zuko's mask marks the conditioning features; ours marks the transformed ones
        GeneralCouplingTransform(
            dim,
            mask=torch.tensor([not m for m in half_mask(dim, i)]),
            univariate=univariate,
            shapes=shapes,
            hidden_features=spec.hidden,
        )
        for i in range(spec.layers)
    ]
    base = UnconditionalDistribution(DiagNormal, torch.zeros(dim), torch.ones(dim), buffer=True)
    return Flow(layers, base)


def _flow(model: str, dim: int, spec: ModelSpec) -> Flow:
    if model == "MAF":
        return zuko.flows.MAF(dim, transforms=spec.layers, hidden_features=spec.hidden)
    if model == "MaskedAutoregressiveRQNSF":
        return zuko.flows.MAF(
            dim,
            transforms=spec.layers,
            hidden_features=spec.hidden,
            univariate=partial(MonotonicRQSTransform, bound=spec.bound),
            shapes=[(spec.bins,), (spec.bins,), (spec.bins - 1,)],
        )
    if model in ("RealNVP", "CouplingRQNSF"):
        return _coupling(dim, spec, model == "CouplingRQNSF")
    raise ValueError(f"unknown model {model!r}")


def build(model: str, dim: int, spec: ModelSpec) -> Built:
    """The zuko flow for ``model`` over ``dim`` dimensions."""
    flow = _flow(model, dim, spec)

    def log_prob(x: Tensor) -> Tensor:
        return flow().log_prob(x)

    def sample(n: int) -> Tensor:
        return flow().sample((n,))

    return Built(flow, log_prob, sample)
