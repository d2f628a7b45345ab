"""torchnf models: the presets themselves, without normalization layers.

Choices: ``Flow(Preset(D, layers=L, hidden=H, normalization=None))``; the peers' defaults have no ActNorm, so none
here either. Everything else is the preset's default: ReLU networks, masks over halves flipped at every coupling
layer (``mask="half"``), MADE orders reversed at every autoregressive layer, affine log-scales softly bounded by 3,
splines with ``bins`` bins on ``[-bound, bound]`` and identity tails. Densities and samples go through the public
``Flow.log_prob`` and ``Flow.sample``, which validate their input as a user's call would; training steps use the
Adam that ``Flow.fit`` makes (torch's fused kernel).
"""

from __future__ import annotations

from torchnf import MAF, CouplingRQNSF, Flow, MaskedAutoregressiveRQNSF, RealNVP
from torchnf.architectures import Preset
from torchnf.optimization import make_optimizer

from .adapter import Built
from .spec import ModelSpec

__all__ = ["build"]


def _preset(model: str, dim: int, spec: ModelSpec) -> Preset:
    common = {"layers": spec.layers, "hidden": spec.hidden, "normalization": None}
    if model == "MAF":
        return MAF(dim, **common)
    if model == "RealNVP":
        return RealNVP(dim, **common)
    if model == "CouplingRQNSF":
        return CouplingRQNSF(dim, bins=spec.bins, bound=spec.bound, **common)
    if model == "MaskedAutoregressiveRQNSF":
        return MaskedAutoregressiveRQNSF(dim, bins=spec.bins, bound=spec.bound, **common)
    raise ValueError(f"unknown model {model!r}")


def build(model: str, dim: int, spec: ModelSpec) -> Built:
    """The torchnf flow for ``model`` over ``dim`` dimensions."""
    flow = Flow(_preset(model, dim, spec))
    return Built(flow, flow.log_prob, flow.sample, lambda params, lr: make_optimizer("adam", list(params), lr, 0.0))
