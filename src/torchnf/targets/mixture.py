r"""Mixtures of diagonal Gaussians: separated modes, the classic trap for mode-seeking variational inference."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._validation import as_float64, as_sample_shape
from .base import Target, check_dim, check_finite, check_positive

__all__ = ["GaussianMixture"]

_WEIGHT_TOLERANCE = 1e-6


class GaussianMixture(Target):
    r"""A mixture of :math:`K` Gaussians with diagonal covariances,

    .. math::
        \pi(x) = \sum_{k=1}^K w_k\, \mathcal N\big(x;\ \mu_k,\ \mathrm{diag}(\sigma_k^2)\big), \qquad
        \log\pi(x) = \operatorname{logsumexp}_k \Big(\log w_k - \sum_i \Big(\frac{(x_i - \mu_{ki})^2}{2\sigma_{ki}^2}
            + \log\sigma_{ki}\Big)\Big) - \frac d2\log 2\pi,

    evaluated with ``logsumexp``, so values and gradients stay finite far from every mode. It is normalized
    (:attr:`log_normalizer` is 0), sampled exactly, and has mean :math:`\sum_k w_k \mu_k` and variances
    :math:`\sum_k w_k (\sigma_k^2 + (\mu_k - \bar\mu)^2)` (McLachlan and Peel 2000, *Finite Mixture Models*, ch. 1).
    :meth:`two_modes` and :meth:`ring` build the usual test cases. ``means``, ``scales`` and ``log_weights`` are
    buffers, in the default dtype until the target is converted.

    Args:
        means: the component means :math:`\mu`, shape ``(K, d)``.
        scales: the standard deviations :math:`\sigma > 0`: a number, ``(K,)`` (one per component) or ``(K, d)``.
        weights: the mixing weights :math:`w`, ``(K,)``, positive and summing to 1 (within 1e-6); default uniform.

    Example:
        >>> target = GaussianMixture([[-2.0, 0.0], [2.0, 0.0]], scales=1.0)
        >>> target.mean, target.variance  # the variance along the first axis: 1 + 2^2
        (tensor([0., 0.]), tensor([5., 1.]))
        >>> torch.isfinite(target.log_prob(torch.full((2,), 1e3))).item()
        True
    """

    means: Tensor
    scales: Tensor
    log_weights: Tensor

    def __init__(self, means: Any, scales: Any, weights: Any = None) -> None:
        mu = as_float64(means, "means")
        if mu.dim() != 2 or mu.shape[0] == 0 or mu.shape[1] == 0:
            raise ValueError(f"means must have shape (K, d) with K, d >= 1, got shape {tuple(mu.shape)}")
        k, d = mu.shape
        sigma = as_float64(scales, "scales")
        if sigma.dim() == 1 and sigma.shape[0] == k:
            sigma = sigma.unsqueeze(-1)
        try:
            sigma = torch.broadcast_to(sigma, (k, d)).clone()
        except RuntimeError:
            raise ValueError(
                f"scales must be a number or have shape ({k},) or ({k}, {d}) to match means; got shape "
                f"{tuple(sigma.shape)}"
            ) from None
        if not bool((sigma > 0).all()):
            raise ValueError(f"scales must be positive, got {sigma.tolist()}")
        if weights is None:
            w = torch.full((k,), 1.0 / k, dtype=torch.float64)
        else:
            w = as_float64(weights, "weights")
            if w.shape != (k,):
                raise ValueError(f"weights must have shape ({k},), one per component, got shape {tuple(w.shape)}")
            if not bool((w > 0).all()):
                raise ValueError(f"weights must be positive, got {w.tolist()}")
            if abs(float(w.sum()) - 1) > _WEIGHT_TOLERANCE:
                raise ValueError(f"weights must sum to 1, got {w.tolist()} (sum {float(w.sum())!r})")
        super().__init__(d)
        dtype = torch.get_default_dtype()
        self.register_buffer("means", mu.to(dtype))
        self.register_buffer("scales", sigma.to(dtype))
        self.register_buffer("log_weights", torch.log(w / w.sum()).to(dtype))

    @classmethod
    def two_modes(
        cls,
        dim: int = 2,
        separation: float = 8.0,
        scale: float = 1.0,
        weights: Sequence[float] = (0.5, 0.5),
    ) -> GaussianMixture:
        r"""Two isotropic modes at :math:`\pm\frac{\text{separation}}2 e_1`, well apart with the defaults (8
        standard deviations between the means, density ratio :math:`e^{-8}` at the midpoint).

        Example:
            >>> GaussianMixture.two_modes().means
            tensor([[-4.,  0.],
                    [ 4.,  0.]])
        """
        dim = check_dim(dim, 1)
        half = 0.5 * check_finite(separation, "separation")
        means = torch.zeros(2, dim, dtype=torch.float64)
        means[0, 0], means[1, 0] = -half, half
        return cls(means, check_positive(scale, "scale"), weights)

    @classmethod
    def ring(cls, modes: int = 8, radius: float = 5.0, scale: float = 0.5) -> GaussianMixture:
        r"""``modes`` isotropic 2-D Gaussians evenly spaced on a circle, :math:`\mu_k = r(\cos\frac{2\pi k}K,
        \sin\frac{2\pi k}K)`, equally weighted: the eight-Gaussian ring of Metz, Poole, Pfau and Sohl-Dickstein
        (2017, "Unrolled generative adversarial networks") with the defaults.

        Example:
            >>> GaussianMixture.ring(modes=4, radius=1.0).means.round(decimals=6).abs()
            tensor([[1., 0.],
                    [0., 1.],
                    [1., 0.],
                    [0., 1.]])
        """
        modes = check_dim(modes, 1, "modes")
        radius = check_positive(radius, "radius")
        angles = 2 * math.pi * torch.arange(modes, dtype=torch.float64) / modes
        means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
        return cls(means, check_positive(scale, "scale"))

    @property
    def components(self) -> int:
        """The number of components :math:`K`."""
        return self.means.shape[0]

    def log_prob(self, x: Tensor) -> Tensor:
        self._check_points(x)
        means, scales, log_weights = (t.to(x.dtype) for t in (self.means, self.scales, self.log_weights))
        log_weights = log_weights - torch.logsumexp(log_weights, 0)  # exactly normalized in x's dtype
        standard = (x.unsqueeze(-2) - means) / scales  # (*batch, K, d)
        log_components = -0.5 * standard.square().sum(-1) - scales.log().sum(-1)
        return torch.logsumexp(log_components + log_weights, dim=-1) - 0.5 * self.dim * math.log(2 * math.pi)

    @property
    def log_normalizer(self) -> float:
        return 0.0

    @property
    def mean(self) -> Tensor:
        w = torch.softmax(self.log_weights.double(), 0).unsqueeze(-1)
        return (w * self.means.double()).sum(0).to(self._reference())

    @property
    def variance(self) -> Tensor:
        w, means = torch.softmax(self.log_weights.double(), 0).unsqueeze(-1), self.means.double()
        center = (w * means).sum(0)
        return (w * (self.scales.double().square() + (means - center).square())).sum(0).to(self._reference())

    def sample(self, n: int | Sequence[int], generator: torch.Generator | None = None) -> Tensor:
        shape = as_sample_shape(n)
        count = shape.numel()
        ref = self._reference()
        eps = torch.randn(count, self.dim, generator=generator, dtype=ref.dtype, device=ref.device)
        if count == 0:
            return eps.reshape(*shape, self.dim)
        probs = torch.softmax(self.log_weights.double(), 0)
        index = torch.multinomial(probs, count, replacement=True, generator=generator)
        x = self.means[index].to(ref.dtype) + self.scales[index].to(ref.dtype) * eps
        return x.reshape(*shape, self.dim)

    def extra_repr(self) -> str:
        return f"components={self.components}, dim={self.dim}"
