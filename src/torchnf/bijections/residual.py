r"""Invertible residual blocks (Behrmann et al. 2019, *Invertible residual networks*; Chen et al. 2019,
*Residual flows for invertible generative modeling*).

A block maps data to latent by

.. math::

    z = x + g(x; c), \qquad \operatorname{Lip}_x(g) < 1, \qquad \log|\det J| = \log\det(I + J_g(x)),

with :math:`g` a :class:`~torchnf.nn.lipschitz.LipschitzMLP`. The inverse has no closed form: it is the fixed
point of :math:`x \mapsto z - g(x)`, found by :func:`torchnf.roots.contractive_inverse`. The log-determinant is
exact (full Jacobian, for small dimensions), a truncated power series (i-ResNet) or the unbiased Russian-roulette
series (Residual Flows); see :mod:`torchnf.bijections.residual_log_det`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, get_args

from torch import Tensor, nn

from ..nn.lipschitz import LIPSCHITZ_ACTIVATIONS, LipschitzMLP
from ..roots import contractive_inverse
from .base import Bijection, ShapeLike, as_shape, setting
from .residual_log_det import Noise, exact_log_det, roulette_weights, series_weights, stochastic_log_det

__all__ = ["LogDetMethod", "ResidualTransform", "log_det_method"]

LogDetMethod = Literal["exact", "series", "roulette"]
GradientMethod = Literal["backprop", "neumann"]


def _choice(name: str, value: object, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, options))}")


class ResidualTransform(Bijection):
    r"""One invertible residual block :math:`z = x + g(x; c)` over vectors.

    The log-determinant :math:`\log\det(I + J_g)` is computed by ``log_det``:

    * ``"exact"``: from the full Jacobian (``D`` vector-Jacobian products per point); deterministic, for small
      ``D``. The universal test suite checks this mode.
    * ``"series"``: :math:`\sum_{k=1}^{n} \frac{(-1)^{k+1}}{k} v^\top J^k v`, ``n = series_terms``, one
      Hutchinson probe :math:`v` per point (i-ResNet); biased by the truncation.
    * ``"roulette"``: the same series with a random number of terms, at least ``exact_terms``, each further one
      kept with probability ``1 - roulette_probability`` and reweighted: unbiased (Residual Flows).

    The two stochastic estimates are random in evaluation mode too (``log_prob`` then returns an estimate);
    :func:`log_det_method` switches a model to exact log-determinants, e.g. for a final evaluation.

    Args:
        event_shape: the number of dimensions ``D`` (or ``(D,)``).
        context_shape: shape of a context, or ``None``.
        hidden: hidden widths of :math:`g`.
        activation: a 1-Lipschitz activation: ``"lipswish"``, ``"elu"`` or ``"tanh"``.
        lipschitz: the spectral-norm bound :math:`c < 1` of every layer of :math:`g`, so
            :math:`\operatorname{Lip}(g) \le c^{L}`; the fixed-point inverse converges at (at worst) this rate.
        log_det: ``"exact"``, ``"series"`` or ``"roulette"``.
        series_terms: the number of terms of ``"series"``.
        exact_terms: the terms ``"roulette"`` always computes.
        roulette_probability: the probability :math:`p` of stopping after each further term (mean number of
            further terms :math:`(1 - p) / p`).
        noise: the Hutchinson probes, ``"gaussian"`` or ``"rademacher"``.
        gradient: gradients of the stochastic estimates: ``"backprop"`` through all terms, or ``"neumann"``, the
            memory-saving Neumann-series estimator of Residual Flows (one differentiable product).
        power_iterations: power iterations refining each layer's spectral norm per training-mode call.
        tol: tolerance of the fixed-point inverse (default: that of :func:`torchnf.roots.default_tolerance`).
        max_iter: the most fixed-point iterations.

    Example:
        >>> import torch
        >>> from torchnf.bijections import ResidualTransform
        >>> block = ResidualTransform(3, hidden=(16,)).double()
        >>> x = torch.randn(4, 3, dtype=torch.float64)
        >>> z, log_det = block(x)
        >>> x_back, log_det_back = block.inverse(z)
        >>> torch.allclose(x_back, x), torch.allclose(log_det + log_det_back, torch.zeros(4, dtype=torch.float64))
        (True, True)
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        hidden: Sequence[int] = (128, 128),
        activation: str = "lipswish",
        lipschitz: float = 0.97,
        log_det: LogDetMethod = "exact",
        series_terms: int = 8,
        exact_terms: int = 2,
        roulette_probability: float = 0.5,
        noise: Noise = "gaussian",
        gradient: GradientMethod = "backprop",
        power_iterations: int = 1,
        tol: float | None = None,
        max_iter: int = 1000,
    ) -> None:
        shape = as_shape(event_shape)
        if len(shape) != 1:
            raise ValueError(f"ResidualTransform maps vectors; got event_shape {tuple(shape)}")
        super().__init__(shape, context_shape)
        _choice("activation", activation, tuple(LIPSCHITZ_ACTIVATIONS))
        _choice("log_det", log_det, get_args(LogDetMethod))
        _choice("noise", noise, get_args(Noise))
        _choice("gradient", gradient, get_args(GradientMethod))
        if not 0 < lipschitz < 1:
            raise ValueError(f"lipschitz must lie in (0, 1) for the block to be invertible, got {lipschitz}")
        if not 0 < roulette_probability < 1:
            raise ValueError(f"roulette_probability must lie in (0, 1), got {roulette_probability}")
        for name, value in [("series_terms", series_terms), ("exact_terms", exact_terms), ("max_iter", max_iter)]:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(power_iterations, int) or power_iterations < 0:
            raise ValueError(f"power_iterations must be a non-negative int, got {power_iterations!r}")
        self.log_det = log_det
        self.series_terms, self.exact_terms, self.roulette_probability = series_terms, exact_terms, roulette_probability
        self.noise, self.gradient = noise, gradient
        self.power_iterations, self.tol, self.max_iter = power_iterations, tol, max_iter
        context_features = 0 if self.context_shape is None else self.context_shape.numel()
        self.net = LipschitzMLP(shape[0], hidden, lipschitz, LIPSCHITZ_ACTIVATIONS[activation], context_features)

    def _flat_context(self, context: Tensor | None, batch: tuple[int, ...]) -> Tensor | None:
        if self.context_shape is None:
            return None
        if context is None:
            raise ValueError("this residual block was built with a context_shape and needs a context")
        return self.expand_context(context, batch).reshape(-1, self.context_shape.numel())

    def _residual_and_log_det(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        linearization = self.net.linearize(x, context)
        if self.log_det == "exact":
            return linearization.value, exact_log_det(linearization)
        if self.log_det == "series":
            weights = series_weights(self.series_terms)
        else:
            weights = roulette_weights(self.exact_terms, self.roulette_probability)
        log_det = stochastic_log_det(linearization, weights, self.noise, self.gradient == "neumann")
        return linearization.value, log_det

    def _refine_spectral_norms(self) -> None:
        if self.training and self.power_iterations:
            self.net.power_iteration(self.power_iterations)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        batch = self.batch_shape(x)
        flat_context = self._flat_context(context, batch)
        self._refine_spectral_norms()
        flat = x.reshape(-1, self.event_shape[0])
        residual, log_det = self._residual_and_log_det(flat, flat_context)
        return (flat + residual).reshape(x.shape), log_det.reshape(batch)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        batch = self.batch_shape(z)
        flat_context = self._flat_context(context, batch)
        self._refine_spectral_norms()
        flat = z.reshape(-1, self.event_shape[0])
        dense = (lambda x: self.net.linearize(x, flat_context).jacobian()) if self.log_det == "exact" else None
        x = contractive_inverse(
            lambda x: self.net(x, flat_context), flat, jacobian=dense, tol=self.tol, max_iter=self.max_iter
        )
        _, log_det = self._residual_and_log_det(x, flat_context)
        return x.reshape(z.shape), -log_det.reshape(batch)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, log_det={self.log_det!r}"


@contextmanager
def log_det_method(module: nn.Module, method: LogDetMethod) -> Iterator[None]:
    """Within the ``with`` block, every :class:`ResidualTransform` inside ``module`` computes its log-determinant
    by ``method`` (e.g. ``"exact"`` to evaluate a model trained with a stochastic estimator); restored after.

    Example:
        >>> from torchnf import Flow, ResFlow
        >>> flow = Flow(ResFlow(2, layers=2, hidden=(8,), log_det="roulette"))
        >>> with log_det_method(flow, "exact"):
        ...     log_prob = flow.log_prob(flow.sample(5))
    """
    _choice("log-det method", method, get_args(LogDetMethod))
    with setting(module, ResidualTransform, "log_det", method):
        yield
