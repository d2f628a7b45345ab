r"""Context embeddings: networks that summarize a raw context before a conditional flow sees it.

A conditional flow with an embedding :math:`e_\psi` models

.. math::

    \log p(x \mid c) = \log p_Z\big(f(x; h) \,\big|\, h\big) + \log\big|\det J_f(x; h)\big|, \qquad h = e_\psi(c),

so every layer (and a conditional base distribution) conditions on the learned summary :math:`h` instead of the raw
context, and :math:`\psi` is trained jointly with the flow by the same likelihood. This is how amortized posteriors
learn summary statistics of high-dimensional observations (Radev et al. 2022, *BayesFlow: learning complex
stochastic models with invertible neural networks*, IEEE TNNLS; Greenberg et al. 2019, *Automatic posterior
transformation for likelihood-free inference*, ICML). The embedding is computed once per call and broadcast: a batch
of ``m`` contexts sampled ``n`` times each costs ``m`` embedding evaluations, not ``n * m``.

Embeddings are :class:`~torchnf.configurable.Configurable` and registered by class name, so a flow with one saves
and loads like any other; a user's own subclass of :class:`ContextEmbedding` is registered when its class is defined
(import it before :func:`torchnf.load`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from torch import Tensor, nn

from .architectures.base import activation_factory
from .bijections.base import Shape, ShapeLike, as_shape
from .configurable import Configurable
from .nn import MLP

__all__ = ["ContextEmbedding", "DeepSetEmbedding", "MLPEmbedding"]


def _check_features(features: int) -> int:
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
        raise ValueError(f"features must be a positive int, got {features!r}")
    return features


class ContextEmbedding(Configurable, nn.Module):
    """A network :math:`e_\\psi` from contexts ``(*batch, *context_shape)`` to features ``(*batch, *output_shape)``.

    Subclasses set :attr:`context_shape` (the raw context a user passes to the flow) and :attr:`output_shape` (the
    shape the flow's bijection and base distribution take as their context) and implement :meth:`forward`.
    """

    registry: ClassVar[dict[str, type]] = {}
    context_shape: Shape
    output_shape: Shape

    def __init__(self, context_shape: ShapeLike, output_shape: ShapeLike) -> None:
        super().__init__()
        self.context_shape, self.output_shape = as_shape(context_shape), as_shape(output_shape)

    def forward(self, context: Tensor) -> Tensor:
        """Features ``(*batch, *output_shape)`` of contexts ``(*batch, *context_shape)``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"context_shape={tuple(self.context_shape)}, output_shape={tuple(self.output_shape)}"


class MLPEmbedding(ContextEmbedding):
    r"""A fully connected network of the flattened context: :math:`h = \mathrm{MLP}_\psi(\operatorname{vec} c)`.

    Args:
        context_shape: shape of one raw context (any shape: it is flattened).
        features: the length of the summary :math:`h`.
        hidden: widths of the hidden layers.
        activation: the nonlinearity's name (``"relu"``, ``"elu"``, ``"gelu"``, ``"silu"``, ``"tanh"``, ...).

    Example:
        >>> import torch
        >>> from torchnf import Flow, RealNVP
        >>> from torchnf.embeddings import MLPEmbedding
        >>> flow = Flow(RealNVP(2, context_shape=4), embedding=MLPEmbedding((10, 3), features=4))
        >>> flow.context_shape  # the raw context the flow takes
        torch.Size([10, 3])
        >>> flow.sample(5, context=torch.randn(10, 3)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        context_shape: ShapeLike,
        features: int = 16,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
    ) -> None:
        super().__init__(context_shape, (_check_features(features),))
        self.net = MLP(
            self.context_shape.numel(), features, tuple(hidden), activation_factory(activation), False, False
        )

    def forward(self, context: Tensor) -> Tensor:
        return self.net(context.flatten(context.dim() - len(self.context_shape)))


class DeepSetEmbedding(ContextEmbedding):
    r"""A permutation-invariant summary of a set of :math:`m` exchangeable observations
    :math:`c = (c_1, \dots, c_m)` (Zaheer et al. 2017, *Deep sets*, NeurIPS):

    .. math:: h = \rho_\psi\Big(\frac1m \sum_{j=1}^m \phi_\psi(c_j)\Big),

    the usual embedding of i.i.d. trials in simulation-based inference: the summary, and so the flow's density,
    does not depend on the order of the observations.

    Args:
        context_shape: ``(m, d)``: ``m`` observations of ``d`` values each.
        features: the length of the summary :math:`h`.
        hidden: widths of the hidden layers of :math:`\phi` and of :math:`\rho`.
        pooled: the width of :math:`\phi`'s output, which is averaged over the set.
        activation: the nonlinearity's name.

    Example:
        >>> import torch
        >>> embedding = DeepSetEmbedding((20, 2), features=8)
        >>> c = torch.randn(5, 20, 2)
        >>> torch.allclose(embedding(c), embedding(c.flip(1)), atol=1e-6)  # the order of the set does not matter
        True
    """

    def __init__(
        self,
        context_shape: ShapeLike,
        features: int = 16,
        hidden: Sequence[int] = (64, 64),
        pooled: int = 64,
        activation: str = "relu",
    ) -> None:
        shape = as_shape(context_shape)
        if len(shape) != 2:
            raise ValueError(f"DeepSetEmbedding takes sets of vectors, context_shape (m, d); got {tuple(shape)}")
        super().__init__(shape, (_check_features(features),))
        act = activation_factory(activation)
        self.element = MLP(shape[1], _check_features(pooled), tuple(hidden), act, False, False)
        self.set = MLP(pooled, features, tuple(hidden), act, False, False)

    def forward(self, context: Tensor) -> Tensor:
        return self.set(self.element(context).mean(-2))
