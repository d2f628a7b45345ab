r"""Sylvester flows (van den Berg et al. 2018, *Sylvester normalizing flows for variational inference*).

A Sylvester layer generalizes the planar layer from one hidden unit to :math:`M \le D`:

.. math::

    f(x) = x + Q R\, h(\tilde R Q^\top x + b), \qquad
    \log|\det J_f(x)| = \sum_{i=1}^M \log\big|1 + h'(a_i) R_{ii} \tilde R_{ii}\big|, \qquad
    a = \tilde R Q^\top x + b, \qquad h = \tanh,

where :math:`Q` is :math:`D \times M` with orthonormal columns and :math:`R, \tilde R` are :math:`M \times M` upper
triangular. The log-det follows from Sylvester's determinant identity
:math:`\det(I_D + Q R H' \tilde R Q^\top) = \det(I_M + R H' \tilde R)` (a triangular matrix).

**Parameterization.** :math:`Q` is the first :math:`M` columns of a product of :math:`M` Householder reflections
:math:`I - \tau_i v_i v_i^\top`, :math:`v_i = (0, \dots, 0, 1, v_{i+1,i}, \dots, v_{D,i})`, :math:`\tau_i =
2/\|v_i\|^2` (:func:`householder_columns`); as in a QR decomposition these reach every matrix with
orthonormal columns up to column signs, which the triangular factors absorb. The map is invertible when
:math:`R_{ii}\tilde R_{ii} > -1/\sup h' = -1` (their theorem 2). The paper bounds both diagonals by
:math:`\tanh`, which keeps their product in :math:`(-1, 1)`; here every admissible pair with :math:`\tilde R_{ii} >
0` is reached (the sign of a pair can be flipped with its row of :math:`\tilde R`, column of :math:`R` and
:math:`b_i` without changing the map), from raw values :math:`\rho_i, \tilde\rho_i`:

.. math::

    \tilde R_{ii} = e^{\tilde\rho_i}, \qquad R_{ii} = \big(\operatorname{softplus}(\rho_i) - 1\big) e^{-\tilde\rho_i},
    \qquad\text{so}\qquad 1 + R_{ii}\tilde R_{ii} = \operatorname{softplus}(\rho_i) > 0,

and each log-det term is :func:`~torchnf.bijections.planar.log_residual_slope` of that slack. The off-diagonal
entries of :math:`R, \tilde R` and the Householder vectors are free.

**Inverse.** The complement of the span of :math:`Q` passes unchanged. In the coordinates :math:`p = Q^\top x`,
:math:`q = Q^\top y`, the map :math:`q = p + R\,h(\tilde R p + b)` is upper triangular, so back substitution
solves it from the last coordinate up: with :math:`p_{j>i}` known, :math:`p_i` solves the scalar strictly
increasing equation :math:`p_i + R_{ii} h(\tilde R_{ii} p_i + c_i) = q_i - \sum_{j>i} R_{ij} h(a_j)`,
:math:`c_i = b_i + \sum_{j>i} \tilde R_{ij} p_j`, by :func:`torchnf.roots.monotone_inverse` (its root lies within
:math:`|R_{ii}|` of the right-hand side, and implicit gradients flow through every step). Then
:math:`x = y - Q R\,h(a)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.mlp import Activation
from ..roots import MonotoneMap, monotone_inverse
from .base import ShapeLike, as_shape
from .planar import IDENTITY_SLACK, AmortizedBijection, log_residual_slope

__all__ = ["SylvesterTransform", "householder_columns"]


def _scalar_map(r_ii: Tensor, r_tilde_ii: Tensor, shift: Tensor, slack: Tensor) -> MonotoneMap:
    r"""The map :math:`p \mapsto p + R_{ii}\tanh(\tilde R_{ii} p + c_i)` and its log-slope."""

    def coordinate(p: Tensor) -> tuple[Tensor, Tensor]:
        a = r_tilde_ii * p + shift
        return p + r_ii * torch.tanh(a), log_residual_slope(a, slack)

    return coordinate


def householder_columns(vectors: Tensor) -> Tensor:
    r"""The first :math:`M` columns of :math:`H_1 \cdots H_M`, :math:`H_i = I - 2 v_i v_i^\top / \|v_i\|^2`, for the
    columns :math:`v_i` of ``vectors`` (shape ``(*batch, D, M)``, no column zero): a ``(*batch, D, M)`` matrix with
    orthonormal columns. (The reflections are applied one by one; ``torch.linalg.householder_product`` computes
    the same matrix, but on CPU its backward pass took about 15 ms even for a 2 x 2 matrix in torch 2.13.)"""
    d, m = vectors.shape[-2:]
    q = torch.eye(d, m, dtype=vectors.dtype, device=vectors.device).expand(vectors.shape)
    scale = 2 / vectors.square().sum(-2, keepdim=True)  # (*batch, 1, M)
    for i in reversed(range(m)):
        v = vectors[..., i : i + 1]  # (*batch, D, 1)
        q = q - (scale[..., i : i + 1] * v) @ (v.mT @ q)
    return q


def _matvec(matrix: Tensor, vector: Tensor) -> Tensor:
    """``matrix @ vector`` over the last dimensions, broadcasting batch dimensions."""
    return torch.einsum("...ij,...j->...i", matrix, vector)


class SylvesterTransform(AmortizedBijection):
    r"""The Sylvester flow :math:`f(x) = x + Q R \tanh(\tilde R Q^\top x + b)` (van den Berg et al. 2018,
    *Sylvester normalizing flows for variational inference*), with Householder-parameterized orthonormal
    :math:`Q \in \mathbb{R}^{D \times M}` and upper triangular :math:`R, \tilde R` with
    :math:`1 + R_{ii}\tilde R_{ii} > 0`.

    ``forward`` (data to latent) is the closed-form formula; ``inverse`` solves :math:`M` scalar equations per point
    by back substitution with :func:`torchnf.roots.monotone_inverse`. See the module docstring for the
    parameterization. The layer starts as the identity (:math:`R = 0`) with a random :math:`Q`.

    Args:
        event_shape: the number of dimensions ``D`` (or ``(D,)``).
        columns: the number :math:`M` of columns of :math:`Q` (hidden units), ``1 <= M <= D``; default ``D``.
        context_shape: shape of a context, or ``None``: with one, a network of the flattened context offsets all
            raw parameters (Householder vectors, triangular entries and bias).
        hidden: hidden widths of that network.
        activation: its nonlinearity.
    """

    lower_index: Tensor
    upper_index: Tensor

    def __init__(
        self,
        event_shape: ShapeLike,
        columns: int | None = None,
        context_shape: ShapeLike | None = None,
        hidden: Sequence[int] = (64,),
        activation: Activation = nn.ReLU,
    ) -> None:
        features = as_shape(event_shape).numel()
        columns = features if columns is None else columns
        if not isinstance(columns, int) or not 1 <= columns <= features:
            raise ValueError(f"columns must be an int from 1 to the number of dimensions {features}, got {columns!r}")
        lower = torch.tril_indices(features, columns, -1)  # the free entries of the Householder vectors
        upper = torch.triu_indices(columns, columns, 1)  # the off-diagonal entries of R and R tilde
        f64 = torch.float64
        raw = {
            "householder": torch.randn(lower.shape[1], dtype=f64),
            "r_upper": torch.zeros(upper.shape[1], dtype=f64),
            "r_tilde_upper": torch.zeros(upper.shape[1], dtype=f64),
            "r_diag": torch.full((columns,), IDENTITY_SLACK, dtype=f64),  # R_ii = 0
            "r_tilde_diag": torch.zeros(columns, dtype=f64),
            "bias": torch.zeros(columns, dtype=f64),
        }
        super().__init__(event_shape, context_shape, raw, hidden, activation)
        self.columns = columns
        self.register_buffer("lower_index", lower[0] * columns + lower[1], persistent=False)
        self.register_buffer("upper_index", upper[0] * columns + upper[1], persistent=False)

    def coefficients(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        r"""``(Q, R, R_tilde, b, slack)`` for a batch ``x``, with ``slack`` :math:`= 1 + R_{ii}\tilde R_{ii}`; each
        has the leading dimensions ``batch`` only when the layer has a context."""
        householder, r_upper, r_tilde_upper, r_diag, r_tilde_diag, bias = self.raw_parameters(x, context)
        batch, d, m = householder.shape[:-1], self.features, self.columns
        strict = householder.new_zeros(*batch, d * m).index_copy(-1, self.lower_index, householder)
        eye = torch.eye(d, m, dtype=householder.dtype, device=householder.device)
        q = householder_columns(strict.unflatten(-1, (d, m)) + eye)
        slack = F.softplus(r_diag)
        r = self._triangular(r_upper, (slack - 1) * torch.exp(-r_tilde_diag))
        r_tilde = self._triangular(r_tilde_upper, torch.exp(r_tilde_diag))
        return q, r, r_tilde, bias, slack

    def _triangular(self, upper: Tensor, diagonal: Tensor) -> Tensor:
        """The upper triangular matrix with the given strictly upper entries and diagonal."""
        m = self.columns
        strict = upper.new_zeros(*upper.shape[:-1], m * m).index_copy(-1, self.upper_index, upper)
        return strict.unflatten(-1, (m, m)) + torch.diag_embed(diagonal)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        q, r, r_tilde, bias, slack = self.coefficients(x, context)
        a = _matvec(r_tilde, torch.einsum("...d,...dm->...m", x, q)) + bias
        z = x + _matvec(q, _matvec(r, torch.tanh(a)))
        return z, log_residual_slope(a, slack).sum(-1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        q, r, r_tilde, bias, slack = self.coefficients(z, context)
        target = torch.einsum("...d,...dm->...m", z, q)
        p: list[Tensor] = []  # p_{i+1}, ..., p_M, solved from the last coordinate up
        h: list[Tensor] = []  # tanh(a_j) for the same coordinates
        log_det = z.new_zeros(self.batch_shape(z))
        for i in reversed(range(self.columns)):
            shift, rest = bias[..., i], target[..., i]
            if p:
                shift = shift + (r_tilde[..., i, i + 1 :] * torch.stack(p, -1)).sum(-1)
                rest = rest - (r[..., i, i + 1 :] * torch.stack(h, -1)).sum(-1)
            r_ii, r_tilde_ii = r[..., i, i], r_tilde[..., i, i]
            coordinate = _scalar_map(r_ii, r_tilde_ii, shift, slack[..., i])
            reach = (r_ii.abs() + 1).detach()  # |root - rest| <= |R_ii|
            p_i, log_slope = monotone_inverse(coordinate, rest, rest.detach() - reach, rest.detach() + reach)
            p.insert(0, p_i)
            h.insert(0, torch.tanh(r_tilde_ii * p_i + shift))
            log_det = log_det - log_slope
        return z - _matvec(q, _matvec(r, torch.stack(h, -1))), log_det

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, columns={self.columns}"
