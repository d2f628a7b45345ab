r"""One iteration of a sliced iterative flow: monotone maps along orthonormal directions."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Bijection
from .spline import ElementwiseSpline

__all__ = ["SlicedTransform"]


class SlicedTransform(Bijection):
    r"""Monotone splines along :math:`K` orthonormal directions, the identity on their orthogonal complement.

    With directions :math:`A \in \mathbb R^{D \times K}`, :math:`A^\top A = I_K`, and an
    :class:`ElementwiseSpline` :math:`\Psi` on :math:`\mathbb R^K`,

    .. math::

        z = x + A\,\big(\Psi(A^\top x) - A^\top x\big), \qquad
        \log|\det J| = \sum_{k=1}^K \log \Psi_k'(a_k^\top x),

    since in the orthonormal basis :math:`(A, A_\perp)` the Jacobian is :math:`\mathrm{diag}(\Psi'(A^\top x),
    I_{D-K})`. The inverse is :math:`x = z + A\,(\Psi^{-1}(A^\top z) - A^\top z)`. This is the layer of Dai and
    Seljak 2021, *Sliced Iterative Normalizing Flows* (eq. 6). The directions are a persistent buffer (fixed under
    gradient training; :class:`~torchnf.architectures.SINF` chooses them), the splines are parameters. A new layer
    uses the first :math:`K` coordinate axes and identity splines.

    Args:
        features: the number of dimensions :math:`D`.
        directions: the number of directions :math:`K \le D`.
        knots: the number of spline knots per direction.
    """

    directions: Tensor

    def __init__(self, features: int, directions: int, knots: int = 32) -> None:
        super().__init__(features)
        if len(self.event_shape) != 1:
            raise ValueError(f"SlicedTransform acts on vectors; got {features!r} features")
        if isinstance(directions, bool) or not isinstance(directions, int) or not 1 <= directions <= features:
            raise ValueError(f"directions must be an integer in [1, {features}], got {directions!r}")
        self.register_buffer("directions", torch.eye(features)[:, :directions].contiguous())
        self.spline = ElementwiseSpline(directions, knots)

    @torch.no_grad()
    def set_directions(self, directions: Tensor) -> None:
        """Set the ``(D, K)`` directions; their columns must be orthonormal (to a relative 1e-4)."""
        if directions.shape != self.directions.shape:
            expected = tuple(self.directions.shape)
            raise ValueError(f"directions must have shape {expected}, got {tuple(directions.shape)}")
        gram = directions.double().T @ directions.double()
        error = float((gram - torch.eye(gram.shape[0], dtype=gram.dtype)).abs().max())
        if not error <= 1e-4:
            raise ValueError(f"the directions must be orthonormal columns; |A^T A - I| reaches {error:.3g}")
        self.directions.copy_(directions)

    def _map(self, v: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        projected = v @ self.directions
        mapped, log_det = (self.spline.inverse if inverse else self.spline)(projected)
        return v + (mapped - projected) @ self.directions.T, log_det

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._map(x, inverse=False)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._map(z, inverse=True)
