r"""Explicit Runge-Kutta solvers for the continuous flows, written with plain tensor operations.

They solve :math:`\frac{dy}{ds} = g(s, y)` from :math:`s_0` to :math:`s_1` (either order) for a state :math:`y`
of shape ``(N, S)``, and return only the end state. They exist next to ``torchdiffeq`` (used for the adjoint
method) because ``torchdiffeq``'s solvers use ``autograd.Function``\ s that ``torch.func`` transforms refuse, and
the library's bijections must compose with ``torch.func`` (e.g. ``jacrev`` of a whole flow).

``"dopri5"`` is the Dormand-Prince 5(4) pair (Dormand and Prince 1980, *A family of embedded Runge-Kutta
formulae*) with first-same-as-last stages, the starting step of Hairer, Norsett and Wanner (*Solving ordinary
differential equations I*, II.4) and the standard step-size controller:

.. math::

    \epsilon = \max_n \sqrt{\tfrac1{S'} \textstyle\sum_{i \le S'}
        \big(e_{ni} / (\mathrm{atol} + \mathrm{rtol} \max(|y_{ni}|, |\hat y_{ni}|))\big)^2}, \qquad
    h \leftarrow h \cdot \mathrm{clip}(0.9\, \epsilon^{-1/5}, 0.2, 10),

where :math:`e` is the embedded error estimate and only the first :math:`S'` columns of the state are controlled
(the per-point RMS, maximized over points, so every point meets the tolerance whatever its batch). Step sizes are
chosen on detached values: gradients flow through the Runge-Kutta stages of the steps taken, not through the
choice of the steps. ``"rk4"``, ``"midpoint"`` and ``"euler"`` take ``steps`` equal steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["ADAPTIVE_SOLVERS", "FIXED_SOLVERS", "SOLVERS", "ODESolverError", "point_norm", "solve"]

Dynamics = Callable[[float, Tensor], Tensor]

ADAPTIVE_SOLVERS = ("dopri5",)
FIXED_SOLVERS = ("rk4", "midpoint", "euler")
SOLVERS = ADAPTIVE_SOLVERS + FIXED_SOLVERS

# Dormand-Prince 5(4): nodes, stage coefficients, 5th-order weights and (5th - 4th)-order error weights.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)
_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0


class ODESolverError(RuntimeError):
    """The ODE solver could not reach the end time (too many steps, or a step size that underflowed)."""


def point_norm(ratio: Tensor, columns: int) -> float:
    """The largest per-point RMS of the first ``columns`` columns of ``ratio`` (``(N, S)``), as a float."""
    return float(ratio.detach()[:, :columns].square().mean(-1).sqrt().max())


def _combine(y: Tensor, h: float, weights: tuple[float, ...], ks: list[Tensor]) -> Tensor:
    """``y + h * sum(w_i k_i)`` over the non-zero weights."""
    for w, k in zip(weights, ks, strict=False):
        if w != 0.0:
            y = y + (h * w) * k
    return y


def solve(
    func: Dynamics,
    y0: Tensor,
    s0: float,
    s1: float,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    controlled: int | None = None,
    steps: int = 20,
    max_steps: int = 10_000,
) -> tuple[Tensor, int]:
    """Integrate ``dy/ds = func(s, y)`` from ``s0`` to ``s1``; return the end state and the number of evaluations.

    Args:
        func: the right-hand side, ``(s, y) -> dy/ds`` with ``y`` of shape ``(N, S)``.
        y0: the start state, ``(N, S)``.
        s0: the start time.
        s1: the end time (before ``s0`` integrates backwards).
        method: one of :data:`SOLVERS`.
        rtol: relative tolerance (adaptive solvers).
        atol: absolute tolerance (adaptive solvers).
        controlled: the number of leading columns under error control (default all).
        steps: the number of steps of a fixed-step solver.
        max_steps: the most steps, accepted or rejected, an adaptive solver may take before it gives up.
    """
    if method in FIXED_SOLVERS:
        return _fixed(func, y0, s0, s1, method, steps)
    if method != "dopri5":
        raise ValueError(f"unknown ODE solver {method!r}; expected one of {list(SOLVERS)}")
    return _dopri5(func, y0, s0, s1, rtol, atol, y0.shape[-1] if controlled is None else controlled, max_steps)


def _fixed(func: Dynamics, y: Tensor, s0: float, s1: float, method: str, steps: int) -> tuple[Tensor, int]:
    h = (s1 - s0) / steps
    for i in range(steps):
        s = s0 + i * h
        if method == "euler":
            y = y + h * func(s, y)
        elif method == "midpoint":
            y = y + h * func(s + h / 2, y + (h / 2) * func(s, y))
        else:
            k1 = func(s, y)
            k2 = func(s + h / 2, y + (h / 2) * k1)
            k3 = func(s + h / 2, y + (h / 2) * k2)
            k4 = func(s + h, y + h * k3)
            y = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return y, steps * {"euler": 1, "midpoint": 2, "rk4": 4}[method]


def _dopri5(
    func: Dynamics, y: Tensor, s0: float, s1: float, rtol: float, atol: float, columns: int, max_steps: int
) -> tuple[Tensor, int]:
    span = abs(s1 - s0)
    if span == 0.0 or y.numel() == 0:
        return y, 0
    direction = 1.0 if s1 > s0 else -1.0

    def error_ratio(error: Tensor, y_a: Tensor, y_b: Tensor) -> float:
        with torch.no_grad():
            return point_norm(error / (atol + rtol * torch.maximum(y_a.abs(), y_b.abs())), columns)

    k1 = func(s0, y)
    h, nfe = _initial_step(func, y, k1, s0, direction, rtol, atol, columns)
    h, nfe = min(h, span), nfe + 1
    s, taken = s0, 0
    while direction * (s1 - s) > 0:
        if taken >= max_steps:
            raise ODESolverError(
                f"the ODE solver took {max_steps} steps without reaching the end time; loosen rtol/atol, regularize "
                "the dynamics (kinetic_energy, jacobian_norm) or raise max_steps"
            )
        last = h >= direction * (s1 - s) * (1 - 1e-12)
        if last:
            h = direction * (s1 - s)
        ks = [k1]
        for c, a in zip(_C[1:], _A[1:], strict=True):
            ks.append(func(s + direction * c * h, _combine(y, direction * h, a, ks)))
        y_new = _combine(y, direction * h, _B, ks)
        k7 = func(s1 if last else s + direction * h, y_new)
        nfe, taken = nfe + 6, taken + 1
        ratio = error_ratio(_combine(torch.zeros_like(y), direction * h, _E, [*ks, k7]), y, y_new)
        accepted = ratio <= 1.0
        if accepted:
            s, y, k1 = (s1 if last else s + direction * h), y_new, k7
        if not math.isfinite(ratio):
            factor = _MIN_FACTOR
        else:
            factor = _MAX_FACTOR if ratio == 0 else min(_MAX_FACTOR, max(_MIN_FACTOR, _SAFETY * ratio**-0.2))
        h = h * (factor if accepted else min(1.0, factor))
        if h < 1e-12 * span and direction * (s1 - s) > 0:
            raise ODESolverError(
                "the ODE solver's step size underflowed (non-finite or extremely stiff dynamics?); check the inputs "
                "and the dynamics, or loosen rtol/atol"
            )
    return y, nfe


def _initial_step(
    func: Dynamics, y0: Tensor, f0: Tensor, s0: float, direction: float, rtol: float, atol: float, columns: int
) -> tuple[float, int]:
    """The starting step of Hairer, Norsett and Wanner (one extra evaluation); returns ``(h, evaluations)``."""
    with torch.no_grad():
        scale = atol + rtol * y0.abs()
        d0, d1 = point_norm(y0 / scale, columns), point_norm(f0 / scale, columns)
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        f1 = func(s0 + direction * h0, y0 + (direction * h0) * f0)
        d2 = point_norm((f1 - f0) / scale, columns) / h0
        big = max(d1, d2)
        h1 = max(1e-6, h0 * 1e-3) if not big > 1e-15 else (0.01 / big) ** 0.2
        h = min(100 * h0, h1)
    if not math.isfinite(h):
        h = 1e-6
    return h, 1
