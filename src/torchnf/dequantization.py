r"""Dequantization: continuous densities for discrete data such as images.

A flow has a density over continuous values, but pixels take :math:`K` discrete levels :math:`x \in \{0, \dots,
K - 1\}^D`. Dequantization adds noise :math:`u \in [0, 1)^D` and scales to the unit cube, :math:`y = (x + u) / K`,
so that the probability of :math:`x` under the flow's density :math:`p` on :math:`[0, 1)^D` is bounded below
(Theis et al. 2016, *A note on the evaluation of generative models*; Ho et al. 2019, *Flow++*, section 3.1):

.. math::

    \log P(x) = \log \int_{[0,1)^D} p\Big(\frac{x + u}{K}\Big) K^{-D}\, du
    \ \ge\ \mathbb{E}_{u \sim q(\cdot \mid x)}\big[\log p(y) - \log q_Y(y \mid x)\big],
    \qquad \log q_Y(y \mid x) = \log q(u \mid x) + D \log K,

with equality when :math:`q` is the flow's own conditional over the bin. Uniform dequantization takes :math:`q =
\mathcal U[0, 1)^D`; variational dequantization learns :math:`q(u \mid x)` as a conditional flow, trained jointly
on the same bound, which tightens it. With :math:`S` draws, the importance-weighted bound :math:`\log \frac1S
\sum_s p(y_s) / q_Y(y_s \mid x)` is tighter still (Burda et al. 2016, *Importance weighted autoencoders*).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from .bijections import Compose, Coupling, ImageCoupling, Logit
from .bijections.base import Bijection, Shape, ShapeLike, as_shape
from .configurable import Configurable

__all__ = ["Dequantization", "UniformDequantization", "VariationalDequantization"]


class Dequantization(Configurable, nn.Module):
    """Maps discrete data to the unit cube with noise, returning the noise's log-density.

    Subclasses implement :meth:`forward`; they are registered by name and record their constructor arguments, so a
    saved flow rebuilds its dequantization from its config.

    Args:
        event_shape: shape of one data point.
        levels: the number of levels :math:`K`; data values are the integers :math:`0, \\dots, K - 1`.
    """

    registry: ClassVar[dict[str, type]] = {}
    event_shape: Shape

    def __init__(self, event_shape: ShapeLike, levels: int) -> None:
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an int of at least 2, got {levels!r}")
        self.event_shape = as_shape(event_shape)
        self.levels = levels

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Draw ``y = (x + u) / K`` for levels ``x`` of shape ``(*batch, *event_shape)``; return ``y`` and
        :math:`\\log q_Y(y \\mid x)` of shape ``(*batch,)``."""
        raise NotImplementedError

    def check(self, x: Tensor, name: str = "x") -> None:
        """Refuse data that are not integer levels in ``[0, K - 1]``, naming ``name`` and an offending value."""
        bad = (x != x.round()) | (x < 0) | (x > self.levels - 1)
        if bool(bad.any()):
            value = float(x[bad][0])
            raise ValueError(
                f"{name} must hold integer levels 0, 1, ..., {self.levels - 1} for this dequantized flow; it holds "
                f"{value!r} (first of {int(bad.sum())} such values); pass the raw discrete data (e.g. pixel values)"
            )

    def center(self, x: Tensor) -> Tensor:
        """The centers ``(x + 1/2) / K`` of the bins of levels ``x``: a deterministic point in each bin."""
        return (x + 0.5) / self.levels

    def quantize(self, y: Tensor) -> Tensor:
        """The levels ``floor(K y)`` of unit-cube points ``y``, clamped to ``[0, K - 1]``."""
        return torch.floor(y * self.levels).clamp(0, self.levels - 1)

    def _to_unit_cube(self, x: Tensor, u: Tensor) -> Tensor:
        """``(x + u) / K``, kept below the bin's upper edge ``(x + 1) / K``: for ``x >= 2``, ``x + u`` rounds to
        ``x + 1`` when ``u`` is within a rounding error of 1, which would put ``y`` on the next bin's edge."""
        upper = (x + 1) / self.levels
        return torch.minimum((x + u) / self.levels, torch.nextafter(upper, torch.zeros_like(upper)))

    def _log_scale(self) -> float:
        """:math:`D \\log K`, the log-density of the scaling from level units to the unit cube."""
        return self.event_shape.numel() * math.log(self.levels)

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, levels={self.levels}"


class UniformDequantization(Dequantization):
    r"""Uniform noise :math:`u \sim \mathcal U[0, 1)^D` (Uria et al. 2013, *RNADE*; Theis et al. 2016), so
    :math:`\log q_Y(y \mid x) = D \log K`.

    Args:
        event_shape: shape of one data point.
        levels: the number of levels :math:`K`.

    Example:
        >>> import torch
        >>> dequantize = UniformDequantization(3, levels=4)
        >>> y, log_q = dequantize(torch.tensor([[0.0, 1.0, 3.0]]))
        >>> bool(((y >= torch.tensor([0.0, 0.25, 0.75])) & (y < torch.tensor([0.25, 0.5, 1.0]))).all())
        True
        >>> round(float(log_q), 4) == round(3 * math.log(4), 4)
        True
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u = torch.rand_like(x)
        batch = x.shape[: x.dim() - len(self.event_shape)]
        return self._to_unit_cube(x, u), x.new_full(batch, self._log_scale())


class VariationalDequantization(Dequantization):
    r"""Learned noise :math:`u \sim q(u \mid x)` (Ho et al. 2019, *Flow++: Improving flow-based generative models
    with variational dequantization and architecture design*, section 3.1).

    :math:`q` is a conditional flow on :math:`(0, 1)^D`: :math:`u = \sigma(g^{-1}(\epsilon; x))`,
    :math:`\epsilon \sim \mathcal N(0, I)`, where :math:`g` is a stack of coupling layers conditioned on the data
    (scaled to :math:`[-1/2, 1/2]`), convolutional for images ``(C, H, W)`` and fully connected otherwise, and the
    sigmoid is the inverse of a :class:`~torchnf.bijections.Logit`. Its zero-initialized couplings start at
    :math:`u = \sigma(\epsilon)`; training on the dequantization bound moves :math:`q` towards the flow's own
    distribution within each bin.

    Args:
        event_shape: shape of one data point.
        levels: the number of levels :math:`K`.
        layers: coupling layers of :math:`g`.
        hidden: hidden channels (images) or hidden width (vectors) of the coupling networks.
        blocks: residual blocks of each convolutional network (images only).

    The defaults are small: on the 8×8 digits, 4 layers of 32 channels cost a third more per step and gained nothing
    (``benchmarks/digits_images.py``).
    """

    def __init__(self, event_shape: ShapeLike, levels: int, layers: int = 2, hidden: int = 16, blocks: int = 1) -> None:
        super().__init__(event_shape, levels)
        if layers < 1 or hidden < 1:
            raise ValueError(f"VariationalDequantization needs layers >= 1 and hidden >= 1, got {layers}, {hidden}")
        from .flow import Flow  # the noise model is itself a flow; flow.py imports this module's names lazily

        shape = self.event_shape
        parts: list[Bijection] = [Logit(shape, alpha=0.0)]
        for i in range(layers):
            if len(shape) == 3:
                mask = "checkerboard" if shape[0] == 1 or i % 4 < 2 else "channel"
                parts.append(ImageCoupling(shape, None, mask, i % 2 == 1, shape, hidden, blocks))
            elif len(shape) == 1 and shape[0] >= 2:
                parts.append(Coupling(shape, None, "alternate", i % 2 == 1, shape, (hidden, hidden)))
            else:
                raise ValueError(
                    f"VariationalDequantization models vectors of at least 2 values or images (C, H, W); got "
                    f"event_shape {tuple(shape)}"
                )
        self.noise = Flow(Compose(parts))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        batch = x.shape[: x.dim() - len(self.event_shape)]
        context = x / (self.levels - 1) - 0.5
        u, log_q = self.noise.unchecked_sample_and_log_prob(batch, context)
        return self._to_unit_cube(x, u), log_q + self._log_scale()
