r"""The bijection contract, composition and inversion.

A bijection :math:`f` maps data :math:`x` to latent :math:`z = f(x)`. Every call returns the output together
with the log-absolute-determinant of the Jacobian of the map that was applied:

.. math::

    \texttt{forward}(x) = (f(x),\ \log|\det J_f(x)|), \qquad
    \texttt{inverse}(z) = (f^{-1}(z),\ \log|\det J_{f^{-1}}(z)|) = (x,\ -\log|\det J_f(x)|).

Inputs have shape ``(*batch, *event_shape)``; log-determinants have shape ``(*batch,)``. A bijection may be
conditioned on a context of shape ``(*batch, *context_shape)``, whose batch dimensions broadcast against the
input's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor, nn

Shape = torch.Size
ShapeLike = int | Sequence[int] | torch.Size

__all__ = ["Bijection", "Compose", "Invert", "Shape", "ShapeLike", "as_shape", "setting"]


def as_shape(shape: ShapeLike) -> torch.Size:
    """Normalize an int or a sequence of ints to a :class:`torch.Size`, refusing non-positive sizes."""
    size = torch.Size([shape]) if isinstance(shape, int) else torch.Size(shape)
    if any((not isinstance(s, int)) or s <= 0 for s in size):
        raise ValueError(f"a shape must be a positive int or a sequence of positive ints, got {shape!r}")
    return size


class Bijection(nn.Module):
    """An invertible, differentiable map with a tractable log-determinant.

    Subclasses implement :meth:`forward` (data to latent) and :meth:`inverse` (latent to data); both return
    ``(output, log_det)``. ``event_shape`` is the shape of one data point, ``latent_shape`` the shape of its
    image (equal unless the bijection reshapes), ``context_shape`` the shape of one context or ``None`` for
    an unconditional map.

    Args:
        event_shape: shape of one input point (an int means a vector of that length).
        context_shape: shape of one context, or ``None`` when the map takes no context.
        latent_shape: shape of one output point, by default ``event_shape``.
    """

    event_shape: Shape
    latent_shape: Shape
    context_shape: Shape | None
    regularization: Tensor | None = None
    """A penalty (a scalar tensor) that the last training-mode call asks to add to the training loss, or ``None``;
    :func:`torchnf.training.fit` adds and clears it after every step (FFJORD's RNODE terms use it)."""

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        latent_shape: ShapeLike | None = None,
    ) -> None:
        super().__init__()
        self.event_shape = as_shape(event_shape)
        self.latent_shape = self.event_shape if latent_shape is None else as_shape(latent_shape)
        self.context_shape = None if context_shape is None else as_shape(context_shape)

    @property
    def domain(self) -> tuple[float, float] | None:
        """The open interval ``(low, high)`` that every input coordinate must lie in, or ``None`` for all reals.

        Outside its domain a bijection returns a finite output and a log-det of ``-inf`` (the density there is
        zero); :meth:`torchnf.Flow.fit` refuses training data outside it.
        """
        return None

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Map data ``x`` to latent ``z``; return ``(z, log|det dz/dx|)``."""
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Map latent ``z`` to data ``x``; return ``(x, log|det dx/dz|)``."""
        raise NotImplementedError

    def batch_shape(self, x: Tensor) -> Shape:
        """The leading batch dimensions of an input ``x`` of shape ``(*batch, *event_shape)``."""
        return x.shape[: x.dim() - len(self.event_shape)]

    def expand_context(self, context: Tensor | None, batch_shape: Shape) -> Tensor | None:
        """Broadcast ``context`` to ``(*batch_shape, *context_shape)`` (``None`` stays ``None``)."""
        if context is None or self.context_shape is None:
            return None
        return context.expand(*batch_shape, *self.context_shape)

    def extra_repr(self) -> str:
        text = f"event_shape={tuple(self.event_shape)}"
        if self.latent_shape != self.event_shape:
            text += f", latent_shape={tuple(self.latent_shape)}"
        if self.context_shape is not None:
            text += f", context_shape={tuple(self.context_shape)}"
        return text


class Compose(Bijection):
    r"""The composition :math:`f = f_n \circ \dots \circ f_1`; log-determinants add.

    ``forward`` applies the parts in order (data to latent), ``inverse`` in reverse order. Every part receives
    the same context; parts whose ``context_shape`` is ``None`` ignore it.

    Args:
        bijections: the parts, in the data-to-latent order; each part's ``latent_shape`` must equal the next
            part's ``event_shape``. No parts make the identity, whose ``event_shape`` must then be given.
        event_shape: the shape of one input point; required without parts, checked against the first part.
    """

    def __init__(self, bijections: Iterable[Bijection], event_shape: ShapeLike | None = None) -> None:
        parts = list(bijections)
        if not parts:
            if event_shape is None:
                raise ValueError("Compose needs at least one bijection, or an event_shape for the identity")
            super().__init__(event_shape)
            self.bijections = nn.ModuleList()
            return
        if event_shape is not None and as_shape(event_shape) != parts[0].event_shape:
            raise ValueError(
                f"Compose was given event_shape {tuple(as_shape(event_shape))} but its first part expects "
                f"{tuple(parts[0].event_shape)}"
            )
        for i, part in enumerate(parts):
            if not isinstance(part, Bijection):
                raise TypeError(f"Compose part {i} is a {type(part).__name__}, not a Bijection")
        for i, (a, b) in enumerate(pairwise(parts)):
            if a.latent_shape != b.event_shape:
                raise ValueError(
                    f"Compose part {i} outputs shape {tuple(a.latent_shape)} but part {i + 1} expects "
                    f"{tuple(b.event_shape)}"
                )
        context_shapes = {p.context_shape for p in parts if p.context_shape is not None}
        if len(context_shapes) > 1:
            raise ValueError(f"Compose parts disagree on context_shape: {sorted(map(tuple, context_shapes))}")
        context_shape = context_shapes.pop() if context_shapes else None
        super().__init__(parts[0].event_shape, context_shape, parts[-1].latent_shape)
        self.bijections = nn.ModuleList(parts)

    @property
    def domain(self) -> tuple[float, float] | None:
        """The first part's domain (the data enter there)."""
        return self.bijections[0].domain if len(self.bijections) else None

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(self.batch_shape(x))
        for part in self.bijections:
            x, log_det = part(x, context)
            total = total + log_det
        return x, total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = z.new_zeros(z.shape[: z.dim() - len(self.latent_shape)])
        for part in reversed(self.bijections):
            z, log_det = part.inverse(z, context)
            total = total + log_det
        return z, total

    def __len__(self) -> int:
        return len(self.bijections)

    def __getitem__(self, index: int) -> Bijection:
        return self.bijections[index]


class Invert(Bijection):
    """The inverse map :math:`f^{-1}`: ``forward`` and ``inverse`` of the wrapped bijection swap.

    Use it to choose which direction is cheap: ``Invert(MaskedAutoregressive(...))`` is an inverse
    autoregressive flow (Kingma et al. 2016, *Improved variational inference with inverse autoregressive flow*)
    with one-pass sampling and a density that takes one pass per dimension.

    Args:
        bijection: the map to invert.
    """

    def __init__(self, bijection: Bijection) -> None:
        if not isinstance(bijection, Bijection):
            raise TypeError(f"Invert expects a Bijection, got {type(bijection).__name__}")
        super().__init__(bijection.latent_shape, bijection.context_shape, bijection.event_shape)
        self.bijection = bijection

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.bijection.inverse(x, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.bijection(z, context)


@contextmanager
def setting(module: nn.Module, kind: type[nn.Module], attribute: str, value: Any) -> Iterator[None]:
    """Within the ``with`` block, ``attribute`` is ``value`` on every ``kind`` module inside ``module`` (the
    estimator switches of residual and continuous flows use it); the previous values are restored after."""
    layers = [m for m in module.modules() if isinstance(m, kind)]
    saved = [getattr(layer, attribute) for layer in layers]
    try:
        for layer in layers:
            setattr(layer, attribute, value)
        yield
    finally:
        for layer, previous in zip(layers, saved, strict=True):
            setattr(layer, attribute, previous)
