r"""Continuous normalizing flows: Chen et al. 2018, *Neural ordinary differential equations*; Grathwohl et al.
2019, *FFJORD: free-form continuous dynamics for scalable reversible generative models*; with the kinetic and
Jacobian regularization (RNODE) of Finlay et al. 2020, *How to train your neural ODE: the world of Jacobian and
kinetic regularization*.

The map from data to latent is the flow of an ODE from time :math:`0` to :math:`T`, and the log-determinant
follows it by the instantaneous change of variables:

.. math::

    \frac{dz}{dt} = f(z, t, c), \quad z(0) = x, \quad z = z(T), \qquad
    \log\left|\det \frac{\partial z}{\partial x}\right| = \int_0^T \operatorname{tr}
        \frac{\partial f}{\partial z}\big(z(t), t, c\big)\, dt.

The inverse integrates from :math:`T` back to :math:`0`. The trace is exact (the sum of the :math:`D` diagonal
entries, from :math:`D` vector-Jacobian products) or Hutchinson's unbiased estimate
:math:`\epsilon^\top \frac{\partial f}{\partial z} \epsilon` with one :math:`\epsilon` per point and solve,
:math:`\mathbb{E}[\epsilon\epsilon^\top] = I`. The solver integrates in rescaled time :math:`s = t / T \in [0, 1]`
(:math:`\frac{dz}{ds} = T f(z, sT, c)`), so a learnable :math:`T` is an ordinary parameter of the dynamics.

RNODE adds to the training loss :math:`\lambda_K \int_0^T \|f\|^2 dt + \lambda_J \int_0^T
\|\partial f / \partial z\|_F^2 dt` (averaged over points), integrated as two more states; the Frobenius norm is
exact with the exact trace and estimated by :math:`\|\epsilon^\top \partial f / \partial z\|^2` otherwise.

Solves that backpropagate through their steps use the library's own Runge-Kutta solvers (``_ode.py``), which
compose with ``torch.func`` (``torchdiffeq``'s use ``autograd.Function``\ s that ``torch.func`` refuses); the
adjoint method uses ``torchdiffeq.odeint_adjoint``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchdiffeq import odeint_adjoint

from ..nn.dynamics import DynamicsNet
from ._ode import ADAPTIVE_SOLVERS, SOLVERS, point_norm, solve
from .base import Bijection, ShapeLike, setting

__all__ = ["NOISES", "SOLVERS", "TRACES", "ContinuousFlow", "trace_method"]

Trace = Literal["exact", "hutchinson"]
Noise = Literal["rademacher", "gaussian"]
TRACES = ("exact", "hutchinson")
NOISES = ("rademacher", "gaussian")
TOLERANCE_FLOOR = 10
"""Tolerances below this many machine epsilons of the input's dtype are raised to it: a float32 solve cannot
reach a float64 tolerance, and would take ever smaller steps trying."""


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of {list(allowed)}")
    return value


class ContinuousFlow(Bijection):
    r"""A continuous normalizing flow (FFJORD): :math:`z = x + \int_0^T f(z(t), t, c)\, dt` with
    :math:`\log|\det \partial z / \partial x| = \int_0^T \operatorname{tr} \partial f / \partial z\, dt`
    (Chen et al. 2018; Grathwohl et al. 2019), with optional RNODE regularization (Finlay et al. 2020).

    Both directions cost one ODE solve; the number of dynamics evaluations of the last one is :attr:`last_nfe`
    (it grows as training makes the dynamics stiffer; RNODE keeps it down). Without ``adjoint``, gradients flow
    through the solver's steps (memory grows with the steps; the map composes with ``torch.func``). With
    ``adjoint=True``, ``torchdiffeq.odeint_adjoint`` solves the adjoint ODE backwards instead (memory constant in
    the steps, gradients exact up to the solver tolerance, one more solve per backward pass, no ``torch.func``).
    The adaptive solver's step control is Python control flow, so ``torch.compile(fullgraph=True)`` (and
    ``fit(compile=True)``) does not apply; a solve that exceeds ``max_steps`` raises ``ODESolverError``, a
    ``RuntimeError``.

    Args:
        event_shape: the shape of one point (flattened to :math:`D` values for the dynamics).
        dynamics: the network :math:`f`, called as ``dynamics(t, z, context)`` with ``z`` of shape ``(N, D)``, a
            scalar ``t`` and a flattened context ``(N, C)`` or ``None``; by default a
            :class:`~torchnf.nn.dynamics.DynamicsNet` of ``hidden`` widths and ``activation``. Its trace is taken
            with ``torch.func.vjp``, so it must be a function ``torch.func`` can differentiate (no in-place
            changes to its inputs).
        context_shape: the shape of a context, or ``None``.
        hidden: hidden widths of the default dynamics.
        activation: the smooth activation of the default dynamics.
        time: the end time :math:`T > 0`.
        trainable_time: learn :math:`T` as the softplus of a raw parameter (FFJORD).
        solver: ``"dopri5"`` (adaptive Dormand-Prince 5(4)) or a fixed-step ``"rk4"``, ``"midpoint"``,
            ``"euler"`` taking ``steps`` steps (approximate inverses and log-dets, of the discretization error).
        rtol: relative tolerance of the adaptive solver (per point; floored at a few epsilons of the dtype).
        atol: absolute tolerance of the adaptive solver.
        steps: steps of a fixed-step solver.
        adjoint: compute gradients by the adjoint method (see above).
        trace: ``"exact"`` (:math:`D` vector-Jacobian products per evaluation, no variance) or ``"hutchinson"``
            (one, an unbiased estimate; the log-det is then random in every mode).
        noise: Hutchinson's :math:`\epsilon`: ``"rademacher"`` (:math:`\pm 1`, lower variance) or ``"gaussian"``.
        kinetic_energy: RNODE weight :math:`\lambda_K \ge 0` of the kinetic energy.
        jacobian_norm: RNODE weight :math:`\lambda_J \ge 0` of the Jacobian's Frobenius norm.
        max_steps: the most steps an adaptive solve may take before it raises.

    Example:
        >>> import torch
        >>> layer = ContinuousFlow(2, hidden=(16, 16), rtol=1e-6, atol=1e-6)
        >>> x = torch.randn(8, 2)
        >>> z, log_det = layer(x)
        >>> x_back, log_det_back = layer.inverse(z)
        >>> z.shape, log_det.shape, layer.last_nfe > 0
        (torch.Size([8, 2]), torch.Size([8]), True)
    """

    def __init__(
        self,
        event_shape: ShapeLike,
        dynamics: nn.Module | None = None,
        context_shape: ShapeLike | None = None,
        *,
        hidden: Sequence[int] = (64, 64, 64),
        activation: str | Callable[[], nn.Module] = "tanh",
        time: float = 1.0,
        trainable_time: bool = False,
        solver: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        steps: int = 20,
        adjoint: bool = False,
        trace: Trace = "exact",
        noise: Noise = "rademacher",
        kinetic_energy: float = 0.0,
        jacobian_norm: float = 0.0,
        max_steps: int = 10_000,
    ) -> None:
        super().__init__(event_shape, context_shape)
        self.solver = _choice("solver", solver, SOLVERS)
        self.trace = _choice("trace", trace, TRACES)
        self.noise = _choice("noise", noise, NOISES)
        for name, value in (("rtol", rtol), ("atol", atol), ("time", time)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        for name, value in (("kinetic_energy", kinetic_energy), ("jacobian_norm", jacobian_norm)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
        for name, value in (("steps", steps), ("max_steps", max_steps)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.rtol, self.atol, self.steps, self.max_steps = float(rtol), float(atol), steps, max_steps
        self.adjoint = bool(adjoint)
        self.kinetic_energy, self.jacobian_norm = float(kinetic_energy), float(jacobian_norm)
        self.features = self.event_shape.numel()
        self.context_features = 0 if self.context_shape is None else self.context_shape.numel()
        self.dynamics = (
            DynamicsNet(self.features, self.context_features, hidden, activation) if dynamics is None else dynamics
        )
        raw_time = torch.tensor(time + math.log(-math.expm1(-time)))  # softplus^-1(time)
        self.trainable_time = bool(trainable_time)
        if self.trainable_time:
            self.raw_time = nn.Parameter(raw_time)
        else:
            self.register_buffer("raw_time", raw_time)
        self.last_nfe = 0
        """Dynamics evaluations of the last solve (one evaluation includes its trace's vector-Jacobian products)."""

    @property
    def time(self) -> Tensor:
        """The end time :math:`T = \\operatorname{softplus}(\\text{raw})`."""
        return F.softplus(self.raw_time)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._flow(x, context, 0.0, 1.0)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._flow(z, context, 1.0, 0.0)

    def _flow(self, y: Tensor, context: Tensor | None, s0: float, s1: float) -> tuple[Tensor, Tensor]:
        batch = self.batch_shape(y)
        c = None
        if self.context_shape is not None:
            if context is None:
                raise ValueError("this continuous flow was built with a context_shape and needs a context")
            c = self.expand_context(context, batch).reshape(-1, self.context_features)
        # Flatten first: a batch's points share the solver's steps, so equal flat batches give equal results.
        z = y.reshape(-1, self.features)
        regularize = self.training and (self.kinetic_energy > 0 or self.jacobian_norm > 0)
        state = torch.cat([z, z.new_zeros(z.shape[0], 3 if regularize else 1)], dim=-1)
        if z.shape[0] == 0:
            return y, y.new_zeros(batch)
        epsilon = None if self.trace == "exact" else self._noise(z)
        func = _Augmented(self, c, epsilon, regularize)
        end = self._solve(func, state, s0, s1, c)
        self.last_nfe = func.nfe
        if regularize:
            kinetic, frobenius = (s1 - s0) * end[:, self.features + 1], (s1 - s0) * end[:, self.features + 2]
            self.regularization = self.kinetic_energy * kinetic.mean() + self.jacobian_norm * frobenius.mean()
        return end[:, : self.features].reshape(y.shape), end[:, self.features].reshape(batch)

    def _noise(self, z: Tensor) -> Tensor:
        if self.noise == "gaussian":
            return torch.randn_like(z)
        return torch.randint(0, 2, z.shape, device=z.device).to(z.dtype) * 2 - 1

    def _solve(self, func: _Augmented, state: Tensor, s0: float, s1: float, c: Tensor | None) -> Tensor:
        eps = TOLERANCE_FLOOR * torch.finfo(state.dtype).eps
        rtol, atol = max(self.rtol, eps), max(self.atol, eps)
        controlled = self.features + 1  # the regularization states are not error-controlled
        if not self.adjoint:
            end, _ = solve(
                func, state, s0, s1, method=self.solver, rtol=rtol, atol=atol, controlled=controlled,
                steps=self.steps, max_steps=self.max_steps,
            )  # fmt: skip
            return end
        params = tuple(p for p in self.parameters() if p.requires_grad)
        if c is not None and c.requires_grad:
            params += (c,)
        options: dict[str, object] = {"step_size": 1.0 / self.steps}
        if self.solver in ADAPTIVE_SOLVERS:
            options = {"norm": lambda ratio: ratio.new_tensor(point_norm(ratio, controlled))}
        times = state.new_tensor([s0, s1])
        path = odeint_adjoint(
            lambda s, y: func(float(s.detach()), y), state, times, rtol=rtol, atol=atol, method=self.solver,
            options=options, adjoint_options={"norm": "seminorm"}, adjoint_params=params,
        )  # fmt: skip
        return path[-1]

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, solver={self.solver!r}, trace={self.trace!r}, rtol={self.rtol:g}, "
            f"atol={self.atol:g}, adjoint={self.adjoint}"
        )


@contextmanager
def trace_method(module: nn.Module, trace: Trace) -> Iterator[None]:
    """Within the ``with`` block, every :class:`ContinuousFlow` inside ``module`` computes its trace by ``trace``
    (e.g. ``"exact"`` to evaluate a model trained with Hutchinson's estimator); restored after.

    Example:
        >>> from torchnf import FFJORD, Flow
        >>> flow = Flow(FFJORD(2, hidden=(8,), trace="hutchinson"))
        >>> with trace_method(flow, "exact"):
        ...     log_prob = flow.log_prob(flow.sample(5))
    """
    _choice("trace", trace, TRACES)
    with setting(module, ContinuousFlow, "trace", trace):
        yield


class _Augmented:
    r"""The right-hand side of the augmented ODE in rescaled time :math:`s`, state ``(z, log_det[, K, J])``:

    .. math::

        \frac{d}{ds}(z, \ell, K, J) = \big(g,\ \operatorname{tr} \partial g / \partial z,\ \|g\|^2 / T,\
        \|\partial g / \partial z\|_F^2 / T\big), \qquad g = T f(z, sT, c),

    so that :math:`K` and :math:`J` integrate RNODE's terms over :math:`t \in [0, T]`. Counts its calls.
    """

    def __init__(self, flow: ContinuousFlow, context: Tensor | None, epsilon: Tensor | None, regularize: bool):
        self.flow, self.context, self.epsilon, self.regularize = flow, context, epsilon, regularize
        self.nfe = 0

    def __call__(self, s: float, state: Tensor) -> Tensor:
        self.nfe += 1
        flow = self.flow
        z = state[:, : flow.features]
        time = flow.time.to(z)

        def g(z: Tensor) -> Tensor:
            return time * flow.dynamics(time * s, z, self.context)

        dz, vjp = torch.func.vjp(g, z)
        if self.epsilon is None:
            basis = torch.eye(flow.features, dtype=z.dtype, device=z.device)
            rows = torch.func.vmap(vjp)(basis.unsqueeze(1).expand(-1, z.shape[0], -1))[0]  # rows[i, n] = e_i^T J_n
            trace = rows.diagonal(dim1=0, dim2=2).sum(-1)
            frobenius = rows.square().sum((0, 2)) if self.regularize else None
        else:
            (row,) = vjp(self.epsilon)  # epsilon^T J
            trace = (row * self.epsilon).sum(-1)
            frobenius = row.square().sum(-1) if self.regularize else None
        parts = [dz, trace.unsqueeze(-1)]
        if frobenius is not None:
            parts += [dz.square().sum(-1, keepdim=True) / time, frobenius.unsqueeze(-1) / time]
        return torch.cat(parts, dim=-1)
