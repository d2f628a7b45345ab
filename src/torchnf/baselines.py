r"""Reference densities that every flow must beat.

:class:`GaussianBaseline` is the maximum-likelihood full-covariance Gaussian,
:math:`\mathcal N(\hat\mu, \hat\Sigma)` with :math:`\hat\Sigma` the (biased) sample covariance plus a small ridge.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from ._validation import as_points, as_tensor

__all__ = ["GaussianBaseline"]


class GaussianBaseline:
    """A full-covariance Gaussian fitted by maximum likelihood to vectors of shape ``(n, D)``.

    Args:
        ridge: added to the covariance diagonal, relative to its mean variance, for singular data.

    Example:
        >>> import torch
        >>> g = GaussianBaseline().fit(torch.randn(1000, 2, dtype=torch.float64))
        >>> bool(abs(g.log_prob(torch.zeros(1, 2, dtype=torch.float64)).item() + 1.84) < 0.1)
        True
    """

    def __init__(self, ridge: float = 1e-6) -> None:
        self.ridge = ridge
        self.distribution: MultivariateNormal | None = None

    def fit(self, x: Any) -> GaussianBaseline:
        """Fit mean and covariance to ``x`` of shape ``(n, D)`` (at least two points)."""
        x = _as_matrix(x)
        if x.shape[0] < 2:
            raise ValueError(f"x must hold at least 2 points to fit a covariance, got {x.shape[0]}")
        mean = x.mean(0)
        cov = torch.cov(x.T, correction=0).reshape(x.shape[1], x.shape[1])
        cov = cov + self.ridge * cov.diagonal().mean() * torch.eye(x.shape[1], dtype=x.dtype)
        self.distribution = MultivariateNormal(mean, covariance_matrix=cov)
        return self

    def log_prob(self, x: Any) -> Tensor:
        """Log-density of each row of ``x``."""
        if self.distribution is None:
            raise RuntimeError("call fit before log_prob")
        x = _as_matrix(x)
        if x.shape[1] != self.distribution.event_shape[0]:
            raise ValueError(f"x must have {self.distribution.event_shape[0]} columns, got {x.shape[1]}")
        return self.distribution.log_prob(x)


def _as_matrix(x: Any) -> Tensor:
    t = as_tensor(x, "x")
    if t.dim() != 2:
        raise ValueError(f"x must be a matrix of shape (n, D), got shape {tuple(t.shape)}")
    return as_points(t, "x", t.shape[1:], torch.float64, torch.device("cpu"), allow_empty=False)
