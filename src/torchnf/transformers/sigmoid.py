r"""Deep sigmoidal flows (Huang, Krueger, Lacoste and Courville 2018, *Neural autoregressive flows*, section 3.3).

The deep sigmoidal flow (DSF) transformer is the logit of a convex combination of sigmoids,

.. math::

    \tau(x) = \sigma^{-1}\Big(\sum_{j=1}^{H} w_j\, \sigma(a_j x + b_j)\Big), \qquad a_j > 0,\ w_j > 0,\
    \textstyle\sum_j w_j = 1,

and the deep dense sigmoidal flow (DDSF) stacks dense layers of such units. Everything is computed in log space:
with :math:`z_j = a_j x + b_j`, :math:`\log m = \operatorname{LSE}_j(\log w_j + \log\sigma(z_j))` and, since the
weights sum to one, :math:`\log(1 - m) = \operatorname{LSE}_j(\log w_j + \log\sigma(-z_j))`, so that
:math:`\tau = \log m - \log(1 - m)` and

.. math::

    \log\tau'(x) = \operatorname{LSE}_j\big(\log w_j + \log a_j + \log\sigma(z_j) + \log\sigma(-z_j)\big)
    - \log m - \log(1 - m)

are exact and finite for any :math:`x`; in the tails :math:`\tau` grows linearly, with slope :math:`\min_j a_j`.
The inverse has no closed form: it is computed by :func:`torchnf.roots.monotone_inverse`.

**Parameterization.** Every raw parameter passes through the soft bound :math:`r \mapsto B \tanh(r / B)`
(default :math:`B = 5`), as the log-scale of :class:`~torchnf.transformers.Affine` does:
:math:`\log a_j = B \tanh(s_j \tilde a_j / B)`, :math:`b_j = B \tanh(s_j \tilde b_j / B)`,
:math:`w = \operatorname{softmax}(B \tanh(\tilde w / B))`. So however large the conditioner's outputs (inputs of
size 1e3 make them large), :math:`e^{-B} \le a_j \le e^{B}`, :math:`|b_j| \le B` and the weights stay within a
factor :math:`e^{2B}` of each other: the tails of every layer have slope at least :math:`e^{-B}`, the map is onto
:math:`\mathbb{R}`, and the inverse of large values is found and has finite gradients.

**Zero parameters.** Zero raw parameters give :math:`a_j = 1`, :math:`b_j = 0` and uniform weights, so every unit
is :math:`\sigma(x)` and :math:`\tau(x) = \sigma^{-1}(\sigma(x)) = x` (up to rounding): the identity. The fixed
factors :math:`s_j`, spread over :math:`[0.5, 1.5]`, make the units respond differently to the same conditioner
update, so training leaves the symmetric start (with identical factors the units would stay identical forever,
and DSF would remain an affine map).
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor

from ..roots import monotone_inverse
from .base import Transformer
from .simplex import log_softmax

__all__ = ["DeepDenseSigmoid", "DeepSigmoid"]

_SPREAD = (0.5, 1.5)  # the range of the fixed per-unit factors s_j


def _layer_sizes(d_in: int, hidden: int, d_out: int) -> tuple[int, int, int, int]:
    """Raw parameter counts ``(u, a, b, w)`` of a dense sigmoid layer ``d_in -> hidden units -> d_out``."""
    return (hidden * d_in if d_in > 1 else 0), hidden, hidden, d_out * hidden


def _dense_sigmoid_layer(
    h: Tensor, log_dh: Tensor, raw: Tensor, d_in: int, hidden: int, d_out: int, bound: float
) -> tuple[Tensor, Tensor]:
    r"""One layer :math:`h' = \sigma^{-1}(w\,\sigma(a \odot (u h) + b))` and the log-gradient of ``h'`` in ``x``.

    ``h`` and ``log_dh = log dh/dx`` are ``(..., d_in)``; ``raw`` holds the layer's raw parameters.
    """
    raw_u, raw_a, raw_b, raw_w = raw.split(_layer_sizes(d_in, hidden, d_out), dim=-1)
    spread = torch.linspace(*_SPREAD, hidden, dtype=raw.dtype, device=raw.device) if hidden > 1 else 1.0
    log_a, b = (bound * torch.tanh(spread * r / bound) for r in (raw_a, raw_b))
    if d_in > 1:  # positive mixing weights u (rows on the simplex), then the affine pre-activation
        log_u = log_softmax(bound * torch.tanh(raw_u.unflatten(-1, (hidden, d_in)) / bound))
        mixed = (log_u.exp() * h.unsqueeze(-2)).sum(-1)
        log_dmixed = torch.logsumexp(log_u + log_dh.unsqueeze(-2), dim=-1)
    else:
        mixed, log_dmixed = h, log_dh
    z = log_a.exp() * mixed + b
    log_sig, log_sig_neg = F.logsigmoid(z), F.logsigmoid(-z)
    log_w = log_softmax(bound * torch.tanh(raw_w.unflatten(-1, (d_out, hidden)) / bound))
    log_m = torch.logsumexp(log_w + log_sig.unsqueeze(-2), dim=-1)
    log_one_minus_m = torch.logsumexp(log_w + log_sig_neg.unsqueeze(-2), dim=-1)
    log_dz = log_a + log_dmixed + log_sig + log_sig_neg
    log_dout = torch.logsumexp(log_w + log_dz.unsqueeze(-2), dim=-1) - log_m - log_one_minus_m
    return log_m - log_one_minus_m, log_dout


class DeepDenseSigmoid(Transformer):
    r"""The deep dense sigmoidal flow (DDSF) transformer of NAF: a stack of ``layers`` dense sigmoid layers.

    Layer :math:`l` maps :math:`h \in \mathbb{R}^{d_{l-1}}` to :math:`\mathbb{R}^{d_l}` through :math:`H` sigmoid
    units,

    .. math::

        h^{(l)} = \sigma^{-1}\Big(w^{(l)}\, \sigma\big(a^{(l)} \odot (u^{(l)} h^{(l-1)}) + b^{(l)}\big)\Big),

    with :math:`a > 0` and :math:`u \in \mathbb{R}^{H \times d_{l-1}}`, :math:`w \in \mathbb{R}^{d_l \times H}`
    positive with rows summing to one (softmax of bounded raw values), :math:`d_0 = d_L = 1` and :math:`d_l = H` in
    between (NAF's equation, with the number of units decoupled from the output width so that the last layer, like
    DSF, ends on the logit of a mixture). Every layer is increasing, so the stack is; its log-derivative is
    accumulated with log-sum-exp matrix products, exactly. ``layers=1`` is :class:`DeepSigmoid`. See the module
    docstring for the parameterization (zero parameters give the identity) and
    :func:`torchnf.roots.monotone_inverse` for the inverse.

    ``n_params`` per dimension, a layer having :math:`H d_{l-1}` weights :math:`u` (none when :math:`d_{l-1} = 1`),
    :math:`2H` for :math:`a, b` and :math:`d_l H` weights :math:`w`: :math:`3H` for one layer, and
    :math:`(H^2 + 2H) + (L - 2)(2H^2 + 2H) + (H^2 + 3H)` for :math:`L \ge 2` (168 for the default ``H = 8, L = 2``).

    Args:
        hidden: the number of sigmoid units :math:`H` per layer.
        layers: the number of layers :math:`L`.
        bound: the soft bound :math:`B` on every raw parameter (module docstring).
        tol: the root finder's tolerance for the inverse (default: that of the dtype).
    """

    def __init__(self, hidden: int = 8, layers: int = 2, bound: float = 5.0, tol: float | None = None) -> None:
        super().__init__()
        if not bound > 0:
            raise ValueError(f"bound must be positive, got {bound}")
        if not (isinstance(hidden, int) and hidden >= 1):
            raise ValueError(f"hidden must be a positive int, got {hidden!r}")
        if not (isinstance(layers, int) and layers >= 1):
            raise ValueError(f"layers must be a positive int, got {layers!r}")
        self.hidden, self.layers, self.bound, self.tol = hidden, layers, float(bound), tol
        widths = [1] + [hidden] * (layers - 1) + [1]
        self.shapes = list(pairwise(widths))
        self.layer_params = [sum(_layer_sizes(d_in, hidden, d_out)) for d_in, d_out in self.shapes]
        self.n_params = sum(self.layer_params)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        if params.shape[-1] != self.n_params:
            raise ValueError(f"{type(self).__name__} expects {self.n_params} parameters, got {params.shape[-1]}")
        h, log_dh = x.unsqueeze(-1), torch.zeros_like(x).unsqueeze(-1)
        for (d_in, d_out), raw in zip(self.shapes, params.split(self.layer_params, dim=-1), strict=True):
            h, log_dh = _dense_sigmoid_layer(h, log_dh, raw, d_in, self.hidden, d_out, self.bound)
        return h.squeeze(-1), log_dh.squeeze(-1)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        half_width = 1 + y.abs() / 1024  # never rounds away, even for large float32 values
        bracket = (y - half_width, y + half_width)
        x, log_derivative = monotone_inverse(lambda x: self.forward(x, params), y, *bracket, tol=self.tol)
        return x, -log_derivative

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, layers={self.layers}, bound={self.bound}"


class DeepSigmoid(DeepDenseSigmoid):
    r"""The deep sigmoidal flow (DSF) transformer of NAF:
    :math:`\tau(x) = \sigma^{-1}\big(\sum_{j=1}^H w_j \sigma(a_j x + b_j)\big)`.

    Per dimension ``n_params = 3 * hidden``: the raw :math:`(\tilde a_j)`, :math:`(\tilde b_j)`,
    :math:`(\tilde w_j)`, in that order. Zero parameters give the identity (module docstring); the
    log-derivative is exact and computed in log space; the inverse uses :func:`torchnf.roots.monotone_inverse`.

    Args:
        hidden: the number of sigmoid units :math:`H`.
        bound: the soft bound :math:`B` on every raw parameter (module docstring).
        tol: the root finder's tolerance for the inverse (default: that of the dtype).
    """

    def __init__(self, hidden: int = 8, bound: float = 5.0, tol: float | None = None) -> None:
        super().__init__(hidden, 1, bound, tol)

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, bound={self.bound}"
