"""torchflows models, composed from torchflows layers without its architectures' extra normalization.

torchflows' presets (``MAF``, ``RealNVP``, ``CouplingRQNSF``, ...) add an elementwise affine layer at both ends
and an ActNorm after every layer; for parity with the other libraries (and torchnf with ``normalization=None``)
the same layers are composed here without them: ``ReversePermutationMatrix`` then the layer, ``L`` times, in a
``BijectiveComposition`` inside ``torchflows.flows.Flow``.

Choices: coupling layers (``AffineCoupling``, ``RQSCoupling``: half split) use the ``FeedForward`` conditioner with
``n_layers=len(H) + 1`` linear layers of width ``H[0]`` and ReLU (torchflows' default is tanh); masked layers
(``AffineForwardMaskedAutoregressive``, ``RQSForwardMaskedAutoregressive``) use torchflows' MADE, with the same
depth and width but tanh, which it does not let one change. Splines have ``n_bins=bins`` and ``boundary=bound``
(torchflows' default bound is 50). L2 regularization is off (it only enters torchflows' own ``fit``). Standard
normal base; ``Flow.log_prob`` and ``Flow.sample(n, no_grad=True)``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torchflows.bijections.base import Bijection, BijectiveComposition
from torchflows.bijections.finite.autoregressive.layers import (
    AffineCoupling,
    AffineForwardMaskedAutoregressive,
    RQSCoupling,
    RQSForwardMaskedAutoregressive,
)
from torchflows.bijections.finite.matrix.permutation import ReversePermutationMatrix
from torchflows.flows import Flow

from .adapter import Built
from .spec import ModelSpec

__all__ = ["build"]

_LAYERS: dict[str, type[Bijection]] = {
    "MAF": AffineForwardMaskedAutoregressive,
    "RealNVP": AffineCoupling,
    "CouplingRQNSF": RQSCoupling,
    "MaskedAutoregressiveRQNSF": RQSForwardMaskedAutoregressive,
}


def _options(model: str, spec: ModelSpec) -> dict[str, Any]:
    conditioner: dict[str, Any] = {"n_hidden": spec.equal_width("torchflows"), "n_layers": len(spec.hidden) + 1}
    if model in ("RealNVP", "CouplingRQNSF"):
        conditioner["nonlinearity"] = nn.ReLU
    options: dict[str, Any] = {"conditioner_kwargs": conditioner, "l2_regularization": False}
    if model in ("CouplingRQNSF", "MaskedAutoregressiveRQNSF"):
        options["transformer_kwargs"] = {"n_bins": spec.bins, "boundary": spec.bound}
    return options


def build(model: str, dim: int, spec: ModelSpec) -> Built:
    """The torchflows flow for ``model`` over ``dim`` dimensions."""
    if model not in _LAYERS:
        raise ValueError(f"unknown model {model!r}")
    layers: list[Bijection] = []
    for _ in range(spec.layers):
        layers.append(ReversePermutationMatrix(event_shape=(dim,)))
        layers.append(_LAYERS[model](event_shape=(dim,), **_options(model, spec)))
    flow = Flow(BijectiveComposition(layers))

    def sample(n: int) -> Tensor:
        return flow.sample((n,), no_grad=True)

    return Built(flow, flow.log_prob, sample)
