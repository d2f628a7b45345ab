r"""The linear-Gaussian model: a Gaussian prior, a linear map and Gaussian noise, whose posterior is Gaussian."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from .._validation import as_float64
from ..targets.base import check_dim
from .base import Seed, Simulator, check_count, make_generator

__all__ = ["GaussianLinear"]


def _vector(value: Any, name: str, dim: int) -> Tensor:
    """A number (the same for every coordinate) or a vector ``(dim,)``, as float64."""
    t = as_float64(value, name)
    if t.dim() == 0:
        return t.expand(dim).clone()
    if t.shape != (dim,):
        raise ValueError(f"{name} must be a number or have shape ({dim},), got shape {tuple(t.shape)}")
    return t


def _covariance(value: Any, name: str, dim: int) -> Tensor:
    r"""A covariance matrix from a number :math:`s` (:math:`sI`), a vector (its diagonal) or a ``(dim, dim)``
    symmetric positive-definite matrix, as float64."""
    t = as_float64(value, name)
    if t.dim() <= 1:
        t = torch.diag(_vector(t, name, dim))
    elif t.shape != (dim, dim):
        raise ValueError(
            f"{name} must be a number, a vector ({dim},) or a matrix ({dim}, {dim}); got shape {tuple(t.shape)}"
        )
    if not torch.allclose(t, t.T, rtol=1e-10, atol=1e-12):
        raise ValueError(f"{name} must be symmetric")
    if torch.linalg.cholesky_ex(t).info.item() != 0:
        raise ValueError(f"{name} must be positive definite")
    return t


class GaussianLinear(Simulator):
    r"""Linear-Gaussian inference: a Gaussian prior, data a linear function of the parameters plus Gaussian noise,

    .. math::
        \theta \sim \mathcal N(\mu_0, \Sigma_0), \qquad x \mid \theta \sim \mathcal N(A\theta + b,\ \Sigma),

    whose posterior is Gaussian with a covariance that does not depend on :math:`x` (Bishop 2006, *Pattern
    Recognition and Machine Learning*, eq. 2.116-2.117):

    .. math::
        p(\theta \mid x) = \mathcal N(\theta;\ m(x),\ S), \qquad
        S = \big(\Sigma_0^{-1} + A^\top\Sigma^{-1}A\big)^{-1}, \qquad
        m(x) = S\big(\Sigma_0^{-1}\mu_0 + A^\top\Sigma^{-1}(x - b)\big).

    :meth:`posterior` returns it as a :class:`torch.distributions.MultivariateNormal` (exact ``log_prob`` and
    ``sample``), for one observation or a batch. The defaults are the *Gaussian linear* task of the SBI benchmark
    (Lueckmann, Boelts, Greenberg, Gonçalves and Macke 2021, "Benchmarking simulation-based inference", *AISTATS*):
    10 dimensions, :math:`\theta \sim \mathcal N(0, 0.1 I)` and :math:`x \mid \theta \sim \mathcal N(\theta,
    0.1 I)`, so that :math:`S = 0.05 I` and :math:`m(x) = x / 2`. (The benchmark's code calls 0.1 a standard
    deviation but uses it as the variance: the precision matrices are :math:`(0.1 I)^{-1}`; so does this class.)

    Args:
        dim: the number of parameters :math:`d`.
        prior_loc: :math:`\mu_0`, a number or a vector ``(d,)``.
        prior_covariance: :math:`\Sigma_0`: a number :math:`s` (:math:`sI`), a vector (the diagonal) or a
            symmetric positive-definite matrix ``(d, d)``.
        matrix: :math:`A`, shape ``(k, d)`` for data of :math:`k` coordinates (default the identity, :math:`k = d`).
        offset: :math:`b`, a number or a vector ``(k,)``.
        noise_covariance: :math:`\Sigma`, as ``prior_covariance`` with ``k`` coordinates.

    Example:
        >>> simulator = GaussianLinear(dim=3)
        >>> theta, x = simulator.sample_joint(4, seed=0)
        >>> theta.shape, x.shape
        (torch.Size([4, 3]), torch.Size([4, 3]))
        >>> posterior = simulator.posterior(torch.tensor([0.2, 0.0, -0.4]))
        >>> posterior.mean, posterior.covariance_matrix.diagonal()
        (tensor([ 0.1000,  0.0000, -0.2000]), tensor([0.0500, 0.0500, 0.0500]))
    """

    prior_loc: Tensor
    prior_covariance: Tensor
    matrix: Tensor
    offset: Tensor
    noise_covariance: Tensor

    def __init__(
        self,
        dim: int = 10,
        *,
        prior_loc: Any = 0.0,
        prior_covariance: Any = 0.1,
        matrix: Any = None,
        offset: Any = 0.0,
        noise_covariance: Any = 0.1,
    ) -> None:
        dim = check_dim(dim, 1)
        if matrix is None:
            a = torch.eye(dim, dtype=torch.float64)
        else:
            a = as_float64(matrix, "matrix")
            if a.dim() != 2 or a.shape[1] != dim or a.shape[0] < 1:
                raise ValueError(f"matrix must have shape (k, {dim}) with k >= 1, got shape {tuple(a.shape)}")
        k = a.shape[0]
        super().__init__(dim, k)
        dtype = torch.get_default_dtype()
        self.register_buffer("prior_loc", _vector(prior_loc, "prior_loc", dim).to(dtype))
        self.register_buffer("prior_covariance", _covariance(prior_covariance, "prior_covariance", dim).to(dtype))
        self.register_buffer("matrix", a.to(dtype))
        self.register_buffer("offset", _vector(offset, "offset", k).to(dtype))
        self.register_buffer("noise_covariance", _covariance(noise_covariance, "noise_covariance", k).to(dtype))

    # -- the prior and the simulator -----------------------------------------------------------------------------

    def _prior(self) -> MultivariateNormal:
        return MultivariateNormal(self.prior_loc, self.prior_covariance)

    def prior_sample(self, n: int | Sequence[int], seed: Seed = None) -> Tensor:
        shape = self._sample_shape(n)
        eps = self._noise("normal", (*shape, self.theta_dim), make_generator(seed))
        scale = torch.linalg.cholesky(self.prior_covariance)
        return self.prior_loc + eps @ scale.T

    def prior_log_prob(self, theta: Any) -> Tensor:
        return self._prior().log_prob(self._check_theta(theta))

    def simulate(self, theta: Any, seed: Seed = None) -> Tensor:
        theta = self._check_theta(theta)
        eps = self._noise("normal", (*theta.shape[:-1], self.x_dim), make_generator(seed))
        scale = torch.linalg.cholesky(self.noise_covariance)
        return theta @ self.matrix.T + self.offset + eps @ scale.T

    def log_likelihood(self, theta: Any, x: Any) -> Tensor:
        theta, x = self._check_theta(theta), self._check_x(x)
        return MultivariateNormal(theta @ self.matrix.T + self.offset, self.noise_covariance).log_prob(x)

    # -- the posterior -------------------------------------------------------------------------------------------

    def _posterior_parameters(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""The posterior means ``(*batch, d)`` and covariance ``(d, d)`` of checked observations, computed in
        float64 with Cholesky solves: :math:`P = \Sigma_0^{-1} + A^\top\Sigma^{-1}A`, :math:`S = P^{-1}`."""
        loc0, cov0, a, b, cov = (
            t.double() for t in (self.prior_loc, self.prior_covariance, self.matrix, self.offset, self.noise_covariance)
        )
        chol0, chol = torch.linalg.cholesky(cov0), torch.linalg.cholesky(cov)
        noise_precision_a = torch.cholesky_solve(a, chol)  # Σ⁻¹ A, (k, d)
        precision = torch.cholesky_inverse(chol0) + a.T @ noise_precision_a
        covariance = torch.cholesky_inverse(torch.linalg.cholesky(precision))
        covariance = 0.5 * (covariance + covariance.T)
        natural = torch.cholesky_solve(loc0.unsqueeze(-1), chol0).squeeze(-1) + (x.double() - b) @ noise_precision_a
        return natural @ covariance.T, covariance

    @property
    def posterior_covariance(self) -> Tensor:
        r"""The posterior covariance :math:`S = (\Sigma_0^{-1} + A^\top\Sigma^{-1}A)^{-1}`, ``(d, d)``, the same for
        every observation."""
        return self._posterior_parameters(self.offset.double())[1].to(self._reference().dtype)

    def posterior(self, x_obs: Any) -> MultivariateNormal:
        r"""The exact posterior :math:`\mathcal N(m(x), S)` of observations ``(*batch, k)``: a
        :class:`~torch.distributions.MultivariateNormal` with batch shape ``batch`` and event shape ``(d,)``, in the
        simulator's dtype; its ``log_prob`` takes parameters ``(..., *batch, d)``."""
        x = self._check_x(x_obs, "x_obs")
        loc, covariance = self._posterior_parameters(x)
        dtype = self._reference().dtype
        return MultivariateNormal(loc.to(dtype), scale_tril=torch.linalg.cholesky(covariance).to(dtype))

    def reference_posterior_samples(self, x_obs: Any, n: int, seed: Seed = None) -> Tensor:
        r"""Exact posterior draws :math:`m(x) + L\varepsilon` with :math:`S = LL^\top`,
        :math:`\varepsilon \sim \mathcal N(0, I)`: shape ``(n, theta_dim)`` for one observation, ``(n, *batch,
        theta_dim)`` for observations ``(*batch, x_dim)``."""
        x = self._check_x(x_obs, "x_obs")
        n = check_count(n)
        loc, covariance = self._posterior_parameters(x)
        eps = self._noise("normal", (n, *loc.shape), make_generator(seed)).double()
        draws = loc + eps @ torch.linalg.cholesky(covariance).T
        return draws.to(self._reference().dtype)

    def extra_repr(self) -> str:
        return f"dim={self.theta_dim}, x_dim={self.x_dim}"
