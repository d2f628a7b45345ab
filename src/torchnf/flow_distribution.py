r"""A flow as a :class:`torch.distributions.Distribution`, usable wherever PyTorch or Pyro takes a distribution.

For a flow with density :math:`p(x \mid c)` and a batch of contexts :math:`c_1, \dots, c_B`,
:class:`FlowDistribution` is the batch of :math:`B` distributions :math:`p(\cdot \mid c_b)`: its ``batch_shape`` is the
contexts' batch shape (``()`` for one context or none) and its ``event_shape`` is the flow's. ``log_prob`` is the
flow's exact log-density, ``rsample`` its reparameterized sampler (gradients reach the flow's parameters), and
``expand`` broadcasts the batch, as Pyro's plates need.

When `Pyro <https://pyro.ai>`_ is installed the object is also a Pyro distribution (it mixes in Pyro's
``TorchDistributionMixin``), so ``pyro.sample("theta", flow.as_distribution())`` works in a model (a learned prior)
and in a guide (a flow posterior for stochastic variational inference: Rezende and Mohamed 2015, *Variational
inference with normalizing flows*, ICML); register the flow's parameters with ``pyro.module("flow", flow)``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from ._validation import as_context

if TYPE_CHECKING:
    from .flow import Flow

__all__ = ["FlowDistribution", "as_distribution"]


class FlowDistribution(Distribution):
    r"""The distribution :math:`p(x \mid c)` of a :class:`~torchnf.Flow`, with batch shape the contexts' batch shape.

    Build it with :meth:`torchnf.Flow.as_distribution` (which checks the context). ``sample(sample_shape)`` and
    ``rsample`` return ``(*sample_shape, *batch_shape, *event_shape)``; ``log_prob(value)`` takes values of shape
    ``(*sample_shape, *batch_shape, *event_shape)`` (the batch dimensions broadcast) and returns
    ``(*sample_shape, *batch_shape)``.

    Args:
        flow: the flow.
        context: a checked context of shape ``(*batch_shape, *flow.context_shape)``, or ``None``.
        batch_shape: the batch shape, when :meth:`expand` made it larger than the context's.
        validate_args: check values passed to ``log_prob`` against the support (PyTorch's convention).

    Example:
        >>> import torch
        >>> from torchnf import Flow, RealNVP
        >>> flow = Flow(RealNVP(2, context_shape=3))
        >>> distribution = flow.as_distribution(context=torch.randn(4, 3))  # four contexts
        >>> distribution.batch_shape, distribution.event_shape
        (torch.Size([4]), torch.Size([2]))
        >>> x = distribution.sample((10,))
        >>> x.shape, distribution.log_prob(x).shape
        (torch.Size([10, 4, 2]), torch.Size([10, 4]))
    """

    arg_constraints: dict[str, constraints.Constraint] = {}  # noqa: RUF012 (PyTorch's class attribute)
    has_rsample = True

    def __init__(
        self,
        flow: Flow,
        context: Tensor | None = None,
        batch_shape: torch.Size | None = None,
        validate_args: bool | None = None,
    ) -> None:
        self.flow, self.context = flow, context
        context_batch = torch.Size() if context is None else context.shape[: context.dim() - len(flow.context_shape)]
        batch_shape = context_batch if batch_shape is None else torch.Size(batch_shape)
        try:
            fits = torch.broadcast_shapes(context_batch, batch_shape) == batch_shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"cannot expand a batch of contexts {tuple(context_batch)} to {tuple(batch_shape)}")
        # batch dimensions that the context does not cover are drawn as extra sample dimensions
        self._extra = batch_shape[: len(batch_shape) - len(context_batch)]
        if context is not None:
            self.context = context.expand(*batch_shape[len(self._extra) :], *flow.context_shape)
        super().__init__(batch_shape, flow.event_shape, validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:
        """The real vectors, or the open box of a bijection with a bounded :attr:`~torchnf.Bijection.domain`."""
        domain = self.flow.bijection.domain
        base = constraints.real if domain is None else constraints.open_interval(*domain)
        return constraints.independent(base, len(self.event_shape))

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        return self.flow.rsample((*sample_shape, *self._extra), self.context)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        return self.flow.sample((*sample_shape, *self._extra), self.context)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self.flow.log_prob(value, self.context)

    def expand(self, batch_shape: torch.Size | tuple[int, ...], _instance: Any = None) -> FlowDistribution:
        return type(self)(self.flow, self.context, torch.Size(batch_shape), validate_args=self._validate_args)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self.flow.bijection).__name__}, batch_shape={tuple(self.batch_shape)}, "
            f"event_shape={tuple(self.event_shape)})"
        )


@functools.cache
def _distribution_class() -> type[FlowDistribution]:
    """:class:`FlowDistribution`, with Pyro's ``TorchDistributionMixin`` mixed in when Pyro is installed."""
    try:
        from pyro.distributions.torch_distribution import TorchDistributionMixin
    except ImportError:
        return FlowDistribution

    class PyroFlowDistribution(FlowDistribution, TorchDistributionMixin):
        """A :class:`FlowDistribution` that is also a Pyro distribution."""

    return PyroFlowDistribution


def as_distribution(flow: Flow, context: Any = None, validate_args: bool | None = None) -> FlowDistribution:
    """``flow`` as a :class:`FlowDistribution` (a Pyro distribution too when Pyro is installed), for one context,
    a batch of contexts of shape ``(*batch_shape, *context_shape)``, or none."""
    if flow.dequantization is not None:
        raise ValueError(
            "a dequantized flow's log_prob is a stochastic lower bound on discrete data, not a density; "
            "as_distribution takes flows with an exact log_prob"
        )
    context = as_context(context, flow.context_shape, None, flow.dtype, flow.device)
    return _distribution_class()(flow, context, validate_args=validate_args)
