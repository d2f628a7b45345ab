r"""Linear bijections: permutations, elementwise affine maps and LU-parameterized dense maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from .base import Bijection, ShapeLike, as_shape
from .permute import permute_last

__all__ = ["ElementwiseAffine", "LULinear", "Permutation", "Reverse"]


class Permutation(Bijection):
    r"""Reorder the dimensions of a vector: :math:`z_i = x_{\pi(i)}`; the log-det is zero.

    The permutation is a persistent buffer, so a saved and reloaded model keeps the same order.

    Args:
        event_shape: the number of dimensions ``D`` (or ``(D,)``).
        permutation: a permutation of ``range(D)``; ``None`` draws one at random (``torch`` global RNG).
    """

    permutation: Tensor
    inverse_permutation: Tensor

    def __init__(self, event_shape: ShapeLike, permutation: Sequence[int] | Tensor | None = None) -> None:
        super().__init__(event_shape)
        if len(self.event_shape) != 1:
            raise ValueError(f"Permutation acts on vectors; got event_shape {tuple(self.event_shape)}")
        features = self.event_shape[0]
        perm = torch.randperm(features) if permutation is None else torch.as_tensor(permutation, dtype=torch.long)
        if sorted(perm.tolist()) != list(range(features)):
            raise ValueError(f"permutation must be a permutation of range({features}), got {perm.tolist()}")
        self.register_buffer("permutation", perm)
        self.register_buffer("inverse_permutation", torch.argsort(perm))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return permute_last(x, self.permutation, self.inverse_permutation), x.new_zeros(x.shape[:-1])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return permute_last(z, self.inverse_permutation, self.permutation), z.new_zeros(z.shape[:-1])


class Reverse(Permutation):
    """Reverse the order of a vector's dimensions."""

    def __init__(self, event_shape: ShapeLike) -> None:
        features = as_shape(event_shape)[-1]
        super().__init__(event_shape, torch.arange(features - 1, -1, -1))


class ElementwiseAffine(Bijection):
    r"""A learned elementwise affine map :math:`z = e^{s} \odot x + t`, with :math:`\log|\det J| = \sum s`.

    This is NICE's final diagonal scaling layer (Dinh et al. 2015, section 3.3). ``s`` and ``t`` have shape
    ``param_shape``, which broadcasts against ``event_shape`` (for images, ``(C, 1, 1)`` shares them across
    pixels); the log-det counts each parameter once per position it covers.

    Args:
        event_shape: shape of one input point.
        param_shape: shape of ``s`` and ``t`` (default ``event_shape``).
    """

    def __init__(self, event_shape: ShapeLike, param_shape: ShapeLike | None = None) -> None:
        super().__init__(event_shape)
        shape = self.event_shape if param_shape is None else as_shape(param_shape)
        if len(shape) != len(self.event_shape) or any(
            p not in (1, e) for p, e in zip(shape, self.event_shape, strict=True)
        ):
            raise ValueError(f"param_shape {tuple(shape)} does not broadcast to event_shape {tuple(self.event_shape)}")
        self.log_scale = nn.Parameter(torch.zeros(shape))
        self.shift = nn.Parameter(torch.zeros(shape))
        self.positions_per_param = self.event_shape.numel() // shape.numel()

    def _log_det(self, x: Tensor) -> Tensor:
        return (self.log_scale.sum() * self.positions_per_param).expand(self.batch_shape(x))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x * self.log_scale.exp() + self.shift, self._log_det(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return (z - self.shift) * torch.exp(-self.log_scale), -self._log_det(z)


class LULinear(Bijection):
    r"""A dense invertible linear map :math:`z = W x + b` with :math:`W = P L U` (Kingma and Dhariwal 2018,
    *Glow*, section 3.2).

    :math:`P` is a fixed permutation, :math:`L` unit lower triangular, :math:`U` upper triangular with diagonal
    :math:`\sigma \odot e^{u}` (fixed signs :math:`\sigma`), so :math:`\log|\det W| = \sum_i u_i` costs
    :math:`O(D)` and the inverse takes two triangular solves.

    Args:
        event_shape: the number of dimensions ``D`` (or ``(D,)``).
        init: ``"orthogonal"`` starts from the LU decomposition of a random rotation (mixing from the first
            step, as in Glow); ``"identity"`` starts at :math:`W = I`.
    """

    permutation: Tensor
    sign: Tensor

    def __init__(self, event_shape: ShapeLike, init: Literal["orthogonal", "identity"] = "orthogonal") -> None:
        super().__init__(event_shape)
        if len(self.event_shape) != 1:
            raise ValueError(f"LULinear acts on vectors; got event_shape {tuple(self.event_shape)}")
        features = self.event_shape[0]
        if init == "orthogonal":
            q, _ = torch.linalg.qr(torch.randn(features, features, dtype=torch.float64))
            p, lower, upper = torch.linalg.lu(q)
        elif init == "identity":
            p = lower = upper = torch.eye(features, dtype=torch.float64)
        else:
            raise ValueError(f"unknown init {init!r}; expected 'orthogonal' or 'identity'")
        diag = upper.diagonal()
        dtype = torch.get_default_dtype()
        self.register_buffer("permutation", p.to(dtype))
        self.register_buffer("sign", diag.sign().to(dtype))
        self.lower = nn.Parameter(lower.tril(-1).to(dtype))
        self.upper = nn.Parameter(upper.triu(1).to(dtype))
        self.log_diag = nn.Parameter(diag.abs().log().to(dtype))
        self.bias = nn.Parameter(torch.zeros(features, dtype=dtype))

    def _factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.event_shape[0], dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower.tril(-1) + eye
        upper = self.upper.triu(1) + torch.diag(self.sign * self.log_diag.exp())
        return lower, upper

    def weight(self) -> Tensor:
        """The matrix :math:`W = P L U`."""
        lower, upper = self._factors()
        return self.permutation @ lower @ upper

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = x @ self.weight().T + self.bias
        return z, self.log_diag.sum().expand(x.shape[:-1])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # x W^T = z - b with W^T = U^T L^T P^T: right-multiply by P, then solve against L^T and U^T.
        lower, upper = self._factors()
        rows = ((z - self.bias) @ self.permutation).reshape(-1, self.event_shape[0])
        rows = torch.linalg.solve_triangular(lower.T, rows, upper=True, left=False, unitriangular=True)
        rows = torch.linalg.solve_triangular(upper.T, rows, upper=False, left=False)
        return rows.reshape(z.shape), -self.log_diag.sum().expand(z.shape[:-1])
