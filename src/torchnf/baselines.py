r"""Reference densities that every flow must beat.

:class:`GaussianBaseline` is the maximum-likelihood full-covariance Gaussian,
:math:`\mathcal N(\hat\mu, \hat\Sigma)` with :math:`\hat\Sigma` the (biased) sample covariance plus a small ridge.
:class:`IndependentCategoricalBaseline` is its counterpart for discrete data such as pixel levels: one smoothed
categorical distribution per coordinate, independent of the others, the reference a dequantized image flow's bits
per dimension must beat.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from ._validation import as_points, as_tensor

__all__ = ["GaussianBaseline", "IndependentCategoricalBaseline"]


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


class IndependentCategoricalBaseline:
    r"""Independent categorical distributions, one per coordinate, over the levels :math:`0, \dots, K - 1` of
    discrete data of shape ``(n, *event_shape)`` (pixel values, for instance), fitted by maximum likelihood with
    add-:math:`\alpha` smoothing.

    With :math:`n_{d,k}` the number of the :math:`n` training points whose coordinate :math:`d` equals level
    :math:`k`, and :math:`D` the number of coordinates,

    .. math::

        \pi_{d,k} = \frac{n_{d,k} + \alpha}{n + K \alpha}, \qquad
        \log P(x) = \sum_{d=1}^{D} \log \pi_{d, x_d}, \qquad
        \text{bits per dimension} = -\frac{\log_2 P(x)}{D}.

    :math:`\alpha = 1/2` (the default) is the Jeffreys prior's posterior mean (Krichevsky-Trofimov); :math:`\alpha
    = 0` is the plain maximum-likelihood estimate, which gives a level never seen in training probability 0 (log
    probability :math:`-\infty`). :math:`P` is an exact probability mass function, so its bits per dimension compare
    directly with a dequantized flow's (:func:`torchnf.images.bits_per_dim`), which bound the same quantity from
    above.

    Args:
        levels: the number of levels :math:`K`; data values are the integers :math:`0, \dots, K - 1`.
        alpha: the pseudo-count added to every level of every coordinate, at least 0.

    Attributes:
        probs: the fitted :math:`\pi`, float64 of shape ``(*event_shape, K)`` (``None`` before :meth:`fit`).

    Example:
        >>> import torch
        >>> x = torch.tensor([[0, 1], [0, 2], [1, 2]])  # three points, two coordinates, levels 0, 1, 2
        >>> baseline = IndependentCategoricalBaseline(levels=3).fit(x)
        >>> baseline.probs[0]  # (2 + 1/2, 1 + 1/2, 0 + 1/2) / (3 + 3/2)
        tensor([0.5556, 0.3333, 0.1111], dtype=torch.float64)
        >>> baseline.log_prob(torch.tensor([[0, 2]])).exp()  # (2.5 / 4.5) ** 2
        tensor([0.3086], dtype=torch.float64)
        >>> round(baseline.bits_per_dim(torch.tensor([[0, 2]])), 4)  # -log2(2.5 / 4.5)
        0.848
    """

    def __init__(self, levels: int, alpha: float = 0.5) -> None:
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an int of at least 2, got {levels!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha < math.inf:
            raise ValueError(f"alpha must be a finite number of at least 0, got {alpha!r}")
        self.levels = levels
        self.alpha = float(alpha)
        self.probs: Tensor | None = None

    @property
    def event_shape(self) -> torch.Size | None:
        """Shape of one data point, set by :meth:`fit` (``None`` before)."""
        return None if self.probs is None else self.probs.shape[:-1]

    def fit(self, x: Any) -> IndependentCategoricalBaseline:
        """Count the levels of every coordinate of ``x``, shape ``(n, *event_shape)`` with ``n >= 1``."""
        t = as_tensor(x, "x")
        if t.dim() < 1:
            raise ValueError(f"x must have shape (n, *event_shape), got a scalar of shape {tuple(t.shape)}")
        if t.shape[0] == 0:
            raise ValueError(f"x is empty: it must hold at least one point to fit to, got shape {tuple(t.shape)}")
        levels = self._levels(t, "x")
        n, event_shape = t.shape[0], t.shape[1:]
        dims = event_shape.numel()
        flat = levels.reshape(n, dims) + torch.arange(dims) * self.levels  # index into a (D * K) table
        counts = torch.zeros(dims * self.levels, dtype=torch.float64).index_add_(
            0, flat.flatten(), torch.ones(flat.numel(), dtype=torch.float64)
        )
        probs = (counts + self.alpha) / (n + self.levels * self.alpha)
        self.probs = probs.reshape(*event_shape, self.levels)
        return self

    def log_prob(self, x: Any) -> Tensor:
        """The exact log-probability (nats) of each point of ``x``, shape ``(*batch, *event_shape)``; returns
        ``(*batch,)`` in float64."""
        if self.probs is None:
            raise RuntimeError("call fit before log_prob")
        event_shape = self.probs.shape[:-1]
        t = as_tensor(x, "x")
        k = len(event_shape)
        if t.dim() < k or t.shape[t.dim() - k :] != event_shape:
            raise ValueError(
                f"x must have shape (..., {', '.join(map(str, event_shape))}): batch dimensions followed by the "
                f"event shape {tuple(event_shape)}; got shape {tuple(t.shape)}"
            )
        levels = self._levels(t, "x")
        batch, dims = t.shape[: t.dim() - k], event_shape.numel()
        flat = levels.reshape(-1, dims) + torch.arange(dims) * self.levels
        log_table = self.probs.log().flatten()
        return log_table[flat].sum(1).reshape(batch)

    def bits_per_dim(self, x: Any) -> float:
        """The mean negative log-probability of the points of ``x`` in bits per dimension, :math:`-\\log_2 P(x) / D`
        (at least one point)."""
        log_p = self.log_prob(x)
        if log_p.numel() == 0:
            raise ValueError("x is empty: it must hold at least one point to average over")
        dims = math.prod(self.event_shape or ())  # D (1 for scalar points); log_prob refused an unfitted baseline
        return -float(log_p.mean()) / (dims * math.log(2))

    def _levels(self, t: Tensor, name: str) -> Tensor:
        """``t`` as int64 levels, refusing values that are not finite integers in ``[0, K - 1]``."""
        if t.is_complex():
            raise TypeError(f"{name} must hold real integer levels, got complex dtype {t.dtype}")
        values = t.detach().cpu().to(torch.float64)
        bad = ~torch.isfinite(values) | (values != values.round()) | (values < 0) | (values > self.levels - 1)
        if bool(bad.any()):
            first = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{name} must hold integer levels 0, 1, ..., {self.levels - 1}; it holds {float(values[bad][0])!r} at "
                f"index {first} (first of {int(bad.sum())} such values)"
            )
        return values.long()
