r"""Simulators with a known posterior, for amortized (simulation-based) inference with conditional flows.

Each is a :class:`Simulator`: a prior :math:`p(\theta)`, a stochastic simulator :math:`x \sim p(x \mid \theta)`,
:meth:`~Simulator.sample_joint` for the training pairs of a conditional flow :math:`q(\theta \mid x)`, the exact
:meth:`~Simulator.log_likelihood`, and exact draws from the posterior :math:`p(\theta \mid x)`
(:meth:`~Simulator.reference_posterior_samples`) to check the flow against, for example with
:func:`torchnf.c2st.c2st`. Both are tasks of the SBI benchmark (Lueckmann et al. 2021, "Benchmarking
simulation-based inference", *AISTATS*).

- :class:`GaussianLinear`: a Gaussian prior and a linear-Gaussian simulator, 10-D by default; the posterior is
  Gaussian in closed form (:meth:`GaussianLinear.posterior`).
- :class:`TwoMoons`: a 2-D simulator whose posterior is two crescents (Greenberg, Nonnenmacher and Macke 2019);
  exact posterior draws by inverting the simulator.

See ``docs/amortized.md`` for a worked example.
"""

from __future__ import annotations

from .base import Seed, Simulator, make_generator
from .gaussian_linear import GaussianLinear
from .two_moons import TwoMoons

__all__ = ["GaussianLinear", "Seed", "Simulator", "TwoMoons", "make_generator"]
