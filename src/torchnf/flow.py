r"""The flow: a base distribution pushed through a bijection.

With :math:`f` mapping data to latent and base density :math:`p_Z`,

.. math::

    \log p(x \mid c) = \log p_Z\big(f(x; c)\big) + \log\big|\det J_f(x; c)\big|, \qquad
    x = f^{-1}(z; c),\ z \sim p_Z,

where :math:`f = g \circ s` is the bijection :math:`g` after a fixed data standardization :math:`s`
(the identity until :meth:`Flow.fit` sets it from the training data).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ._validation import as_context, as_points, as_sample_shape
from .bijections.base import Bijection, Shape
from .bijections.normalization import Standardization
from .distributions import BaseDistribution, StandardNormal

if TYPE_CHECKING:
    from .optimization import History

__all__ = ["Flow"]


class Flow(nn.Module):
    """A normalizing flow: a distribution that can be sampled and evaluated exactly.

    Raw data goes in and densities come out in raw units: ``fit`` sets a fixed standardization
    (:attr:`standardization`) from the training data, which the flow applies before :attr:`bijection`. The history
    of the last fit is kept in :attr:`history` and saved with the model, as is :attr:`metadata`, a dictionary of
    JSON values for the user (the command-line tool records the data's column names there).

    A new flow is in evaluation mode, so evaluating or sampling it never changes it (ActNorm initializes from
    training data, BatchNorm uses running statistics). :meth:`fit` trains in training mode and returns to
    evaluation mode; a hand-written training loop calls ``flow.train()`` first.

    Args:
        bijection: the map from data to latent.
        base: the latent distribution (default :class:`~torchnf.distributions.StandardNormal` over the
            bijection's ``latent_shape``).

    Example:
        >>> import torch
        >>> from torchnf import Flow, RealNVP
        >>> flow = Flow(RealNVP(2))
        >>> flow.log_prob(torch.zeros(5, 2)).shape
        torch.Size([5])
        >>> flow.sample(3).shape
        torch.Size([3, 2])
    """

    def __init__(self, bijection: Bijection, base: BaseDistribution | None = None) -> None:
        super().__init__()
        if not isinstance(bijection, Bijection):
            raise TypeError(f"Flow needs a Bijection, got {type(bijection).__name__}")
        base = StandardNormal(bijection.latent_shape) if base is None else base
        if base.event_shape != bijection.latent_shape:
            raise ValueError(
                f"the base distribution's event_shape {tuple(base.event_shape)} differs from the bijection's "
                f"latent_shape {tuple(bijection.latent_shape)}"
            )
        self.standardization = Standardization(bijection.event_shape)
        self.bijection = bijection
        self.base = base
        self.history: History | None = None
        self.metadata: dict[str, Any] = {}
        self.eval()

    @property
    def event_shape(self) -> Shape:
        """Shape of one data point."""
        return self.bijection.event_shape

    @property
    def context_shape(self) -> Shape | None:
        """Shape of one context, or ``None`` for an unconditional flow."""
        return self.bijection.context_shape

    def _reference(self) -> Tensor:
        return next(itertools.chain(self.parameters(), self.buffers()))

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point type of the flow's parameters."""
        return self._reference().dtype

    @property
    def device(self) -> torch.device:
        """The device of the flow's parameters."""
        return self._reference().device

    # -- checked public entry points -------------------------------------------------------------------------

    def check_data(
        self,
        x: Any,
        context: Any = None,
        name: str = "x",
        context_name: str = "context",
        allow_empty: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Validate data (and its context) and convert them to the flow's dtype and device; errors use the names."""
        ref = self._reference()
        x = as_points(x, name, self.event_shape, ref.dtype, ref.device, allow_empty)
        batch = x.shape[: x.dim() - len(self.event_shape)]
        context = as_context(context, self.context_shape, batch, ref.dtype, ref.device, context_name)
        return x, context

    def log_prob(self, x: Any, context: Any = None) -> Tensor:
        """Log-density of ``x`` of shape ``(*batch, *event_shape)``; returns ``(*batch,)``.

        ``x`` may be a tensor or a NumPy array; it is converted to the flow's dtype and device. A ``context`` of
        shape ``(*batch, *context_shape)`` is required for a conditional flow; its batch dimensions broadcast.
        """
        x, context = self.check_data(x, context)
        return self.unchecked_log_prob(x, context)

    def forward(self, x: Any, context: Any = None) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x, context)

    def sample(self, n: int | Sequence[int], context: Any = None) -> Tensor:
        """Draw samples without building an autograd graph.

        Returns shape ``(*n, *context_batch, *event_shape)``: ``n`` samples for one context (or none), and ``n``
        samples per context for a batch of contexts of shape ``(*context_batch, *context_shape)``.
        """
        with torch.no_grad():
            return self.rsample(n, context)

    def rsample(self, n: int | Sequence[int], context: Any = None) -> Tensor:
        """Like :meth:`sample` but differentiable with respect to the flow's parameters."""
        return self.rsample_and_log_prob(n, context)[0]

    def sample_and_log_prob(self, n: int | Sequence[int], context: Any = None) -> tuple[Tensor, Tensor]:
        """Draw samples and their log-densities in one pass, without an autograd graph."""
        with torch.no_grad():
            return self.rsample_and_log_prob(n, context)

    def rsample_and_log_prob(self, n: int | Sequence[int], context: Any = None) -> tuple[Tensor, Tensor]:
        """Draw differentiable samples and their log-densities in one pass (reverse-KL fitting uses this)."""
        shape = as_sample_shape(n)
        ref = self._reference()
        context = as_context(context, self.context_shape, None, ref.dtype, ref.device)
        if context is not None:
            context_batch = context.shape[: context.dim() - len(self.context_shape)]
            shape = shape + context_batch
            context = context.expand(*shape, *self.context_shape)
        return self.unchecked_sample_and_log_prob(shape, context)

    # -- unchecked internals, for loops that validated their data once ---------------------------------------

    def unchecked_log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """:meth:`log_prob` without input checks: ``x`` must already be a finite tensor of the right shape."""
        x, log_det_standardization = self.standardization(x)
        z, log_det = self.bijection(x, context)
        return self.base.log_prob(z) + log_det + log_det_standardization

    def unchecked_sample_and_log_prob(self, shape: Shape, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``(*shape, *event_shape)`` points and their log-densities; ``context`` already expanded."""
        z = self.base.rsample(shape)
        log_base = self.base.log_prob(z)
        x, log_det = self.bijection.inverse(z, context)
        x, log_det_standardization = self.standardization.inverse(x)
        return x, log_base - log_det - log_det_standardization

    def fit(self, x: Any, context: Any = None, **options: Any) -> History:
        """Fit by maximum likelihood (forward KL); see :func:`torchnf.training.fit` for the options."""
        from .training import fit

        return fit(self, x, context, **options)

    def save(self, path: str | Path) -> None:
        """Write the flow to ``path`` (a JSON config and safetensors weights in one file); see :func:`torchnf.load`."""
        from .io import save

        save(self, path)
