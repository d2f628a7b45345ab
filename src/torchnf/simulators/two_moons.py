r"""Two moons: a two-parameter simulator whose posterior is two crescents, with an exact posterior sampler."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..targets.base import check_finite, check_positive
from .base import Seed, Simulator, check_count, make_generator

__all__ = ["TwoMoons"]

_SQRT2 = math.sqrt(2.0)
# the inversion sampler gives up after this many proposals per requested draw (plus one round), or after one round of
# _MAX_ROUND proposals that all fell outside the prior's box
_MAX_PROPOSAL_FACTOR = 1000
_MIN_PROPOSALS = 1024
_MAX_ROUND = 1_000_000


class TwoMoons(Simulator):
    r"""The two-moons simulator of Greenberg, Nonnenmacher and Macke (2019, "Automatic posterior transformation for
    likelihood-free inference", *ICML*), as in the SBI benchmark of Lueckmann et al. (2021, "Benchmarking
    simulation-based inference", *AISTATS*): with :math:`B = 1`, :math:`\mu_r = 0.1`, :math:`\sigma_r = 0.01`,
    :math:`c = 0.25`,

    .. math::
        \theta \sim \mathcal U[-B, B]^2, \quad a \sim \mathcal U(-\tfrac\pi2, \tfrac\pi2), \quad
        r \sim \mathcal N(\mu_r, \sigma_r^2), \quad p = (r\cos a + c,\ r\sin a),

        x = p + g(\theta), \qquad g(\theta) = \Big(-\frac{|\theta_1 + \theta_2|}{\sqrt2},\
        \frac{-\theta_1 + \theta_2}{\sqrt2}\Big).

    Each observation's posterior is two crescents, mirror images across the line :math:`\theta_1 + \theta_2 = 0`.

    **The likelihood.** :math:`p - (c, 0)` is the point :math:`(r, a)` in polar coordinates. On :math:`r \ne 0`
    the map :math:`(r, a) \mapsto (u, v) = (r\cos a, r\sin a)` is one-to-one (:math:`r > 0` gives :math:`u > 0`,
    :math:`r < 0` gives :math:`u < 0`) with Jacobian :math:`|r|`, so :math:`p` has the density

    .. math::
        f(p) = \frac{\varphi\big(\operatorname{sign}(u)\,\rho;\ \mu_r, \sigma_r\big)}{\pi\rho}, \qquad
        (u, v) = p - (c, 0),\ \rho = \sqrt{u^2 + v^2},

    where :math:`\varphi` is the normal density, and :math:`p(x \mid \theta) = f(x - g(\theta))`
    (:meth:`log_likelihood`). The factor :math:`1/\rho` changes by a factor 1.5 across a crescent (from
    :math:`\rho = 0.08` to :math:`0.12`, two standard deviations either side); the benchmark's code evaluates the
    likelihood without it (for its MCMC checks; its reference samples come from the inversion below).

    **The exact posterior sampler** (:meth:`reference_posterior_samples`, the inversion that Lueckmann et al.'s
    reference sampler uses, vectorized). Write :math:`z = R\theta` with the rotation
    :math:`z_1 = (\theta_1 + \theta_2)/\sqrt2`, :math:`z_2 = (\theta_2 - \theta_1)/\sqrt2`; then
    :math:`g(\theta) = (-|z_1|, z_2)`. Given :math:`x` and :math:`p`, :math:`x = p + g(\theta)` holds exactly when
    :math:`|z_1| = p_1 - x_1` (which needs :math:`p_1 \ge x_1`) and :math:`z_2 = x_2 - p_2`, so for each sign
    :math:`s = \pm1` there is one solution

    .. math::
        z = \big(s\,(p_1 - x_1),\ x_2 - p_2\big), \qquad
        \theta = R^\top z = \Big(\frac{z_1 - z_2}{\sqrt2},\ \frac{z_1 + z_2}{\sqrt2}\Big).

    For fixed :math:`x` and :math:`s`, :math:`p \mapsto \theta` is affine (a reflection and a rotation) with
    :math:`|\det| = 1`, onto the half plane :math:`\{s z_1 > 0\}`, and its inverse is :math:`\theta \mapsto
    x - g(\theta)`. So if :math:`p` is drawn from the simulator's noise (:math:`a`, :math:`r` from their
    distributions: the Jacobian :math:`|r|` of the polar map is already in :math:`f`, and never needs computing)
    and :math:`s` is a fair coin, :math:`\theta` has density :math:`\tfrac12 f(x - g(\theta))` on the whole plane
    (on :math:`p_1 < x_1`, where there is no solution, the draw is discarded). Keeping the draws inside the prior's
    box leaves the density proportional to :math:`f(x - g(\theta))\,\mathbb 1[\theta \in [-B, B]^2] \propto
    p(\theta)\,p(x \mid \theta)`: the posterior, exactly, because the Jacobian of :math:`p \mapsto \theta` is
    constant. (That of :math:`(a, r) \mapsto \theta` is not, :math:`|r|`, but :math:`(a, r)` are drawn from their
    own distribution, not uniformly, so it does not enter.) The tests check the draws against the density
    :math:`f(x - g(\theta))` normalized by quadrature on a grid.

    Two consequences: the reflection :math:`z_1 \mapsto -z_1` maps the box onto itself, so the two crescents always
    weigh the same; and where the box cuts neither crescent, the evidence is
    :math:`p(x) = (2B)^{-2} \cdot 2\,P(p_1 \ge x_1)`, which is :math:`\tfrac12` for :math:`B = 1` unless
    :math:`x_1` reaches into the moon.

    Args:
        prior_bound: :math:`B`, the half-width of the prior's box.
        radius_mean: :math:`\mu_r`.
        radius_std: :math:`\sigma_r`.
        offset: :math:`c`.

    Example:
        >>> simulator = TwoMoons()
        >>> theta, x = simulator.sample_joint(5, seed=0)
        >>> theta.shape, x.shape
        (torch.Size([5, 2]), torch.Size([5, 2]))
        >>> draws = simulator.reference_posterior_samples(torch.tensor([0.0, 0.0]), 1000, seed=0)
        >>> draws.shape, bool((draws.abs() <= 1).all())
        (torch.Size([1000, 2]), True)
        >>> round(float((draws.sum(-1) > 0).double().mean()), 1)  # the two crescents are equally likely
        0.5
    """

    def __init__(
        self, *, prior_bound: float = 1.0, radius_mean: float = 0.1, radius_std: float = 0.01, offset: float = 0.25
    ) -> None:
        super().__init__(2, 2)
        self.prior_bound = check_positive(prior_bound, "prior_bound")
        self.radius_mean = check_positive(radius_mean, "radius_mean")
        self.radius_std = check_positive(radius_std, "radius_std")
        self.offset = check_finite(offset, "offset")

    # -- the prior and the simulator -----------------------------------------------------------------------------

    def prior_sample(self, n: int | Sequence[int], seed: Seed = None) -> Tensor:
        u = self._noise("uniform", (*self._sample_shape(n), 2), make_generator(seed))
        return self.prior_bound * (2 * u - 1)

    def prior_log_prob(self, theta: Any) -> Tensor:
        r""":math:`-2\log(2B)` inside the closed box :math:`[-B, B]^2`, :math:`-\infty` outside."""
        theta = self._check_theta(theta)
        inside = (theta.abs() <= self.prior_bound).all(-1)
        value = torch.full(inside.shape, -2 * math.log(2 * self.prior_bound), dtype=theta.dtype, device=theta.device)
        return value.masked_fill(~inside, -math.inf)

    def _moon_noise(self, shape: Sequence[int], generator: torch.Generator | None) -> Tensor:
        """Draws of :math:`p`, shape ``(*shape, 2)``."""
        a = math.pi * (self._noise("uniform", shape, generator) - 0.5)
        r = self.radius_mean + self.radius_std * self._noise("normal", shape, generator)
        return torch.stack([r * torch.cos(a) + self.offset, r * torch.sin(a)], dim=-1)

    @staticmethod
    def _g(theta: Tensor) -> Tensor:
        z1 = (theta[..., 0] + theta[..., 1]) / _SQRT2
        z2 = (theta[..., 1] - theta[..., 0]) / _SQRT2
        return torch.stack([-z1.abs(), z2], dim=-1)

    def simulate(self, theta: Any, seed: Seed = None) -> Tensor:
        theta = self._check_theta(theta)
        return self._moon_noise(theta.shape[:-1], make_generator(seed)) + self._g(theta)

    def log_likelihood(self, theta: Any, x: Any) -> Tensor:
        r"""The exact :math:`\log p(x \mid \theta) = \log f(x - g(\theta))` (see the class docstring), for batch
        shapes that broadcast; :math:`+\infty` only at :math:`\rho = 0` exactly, where the density is singular."""
        theta, x = self._check_theta(theta), self._check_x(x)
        p = x - self._g(theta)
        u, v = p[..., 0] - self.offset, p[..., 1]
        rho = torch.hypot(u, v)
        signed = torch.where(u < 0, -rho, rho)
        standard = (signed - self.radius_mean) / self.radius_std
        log_normal = -0.5 * standard.square() - math.log(self.radius_std) - 0.5 * math.log(2 * math.pi)
        return log_normal - torch.log(math.pi * rho)

    # -- the posterior -------------------------------------------------------------------------------------------

    def _invert(self, x: Tensor, p: Tensor, sign: Tensor) -> Tensor:
        """The parameters with ``x = p + g(theta)`` on the branch ``sign`` (NaN where ``p_1 < x_1``)."""
        z1 = sign * (p[..., 0] - x[0])
        z2 = x[1] - p[..., 1]
        theta = torch.stack([(z1 - z2) / _SQRT2, (z1 + z2) / _SQRT2], dim=-1)
        return theta.masked_fill((p[..., 0] < x[0]).unsqueeze(-1), math.nan)

    def _posterior_one(self, x: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
        """``n`` exact posterior draws ``(n, 2)`` for one observation ``(2,)``, by inversion and rejection."""
        kept: list[Tensor] = []
        count, proposed = 0, 0
        limit = _MAX_PROPOSAL_FACTOR * n + _MAX_ROUND
        while count < n:
            rate = count / proposed if count else 0.0
            wanted = (n - count) / rate * 1.1 if rate > 0 else n * 4
            size = int(min(max(wanted, _MIN_PROPOSALS), _MAX_ROUND))
            p = self._moon_noise((size,), generator)
            sign = torch.where(self._noise("uniform", (size,), generator) < 0.5, -1.0, 1.0).to(p.dtype)
            theta = self._invert(x, p, sign)
            accepted = theta[(theta.abs() <= self.prior_bound).all(-1)]  # NaN compares false: p_1 < x_1 is dropped
            kept.append(accepted)
            count += accepted.shape[0]
            proposed += size
            if count < n and (proposed >= limit or (count == 0 and proposed >= _MAX_ROUND)):
                raise ValueError(
                    f"the observation {x.tolist()} is (nearly) impossible under the model: only {count} of "
                    f"{proposed:,} draws of the simulator's noise map to parameters inside the prior's box"
                )
        return torch.cat(kept)[:n]

    def reference_posterior_samples(self, x_obs: Any, n: int, seed: Seed = None) -> Tensor:
        r"""Exact posterior draws by inverting the simulator (see the class docstring): shape ``(n, 2)`` for one
        observation ``(2,)``, ``(n, *batch, 2)`` for observations ``(*batch, 2)``. Raises ``ValueError`` for an
        observation that the model (almost) never produces from parameters inside the prior's box."""
        x = self._check_x(x_obs, "x_obs")
        n = check_count(n)
        generator = make_generator(seed)
        flat = x.reshape(-1, 2)
        if flat.shape[0] == 0:
            return x.new_empty(n, *x.shape[:-1], 2)
        draws = [self._posterior_one(row, n, generator) for row in flat]
        return torch.stack(draws, dim=1).reshape(n, *x.shape[:-1], 2)

    def extra_repr(self) -> str:
        return (
            f"prior_bound={self.prior_bound:g}, radius_mean={self.radius_mean:g}, radius_std={self.radius_std:g}, "
            f"offset={self.offset:g}"
        )
