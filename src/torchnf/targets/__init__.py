r"""Test densities for variational inference and MCMC: unnormalized log-densities with what is known about them.

Each is a :class:`Target`, a :class:`torch.nn.Module` whose ``log_prob`` maps points ``(*batch, *event_shape)`` to
``(*batch,)``, differentiable, in the input's dtype. Where they are known it gives the true ``log_normalizer``, exact
``sample`` s, and the ``mean`` and ``variance`` (tensors in the target's dtype and device: the default dtype until
``.double()`` or ``.to``).

- :class:`NealFunnel`: a scale that varies by orders of magnitude (Neal 2003). Exact normalizer, sampler and moments.
- :class:`Banana`: a Gaussian twisted into a parabola (Haario, Saksman and Tamminen 1999). Exact normalizer, sampler
  and moments.
- :class:`Rosenbrock`: a chain of curved ridges (Pagani, Wiegand and Nadarajah 2022). Exact normalizer and sampler;
  exact moments up to 6 dimensions.
- :class:`GaussianMixture`: separated modes, with :meth:`~GaussianMixture.two_modes` and
  :meth:`~GaussianMixture.ring`. Exact normalizer, sampler and moments.
- :class:`ManyWell`: :math:`2^{d/2}` modes of unequal mass (Midgley et al. 2023). Normalizer and moments by a 1-D
  quadrature; exact (rejection) sampler.
- :class:`RezendePotential`: the 2-D energies U1 - U4 (Rezende and Mohamed 2015). Normalizer and moments by a 2-D
  quadrature; no sampler.
- :class:`BayesianLogisticRegression`: a correlated posterior on real data (breast cancer, iris). Nothing known.
"""

from __future__ import annotations

from .banana import Banana, Rosenbrock
from .base import LogDensity, Target
from .funnel import NealFunnel
from .logistic import BayesianLogisticRegression
from .many_well import ManyWell
from .mixture import GaussianMixture
from .potentials import RezendePotential

__all__ = [
    "Banana",
    "BayesianLogisticRegression",
    "GaussianMixture",
    "LogDensity",
    "ManyWell",
    "NealFunnel",
    "RezendePotential",
    "Rosenbrock",
    "Target",
]
