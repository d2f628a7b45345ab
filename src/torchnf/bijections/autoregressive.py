r"""Masked autoregressive layers (Papamakarios et al. 2017, *Masked autoregressive flow for density estimation*).

With an order :math:`\pi` on the dimensions, each output is a transformer of its input whose parameters depend
only on the inputs that come earlier in the order:

.. math::

    z_i = \tau\big(x_i;\ \theta_i(x_{<_\pi i}, c)\big), \qquad \log|\det J| = \sum_i \log \tau'(x_i;\ \theta_i).

All :math:`\theta_i` come from one MADE pass (:class:`~torchnf.nn.MADE`), so the data-to-latent direction (the
density) costs one pass; the latent-to-data direction (sampling) needs :math:`D` sequential steps, each of which
computes only the one dimension it inverts (see :meth:`MaskedAutoregressive.inverse`). Wrap the layer in
:class:`~torchnf.bijections.Invert` for the opposite trade-off (IAF).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..nn.made import MADE
from ..nn.mlp import Activation
from ..transformers import Affine, Transformer
from .base import Bijection, ShapeLike

__all__ = ["MaskedAutoregressive"]


class MaskedAutoregressive(Bijection):
    """A masked autoregressive layer over vectors.

    Args:
        event_shape: the number of dimensions ``D`` (or ``(D,)``).
        transformer: the elementwise map (default :class:`~torchnf.transformers.Affine`).
        order: the autoregressive order, a permutation of ``range(D)`` (default: ``0, ..., D - 1``).
        context_shape: shape of the context, or ``None``.
        hidden: hidden widths of the MADE.
        activation: its nonlinearity.
        residual: use masked residual blocks.
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        transformer: Transformer | None = None,
        order: Sequence[int] | Tensor | None = None,
        context_shape: ShapeLike | None = None,
        hidden: Sequence[int] = (128, 128),
        activation: Activation = nn.ReLU,
        residual: bool = False,
    ) -> None:
        super().__init__(event_shape, context_shape)
        if len(self.event_shape) != 1:
            raise ValueError(f"MaskedAutoregressive acts on vectors; got event_shape {tuple(self.event_shape)}")
        self.transformer = Affine() if transformer is None else transformer
        self.made = MADE(
            self.event_shape[0],
            self.transformer.n_params,
            hidden,
            order,
            0 if self.context_shape is None else self.context_shape.numel(),
            activation,
            residual,
        )

    def _params(self, x: Tensor, context: Tensor | None) -> Tensor:
        if self.context_shape is None:
            return self.made(x)
        if context is None:
            raise ValueError("this autoregressive layer was built with a context_shape and needs a context")
        context = self.expand_context(context, self.batch_shape(x))
        return self.made(x, context.flatten(x.dim() - 1))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z, log_diag = self.transformer(x, self._params(x, context))
        return z, log_diag.sum(-1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # D sequential steps in the autoregressive order, each inverting one column (see SequentialMADE).
        (dim,) = self.event_shape
        flat = None
        if self.context_shape is not None:
            if context is None:
                raise ValueError("this autoregressive layer was built with a context_shape and needs a context")
            flat = self.expand_context(context, self.batch_shape(z)).flatten(z.dim() - 1)
        made = self.made.sequential(z.shape[:-1], flat)
        columns: list[Tensor] = [z[..., 0]] * dim
        log_diags: list[Tensor] = []
        for d in self.made.order.tolist():
            columns[d], log_diag = self.transformer.inverse(z[..., d], made.parameters(d))
            log_diags.append(log_diag)
            made.set_input(d, columns[d])
        return torch.stack(columns, -1), torch.stack(log_diags, -1).sum(-1)
