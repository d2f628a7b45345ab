"""The continuous normalizing flow preset: FFJORD."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from ..bijections.base import Bijection, ShapeLike
from ..bijections.continuous import ContinuousFlow, Noise
from .base import Normalization, Preset, normalization_layer, vector_features

__all__ = ["AUTO_EXACT_MAX_FEATURES", "FFJORD"]

AUTO_EXACT_MAX_FEATURES = 5
"""The largest dimension for which ``trace="auto"`` computes the trace exactly (above, Hutchinson's estimate). A
training step with the exact trace measured 0.7, 1.5, 4, 7 and 14 times one with Hutchinson's at D = 2, 5, 10, 20
and 50 (batch 256, default widths, on CPU): up to 5 dimensions a variance-free trace costs little more."""


class FFJORD(Preset):
    r"""FFJORD (Grathwohl et al. 2019, *FFJORD: free-form continuous dynamics for scalable reversible generative
    models*): ``layers`` continuous flows (blocks) :math:`\frac{dz}{dt} = f_k(z, t, c)`, each with
    :math:`\log|\det| = \int_0^{T_k} \operatorname{tr} \partial f_k / \partial z\, dt`
    (see :class:`~torchnf.bijections.ContinuousFlow`), with RNODE's optional kinetic and Jacobian penalties
    (Finlay et al. 2020, *How to train your neural ODE*).

    The defaults suit tabular data of 2 to about 50 dimensions (which :meth:`torchnf.Flow.fit` standardizes):

    - one block (``layers=1``) whose dynamics has three concat-squash layers of width 64, the widths of FFJORD's
      experiments (one expressive block is cheaper to solve than several small ones), with tanh: bounded, it keeps
      the dynamics of outlying points tame, and it fitted two moons faster than softplus in our measurements;
    - a learnable end time starting at 1;
    - the adaptive Dormand-Prince solver at ``rtol = atol = 1e-5``, FFJORD's training tolerance, which float32
      reaches;
    - direct backpropagation through the solver, faster than the adjoint method at this size (``adjoint=True``
      when memory is short);
    - ``trace="auto"``: the exact trace up to :data:`AUTO_EXACT_MAX_FEATURES` dimensions (:math:`D`
      vector-Jacobian products per evaluation, batched, without variance), Hutchinson's estimate with Rademacher
      noise above (one product; the log-density is then an unbiased but random estimate, in evaluation too:
      :func:`~torchnf.bijections.trace_method` switches a model to the exact trace for an evaluation);
    - no RNODE penalty, so the model fits the likelihood alone; small weights such as
      ``kinetic_energy = jacobian_norm = 0.01`` keep the dynamics simple and the number of solver steps
      (:attr:`last_nfe`) lower, at a small cost in likelihood.

    Training costs more per step than a coupling flow (each step solves an ODE and differentiates through it); a
    learning rate of ``5e-3`` (``flow.fit(x, lr=5e-3)``) fits small problems in a few hundred steps.

    Args:
        event_shape: the number of dimensions.
        context_shape: shape of a context, or ``None``.
        layers: the number of continuous flows (blocks) in sequence.
        hidden: hidden widths of each dynamics network.
        activation: its smooth activation (``"tanh"``, ``"softplus"``, ``"elu"``, ``"silu"``; not ReLU).
        time: the (initial) end time of each block.
        trainable_time: learn each end time.
        solver: ``"dopri5"``, or a fixed-step ``"rk4"``, ``"midpoint"`` or ``"euler"`` (with ``steps`` steps).
        rtol: relative tolerance of the adaptive solver.
        atol: absolute tolerance of the adaptive solver.
        steps: steps of a fixed-step solver.
        adjoint: gradients by the adjoint method (constant memory in the solver's steps).
        trace: ``"exact"``, ``"hutchinson"`` or ``"auto"`` (see above).
        noise: Hutchinson's noise, ``"rademacher"`` or ``"gaussian"``.
        kinetic_energy: RNODE's kinetic energy weight.
        jacobian_norm: RNODE's Jacobian Frobenius norm weight.
        normalization: ``"actnorm"``, ``"batchnorm"`` or ``None``, before each block.

    Example:
        >>> import torch
        >>> from torchnf import FFJORD, Flow
        >>> flow = Flow(FFJORD(2, hidden=(16, 16)))
        >>> flow.log_prob(torch.zeros(4, 2)).shape
        torch.Size([4])
        >>> flow.bijection[0].trace
        'exact'
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        context_shape: ShapeLike | None = None,
        *,
        layers: int = 1,
        hidden: Sequence[int] = (64, 64, 64),
        activation: str = "tanh",
        time: float = 1.0,
        trainable_time: bool = True,
        solver: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        steps: int = 20,
        adjoint: bool = False,
        trace: Literal["auto", "exact", "hutchinson"] = "auto",
        noise: Noise = "rademacher",
        kinetic_energy: float = 0.0,
        jacobian_norm: float = 0.0,
        normalization: Normalization = None,
    ) -> None:
        features = vector_features(event_shape, "FFJORD")
        if not isinstance(layers, int) or isinstance(layers, bool) or layers < 1:
            raise ValueError(f"layers must be a positive int, got {layers!r}")
        if trace == "auto":
            trace = "exact" if features <= AUTO_EXACT_MAX_FEATURES else "hutchinson"
        parts: list[Bijection] = []
        for _ in range(layers):
            parts += normalization_layer(normalization, features)
            parts.append(
                ContinuousFlow(
                    features,
                    context_shape=context_shape,
                    hidden=hidden,
                    activation=activation,
                    time=time,
                    trainable_time=trainable_time,
                    solver=solver,
                    rtol=rtol,
                    atol=atol,
                    steps=steps,
                    adjoint=adjoint,
                    trace=trace,
                    noise=noise,
                    kinetic_energy=kinetic_energy,
                    jacobian_norm=jacobian_norm,
                )
            )
        super().__init__(parts)

    @property
    def last_nfe(self) -> int:
        """Dynamics evaluations of the last call, summed over the blocks."""
        return sum(part.last_nfe for part in self.bijections if isinstance(part, ContinuousFlow))
