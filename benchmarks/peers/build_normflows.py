"""normflows models, composed from normflows flow layers.

normflows' layers map latent to data in ``forward`` (its densities run ``inverse``), so the masked layers are
wrapped in ``normflows.flows.Reverse``: the density then costs one network pass per layer and sampling ``D``, as in
torchnf, which is also what normflows' own ``AutoregressiveRationalQuadraticSpline`` wrapper does.

Choices: MADEs are normflows' (a copy of nflows') with ``len(H) - 1`` feed-forward blocks
(``use_residual_blocks=False``), so no nonlinearity follows their first layer; affine MAF scales are
``sigmoid(s + 2) + 1e-3``. RealNVP is ``AffineCouplingBlock`` (halves; ``scale_map="exp"``, the RealNVP default)
whose ``normflows.nets.MLP`` (ReLU, widths ``H``) has zero-initialized outputs as in normflows' examples. The
coupling spline flow is ``PiecewiseRationalQuadraticCoupling`` with half masks and a plain MLP, without the
elementwise spline on the conditioning half that normflows' ``CoupledRationalQuadraticSpline`` adds (torchnf and
the other peers have none); splines have ``tails="linear"``, ``tail_bound=bound``. Dimensions are swapped between
layers with ``Permute(D, mode="swap")`` (normflows has no public reversal), and the base is a fixed
``DiagGaussian``. Densities are ``NormalizingFlow.log_prob``, samples the first output of ``NormalizingFlow.sample``
(which also returns their log-densities: normflows has no sample-only call).
"""

from __future__ import annotations

import math

import normflows as nf
import torch
from normflows.flows.neural_spline.autoregressive import MaskedPiecewiseRationalQuadraticAutoregressive
from normflows.flows.neural_spline.coupling import PiecewiseRationalQuadraticCoupling
from torch import Tensor, nn

from .adapter import Built
from .spec import ModelSpec, half_mask
from .wrappers import IgnoreContext

__all__ = ["build"]


def _mlp(spec: ModelSpec, in_features: int, out_features: int, init_zeros: bool = False) -> nn.Module:
    return nf.nets.MLP([in_features, *spec.hidden, out_features], init_zeros=init_zeros)


def _layer(model: str, dim: int, spec: ModelSpec, i: int) -> nf.flows.Flow:
    if model == "RealNVP":
        half = math.ceil(dim / 2)  # AffineCouplingBlock splits with chunk(2): the first part conditions
        return nf.flows.AffineCouplingBlock(_mlp(spec, half, 2 * (dim - half), init_zeros=True))
    if model == "CouplingRQNSF":
        return nf.flows.Reverse(
            PiecewiseRationalQuadraticCoupling(
                mask=torch.tensor(half_mask(dim, i), dtype=torch.int),
                transform_net_create_fn=lambda n_in, n_out: IgnoreContext(_mlp(spec, n_in, n_out), spec.hidden[-1]),
                num_bins=spec.bins,
                tails="linear",
                tail_bound=spec.bound,
                apply_unconditional_transform=False,
            )
        )
    made = {
        "features": dim,
        "hidden_features": spec.equal_width("normflows"),
        "num_blocks": len(spec.hidden) - 1,
        "use_residual_blocks": False,
    }
    if model == "MAF":
        return nf.flows.Reverse(nf.flows.MaskedAffineAutoregressive(**made))
    if model == "MaskedAutoregressiveRQNSF":
        return nf.flows.Reverse(
            MaskedPiecewiseRationalQuadraticAutoregressive(
                **made, num_bins=spec.bins, tails="linear", tail_bound=spec.bound
            )
        )
    raise ValueError(f"unknown model {model!r}")


def build(model: str, dim: int, spec: ModelSpec) -> Built:
    """The normflows flow for ``model`` over ``dim`` dimensions."""
    swap_halves = model in ("MAF", "RealNVP", "MaskedAutoregressiveRQNSF")  # CouplingRQNSF flips its masks instead
    flows: list[nf.flows.Flow] = []
    for i in range(spec.layers):
        if swap_halves and i > 0:
            flows.append(nf.flows.Permute(dim, mode="swap"))
        flows.append(_layer(model, dim, spec, i))
    model_ = nf.NormalizingFlow(nf.distributions.DiagGaussian(dim, trainable=False), flows)

    def sample(n: int) -> Tensor:
        return model_.sample(n)[0]

    return Built(model_, model_.log_prob, sample)
