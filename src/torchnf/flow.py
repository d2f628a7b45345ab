r"""The flow: a base distribution pushed through a bijection.

With :math:`f` mapping data to latent and base density :math:`p_Z`,

.. math::

    \log p(x \mid c) = \log p_Z\big(f(x; c)\big) + \log\big|\det J_f(x; c)\big|, \qquad
    x = f^{-1}(z; c),\ z \sim p_Z,

where :math:`f = g \circ s` is the bijection :math:`g` after a fixed data standardization :math:`s`
(the identity until :meth:`Flow.fit` sets it from the training data). A conditional flow's bijection, and its base
distribution when that is conditional too, take the context :math:`c`, or its summary :math:`e(c)` by a
:mod:`~torchnf.embeddings` network trained with the flow. A flow over discrete data (images) also has a
:mod:`~torchnf.dequantization`, which maps the data to the unit cube with noise; its ``log_prob`` is then the
dequantization lower bound on the log-probability of the discrete data, and its samples are discrete.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ._validation import as_context, as_points, as_sample_shape, as_tensor
from .bijections.base import Bijection, Shape
from .bijections.normalization import Standardization
from .dequantization import Dequantization
from .distributions import BaseDistribution, StandardNormal
from .embeddings import ContextEmbedding

if TYPE_CHECKING:
    from .flow_distribution import FlowDistribution
    from .optimization import History

__all__ = ["Flow"]


class Flow(nn.Module):
    r"""A normalizing flow: a distribution that can be sampled and evaluated exactly.

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
        dequantization: for discrete data (integer levels such as pixel values), the
            :class:`~torchnf.dequantization.Dequantization` that maps them into the unit cube, where the bijection
            acts: ``log_prob`` and ``fit`` then take the discrete data, ``log_prob`` returns the dequantization
            lower bound on :math:`\log P(x)` (a Monte Carlo estimate that differs between calls), and
            ``sample`` returns discrete data.
        embedding: a :class:`~torchnf.embeddings.ContextEmbedding` that maps the raw context to the features the
            bijection (and a conditional base) take, trained with the flow; :attr:`context_shape` is then the
            embedding's input shape.

    A flow is conditional when its bijection or its base distribution is (or both, with one context shape).

    Example:
        >>> import torch
        >>> from torchnf import Flow, RealNVP
        >>> flow = Flow(RealNVP(2))
        >>> flow.log_prob(torch.zeros(5, 2)).shape
        torch.Size([5])
        >>> flow.sample(3).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        bijection: Bijection,
        base: BaseDistribution | None = None,
        dequantization: Dequantization | None = None,
        *,
        embedding: ContextEmbedding | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(bijection, Bijection):
            raise TypeError(f"Flow needs a Bijection, got {type(bijection).__name__}")
        base = StandardNormal(bijection.latent_shape) if base is None else base
        if not isinstance(base, BaseDistribution):
            raise TypeError(f"base must be a BaseDistribution, got {type(base).__name__}")
        if base.event_shape != bijection.latent_shape:
            raise ValueError(
                f"the base distribution's event_shape {tuple(base.event_shape)} differs from the bijection's "
                f"latent_shape {tuple(bijection.latent_shape)}"
            )
        if dequantization is not None:
            if not isinstance(dequantization, Dequantization):
                raise TypeError(f"dequantization must be a Dequantization, got {type(dequantization).__name__}")
            if dequantization.event_shape != bijection.event_shape:
                raise ValueError(
                    f"the dequantization's event_shape {tuple(dequantization.event_shape)} differs from the "
                    f"bijection's {tuple(bijection.event_shape)}"
                )
        self._features_shape = _conditioning_shape(bijection, base, embedding)
        self.standardization = Standardization(bijection.event_shape)
        self.bijection = bijection
        self.base = base
        self.dequantization = dequantization
        self.embedding = embedding
        self.history: History | None = None
        self.metadata: dict[str, Any] = {}
        self.eval()

    @property
    def event_shape(self) -> Shape:
        """Shape of one data point."""
        return self.bijection.event_shape

    @property
    def context_shape(self) -> Shape | None:
        """Shape of one context (the embedding's input when there is one), or ``None`` for an unconditional flow."""
        return self._features_shape if self.embedding is None else self.embedding.context_shape

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
        if self.dequantization is not None:
            x = as_tensor(x, name)
            if not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
                x = x.to(ref.dtype)  # discrete data may come as integers (uint8 pixels)
        x = as_points(x, name, self.event_shape, ref.dtype, ref.device, allow_empty)
        if self.dequantization is not None:
            self.dequantization.check(x, name)
        batch = x.shape[: x.dim() - len(self.event_shape)]
        context = as_context(context, self.context_shape, batch, ref.dtype, ref.device, context_name)
        return x, context

    def log_prob(self, x: Any, context: Any = None, *, samples: int = 1) -> Tensor:
        r"""Log-density of ``x`` of shape ``(*batch, *event_shape)``; returns ``(*batch,)``.

        ``x`` may be a tensor or a NumPy array; it is converted to the flow's dtype and device. A ``context`` of
        shape ``(*batch, *context_shape)`` is required for a conditional flow; its batch dimensions broadcast.

        For a flow with a :attr:`dequantization`, ``x`` holds discrete levels and the result is the dequantization
        lower bound on :math:`\log P(x)`, estimated with ``samples`` noise draws (the importance-weighted bound,
        tighter as ``samples`` grows).
        """
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive int, got {samples!r}")
        if samples > 1 and self.dequantization is None:
            raise ValueError("samples applies to a dequantized flow; this flow's log_prob is exact")
        x, context = self.check_data(x, context)
        if samples == 1:
            return self.unchecked_log_prob(x, context)
        draws = self.unchecked_log_prob(x.expand(samples, *x.shape), context)
        return torch.logsumexp(draws, 0) - math.log(samples)

    def forward(self, x: Any, context: Any = None) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x, context)

    def sample(self, n: int | Sequence[int], context: Any = None, *, temperature: float = 1.0) -> Tensor:
        """Draw samples without building an autograd graph.

        Returns shape ``(*n, *context_batch, *event_shape)``: ``n`` samples for one context (or none), and ``n``
        samples per context for a batch of contexts of shape ``(*context_batch, *context_shape)``. A
        ``temperature`` below 1 scales the base distribution's spread (Kingma and Dhariwal 2018, *Glow*, section
        5.3): less diverse, cleaner samples. A dequantized flow returns discrete levels.
        """
        with torch.no_grad():
            x, _ = self._draw(n, context, temperature)
        return x if self.dequantization is None else self.dequantization.quantize(x)

    def rsample(self, n: int | Sequence[int], context: Any = None, *, temperature: float = 1.0) -> Tensor:
        """Like :meth:`sample` but differentiable with respect to the flow's parameters."""
        return self.rsample_and_log_prob(n, context, temperature=temperature)[0]

    def sample_and_log_prob(
        self, n: int | Sequence[int], context: Any = None, *, temperature: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """Draw samples and their log-densities in one pass, without an autograd graph (for a dequantized flow:
        discrete samples and the bound of :meth:`log_prob`, which takes a second pass)."""
        with torch.no_grad():
            if self.dequantization is None:
                return self._draw(n, context, temperature)
            x, _ = self._draw(n, context, temperature)
            x = self.dequantization.quantize(x)
            if context is not None:
                context = self.check_data(x, context)[1]
            return x, self.unchecked_log_prob(x, context)

    def rsample_and_log_prob(
        self, n: int | Sequence[int], context: Any = None, *, temperature: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """Draw differentiable samples and their log-densities in one pass (reverse-KL fitting uses this)."""
        if self.dequantization is not None:
            raise ValueError("a dequantized flow's samples are discrete and have no gradient; use sample()")
        return self._draw(n, context, temperature)

    def _draw(self, n: int | Sequence[int], context: Any, temperature: float) -> tuple[Tensor, Tensor]:
        """Continuous samples and their log-densities, with checked arguments."""
        shape = as_sample_shape(n)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        ref = self._reference()
        context = as_context(context, self.context_shape, None, ref.dtype, ref.device)
        if context is not None:
            shape = shape + context.shape[: context.dim() - len(self.context_shape)]
        return self.unchecked_sample_and_log_prob(shape, context, float(temperature))

    def encode(self, x: Any, context: Any = None) -> Tensor:
        """The latent point :math:`z = f(x)` of data ``x``: ``(*batch, *event_shape) -> (*batch, *latent_shape)``.

        A dequantized flow encodes discrete levels at the centers of their bins. With :meth:`decode`, it moves
        data through the latent space (see :func:`torchnf.images.interpolate`).
        """
        x, context = self.check_data(x, context)
        if self.dequantization is not None:
            x = self.dequantization.center(x)
        return self.bijection(self.standardization(x)[0], self._bijection_context(self.embed(context)))[0]

    def decode(self, z: Any, context: Any = None) -> Tensor:
        """The data point :math:`x = f^{-1}(z)` of latent points ``z`` of shape ``(*batch, *latent_shape)``
        (discrete levels for a dequantized flow)."""
        ref = self._reference()
        z = as_points(z, "z", self.bijection.latent_shape, ref.dtype, ref.device)
        batch = z.shape[: z.dim() - len(self.bijection.latent_shape)]
        features = self.embed(as_context(context, self.context_shape, batch, ref.dtype, ref.device))
        x = self.standardization.inverse(self.bijection.inverse(z, self._bijection_context(features))[0])[0]
        return x if self.dequantization is None else self.dequantization.quantize(x)

    # -- unchecked internals, for loops that validated their data once ---------------------------------------

    def embed(self, context: Tensor | None) -> Tensor | None:
        """The features the bijection and a conditional base take: the embedding of ``context`` (unchecked), or the
        context itself for a flow without an embedding."""
        return context if self.embedding is None or context is None else self.embedding(context)

    def _bijection_context(self, features: Tensor | None) -> Tensor | None:
        return None if self.bijection.context_shape is None else features

    def _base_context(self, features: Tensor | None) -> Tensor | None:
        return None if self.base.context_shape is None else features

    def unchecked_log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """:meth:`log_prob` without input checks: ``x`` must already be a finite tensor of the right shape (and of
        discrete levels, for a dequantized flow: the result is then the one-draw bound)."""
        if self.dequantization is None:
            return self.continuous_log_prob(x, context)
        y, log_q = self.dequantization(x)
        return self.continuous_log_prob(y, context) - log_q

    def continuous_log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The density of the bijection's data space, unchecked: that of a dequantized flow is over the unit
        cube, in which its continuous samples lie."""
        features = self.embed(context)
        x, log_det_standardization = self.standardization(x)
        z, log_det = self.bijection(x, self._bijection_context(features))
        return self.base.log_prob(z, self._base_context(features)) + log_det + log_det_standardization

    def unchecked_sample_and_log_prob(
        self, shape: Shape, context: Tensor | None = None, temperature: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """Draw ``(*shape, *event_shape)`` continuous points and their log-densities (of
        :meth:`continuous_log_prob`); the batch shape of ``context`` broadcasts to ``shape`` (it is embedded once,
        then expanded)."""
        features = self.embed(context)
        if features is not None:
            features = features.expand(*shape, *self._features_shape)
        base_context = self._base_context(features)
        z = self.base.rsample(shape, temperature, base_context)
        log_base = self.base.log_prob(z, base_context)
        x, log_det = self.bijection.inverse(z, self._bijection_context(features))
        x, log_det_standardization = self.standardization.inverse(x)
        return x, log_base - log_det - log_det_standardization

    def as_distribution(self, context: Any = None) -> FlowDistribution:
        """This flow as a :class:`torch.distributions.Distribution` (and a Pyro distribution when Pyro is installed)
        for one context, a batch of contexts (its ``batch_shape``) or none; see
        :class:`~torchnf.flow_distribution.FlowDistribution`."""
        from .flow_distribution import as_distribution

        return as_distribution(self, context)

    def fit(self, x: Any, context: Any = None, **options: Any) -> History:
        """Fit by maximum likelihood (forward KL); see :func:`torchnf.training.fit` for the options."""
        from .training import fit

        return fit(self, x, context, **options)

    def save(self, path: str | Path) -> None:
        """Write the flow to ``path`` (a JSON config and safetensors weights in one file); see :func:`torchnf.load`."""
        from .io import save

        save(self, path)

    def fit_variational(self, log_target: Callable[[Tensor], Tensor], **options: Any) -> History:
        """Fit to an unnormalized density by reverse KL (maximizing the ELBO); see
        :func:`torchnf.variational.fit_variational` for the options."""
        from .variational import fit_variational

        return fit_variational(self, log_target, **options)


def _conditioning_shape(
    bijection: Bijection, base: BaseDistribution, embedding: ContextEmbedding | None
) -> Shape | None:
    """The context shape that the bijection and the base take (one shape, or ``None``), checked against the
    embedding's output."""
    shapes = {"bijection": bijection.context_shape, "base distribution": base.context_shape}
    given = {k: v for k, v in shapes.items() if v is not None}
    if len(set(given.values())) > 1:
        raise ValueError(
            "the bijection and the base distribution take different context shapes: "
            + ", ".join(f"{k} {tuple(v)}" for k, v in given.items())
        )
    features = next(iter(given.values()), None)
    if embedding is None:
        return features
    if not isinstance(embedding, ContextEmbedding):
        raise TypeError(f"embedding must be a ContextEmbedding, got {type(embedding).__name__}")
    if features is None:
        raise ValueError("an embedding needs a conditional bijection or base distribution; both are unconditional")
    if embedding.output_shape != features:
        raise ValueError(
            f"the embedding's output_shape {tuple(embedding.output_shape)} differs from the context shape "
            f"{tuple(features)} that the flow's bijection and base take"
        )
    return features
