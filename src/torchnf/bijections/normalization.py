r"""Normalization layers that are bijections: ActNorm, invertible batch normalization, data standardization."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Bijection, ShapeLike
from .linear import ElementwiseAffine

__all__ = ["ActNorm", "BatchNorm", "Standardization"]


# torch.compiler.is_compiling arrived in torch 2.3; compiled fitting with ActNorm needs that version or later
_is_compiling = getattr(torch.compiler, "is_compiling", lambda: False)


class ActNorm(ElementwiseAffine):
    r"""Activation normalization (Kingma and Dhariwal 2018, *Glow*, section 3.1): :math:`z = e^{s} \odot x + t`,
    with :math:`s, t` initialized from the first training batch so that :math:`z` has zero mean and unit variance
    per parameter.

    The initialization happens on the first ``forward`` in training mode with a batch of at least two points
    (a single point has no variance to normalize). A differentiable ``inverse`` in training
    mode (reverse-KL fitting) marks the layer initialized and keeps the identity. The ``initialized`` flag is a
    persistent buffer, so a loaded model never re-initializes.

    Args:
        event_shape: shape of one input point.
        param_shape: shape of ``s`` and ``t`` (default ``event_shape``; ``(C, 1, 1)`` for per-channel images).
    """

    initialized: Tensor

    def __init__(self, event_shape: ShapeLike, param_shape: ShapeLike | None = None) -> None:
        super().__init__(event_shape, param_shape)
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        flat = x.reshape(-1, *self.event_shape)
        if flat.shape[0] < 2:
            return
        dims = [0] + [1 + i for i, p in enumerate(self.log_scale.shape) if p == 1]
        mean = flat.mean(dims, keepdim=True).reshape(self.log_scale.shape)
        std = flat.var(dims, unbiased=False, keepdim=True).reshape(self.log_scale.shape).add(1e-6).sqrt()
        self.log_scale.copy_(-std.log())
        self.shift.copy_(-mean / std)
        self.initialized.fill_(True)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # A compiled graph cannot branch on a buffer's value: compiled fitting initializes every ActNorm first.
        if self.training and not _is_compiling() and not self.initialized:
            self._initialize(x)
        return super().forward(x, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and torch.is_grad_enabled() and not _is_compiling() and not self.initialized:
            self.initialized.fill_(True)
        return super().inverse(z, context)


class BatchNorm(Bijection):
    r"""Invertible batch normalization (Dinh et al. 2017, *Real NVP*, section 3.7; Papamakarios et al. 2017, *MAF*,
    section 3.4):

    .. math::

        z = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}\, e^{\gamma} + \beta, \qquad
        \log|\det J| = \sum_i \Big(\gamma_i - \tfrac12 \log(\sigma_i^2 + \epsilon)\Big).

    In training mode ``forward`` uses the batch mean and (biased) variance and updates running averages; in
    evaluation mode, and in ``inverse`` always, the running averages are used, so the map is a fixed bijection.

    Args:
        event_shape: the number of dimensions ``D`` (or ``(D,)``).
        momentum: weight of the newest batch in the running averages.
        eps: :math:`\epsilon`.
    """

    running_mean: Tensor
    running_var: Tensor

    def __init__(self, event_shape: ShapeLike, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__(event_shape)
        if len(self.event_shape) != 1:
            raise ValueError(f"BatchNorm acts on vectors; got event_shape {tuple(self.event_shape)}")
        if not 0 < momentum <= 1:
            raise ValueError(f"momentum must lie in (0, 1], got {momentum}")
        features = self.event_shape[0]
        self.momentum, self.eps = momentum, eps
        self.log_gamma = nn.Parameter(torch.zeros(features))
        self.beta = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def _statistics(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not self.training:
            return self.running_mean, self.running_var
        flat = x.reshape(-1, self.event_shape[0])
        if flat.shape[0] < 2:
            raise ValueError("BatchNorm in training mode needs a batch of at least 2 points")
        mean, var = flat.mean(0), flat.var(0, unbiased=False)
        with torch.no_grad():
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var, self.momentum)
        return mean, var

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mean, var = self._statistics(x)
        log_scale = self.log_gamma - 0.5 * torch.log(var + self.eps)
        z = (x - mean) * log_scale.exp() + self.beta
        return z, log_scale.sum().expand(x.shape[:-1])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_scale = self.log_gamma - 0.5 * torch.log(self.running_var + self.eps)
        x = (z - self.beta) * torch.exp(-log_scale) + self.running_mean
        return x, -log_scale.sum().expand(z.shape[:-1])


class Standardization(Bijection):
    r"""Fixed data standardization :math:`z = (x - \mu) / \sigma`, with :math:`\log|\det J| = -\sum_i \log\sigma_i`.

    :math:`\mu` and :math:`\sigma` are not learned: :meth:`fit` sets them once from training data (the per-element
    mean and standard deviation over the batch), so users pass raw data and get densities in raw units. Until then
    the map is the identity. Both, and the ``fitted`` flag, are persistent buffers.

    Args:
        event_shape: shape of one input point.
        min_scale: the smallest :math:`\sigma` used, relative to the largest, for (near-)constant dimensions.
    """

    loc: Tensor
    scale: Tensor
    fitted: Tensor

    def __init__(self, event_shape: ShapeLike, min_scale: float = 1e-6) -> None:
        super().__init__(event_shape)
        self.min_scale = min_scale
        self.register_buffer("loc", torch.zeros(self.event_shape))
        self.register_buffer("scale", torch.ones(self.event_shape))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:
        r"""Set :math:`\mu` and :math:`\sigma` from data of shape ``(*batch, *event_shape)`` (at least two points)."""
        flat = x.reshape(-1, *self.event_shape)
        if flat.shape[0] < 2:
            raise ValueError(f"standardization needs at least 2 points, got {flat.shape[0]}")
        std = flat.std(0, unbiased=False)
        floor = self.min_scale * float(std.max()) if float(std.max()) > 0 else 1.0
        self.loc.copy_(flat.mean(0))
        self.scale.copy_(std.clamp_min(floor))
        self.fitted.fill_(True)

    def _log_det(self, x: Tensor) -> Tensor:
        return -self.scale.log().sum().expand(self.batch_shape(x))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return (x - self.loc) / self.scale, self._log_det(x)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z * self.scale + self.loc, -self._log_det(z)
