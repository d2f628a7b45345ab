r"""The root finders of the library: every inverse without a closed form is computed here.

:func:`contractive_inverse` inverts residual maps :math:`x + g(x)` with a contractive :math:`g`; see its docstring.
Transformers without a closed-form inverse (deep sigmoidal flows, UMNN) solve :math:`f(x;\theta) = y`
elementwise with :func:`monotone_inverse`, in two stages:

1. **Solve, without gradients.** Expand a bracket :math:`[l, u]` until :math:`f(l) \le y \le f(u)` (the step
   doubles each time), then run a safeguarded Newton--bisection iteration (``rtsafe`` of Press et al.,
   *Numerical Recipes*, section 9.4): a Newton step is taken when it stays inside the current bracket and at
   least halves the step before last, otherwise the bracket is bisected. Every element stops on its own, once its
   step is at most :math:`\mathrm{tol}\,(1 + |x|)`, and is frozen from then on, so the result of an element never
   depends on the rest of the batch.
2. **Differentiate implicitly.** At the solution :math:`x^*` (a constant), the implicit function theorem gives
   :math:`\partial x/\partial y = 1/f'(x^*)` and :math:`\partial x/\partial\theta = -(\partial f/\partial\theta)
   / f'(x^*)`. Both are the gradients of

   .. math::

       x = x^* + \frac{\big(y - \operatorname{sg}(y)\big) - \big(f(x^*;\theta) - \operatorname{sg}(f(x^*;\theta))\big)}
       {\operatorname{sg}(f'(x^*;\theta))},

   where :math:`\operatorname{sg}` stops gradients: the fraction is exactly zero, so the value is :math:`x^*`,
   and one evaluation of :math:`f` at the detached solution carries the gradients. Unlike a custom
   ``autograd.Function`` this needs no hand-written backward, reaches every tensor :math:`f` closes over
   (conditioner outputs and module weights alike) and works under ``torch.func`` transforms (``jacrev``). Only
   first derivatives are those of the implicit function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["MonotoneMap", "contractive_inverse", "default_tolerance", "monotone_inverse"]

MonotoneMap = Callable[[Tensor], tuple[Tensor, Tensor]]
"""An elementwise strictly increasing map ``x -> (f(x), log f'(x))``, the transformers' convention."""


def default_tolerance(dtype: torch.dtype) -> float:
    """The default step tolerance: ``1e-12`` in float64, eight machine epsilons (about ``1e-6``) in float32."""
    return max(1e-12, 8.0 * torch.finfo(dtype).eps)


def _bracket(f: MonotoneMap, y: Tensor, lo: Tensor, hi: Tensor, max_expansions: int) -> tuple[Tensor, Tensor]:
    """Move ``[lo, hi]`` outward, doubling its width each time, until ``f(lo) <= y <= f(hi)`` elementwise."""
    for expansion in range(max_expansions + 1):
        left, right = f(lo)[0] > y, f(hi)[0] < y  # the root lies left of lo, right of hi
        if not bool((left | right).any()):
            return lo, hi
        if expansion < max_expansions:
            width = hi - lo
            lo, hi = (
                torch.where(left, lo - 2 * width, torch.where(right, hi, lo)),
                torch.where(right, hi + 2 * width, torch.where(left, lo, hi)),
            )
    raise ValueError(
        f"monotone_inverse could not bracket {int((left | right).sum())} target value(s) in {max_expansions} "
        "doublings: they lie outside the range of the map, or the map is not increasing"
    )


def monotone_inverse(
    f: MonotoneMap,
    y: Tensor,
    lower: Tensor | float = -1.0,
    upper: Tensor | float = 1.0,
    *,
    tol: float | None = None,
    max_iter: int = 200,
    max_expansions: int = 64,
) -> tuple[Tensor, Tensor]:
    r"""Solve :math:`f(x) = y` elementwise for an elementwise strictly increasing :math:`f`.

    Args:
        f: the map ``x -> (f(x), log f'(x))`` on tensors of ``y``'s shape; it may close over tensors that require
            gradients (parameters), which then receive implicit-function gradients.
        y: the targets.
        lower, upper: the initial bracket (floats or tensors broadcastable to ``y``, ``lower < upper``); it is
            moved and doubled at most ``max_expansions`` times until it contains the root.
        tol: an element stops when its last step is at most ``tol * (1 + |x|)`` (absolute near zero, relative
            for large ``|x|``); a final Newton step usually leaves the error far below. Default
            :func:`default_tolerance` of ``y``'s dtype.
        max_iter: the most Newton--bisection iterations.
        max_expansions: the most bracket doublings.

    Returns:
        ``(x, log f'(x))``, both differentiable: the gradients of ``x`` are those of the implicit function.

    Raises:
        ValueError: if ``y`` is not finite or the bracket cannot be made to contain the root.
        RuntimeError: if some element has not converged after ``max_iter`` iterations.
    """
    if not bool(torch.isfinite(y).all()):
        raise ValueError("monotone_inverse needs finite target values y")
    tol = default_tolerance(y.dtype) if tol is None else float(tol)
    with torch.no_grad():
        target = y.detach()
        lo = torch.as_tensor(lower, dtype=y.dtype, device=y.device).expand_as(target).clone()
        hi = torch.as_tensor(upper, dtype=y.dtype, device=y.device).expand_as(target).clone()
        if not bool((lo < hi).all()):
            raise ValueError("monotone_inverse needs lower < upper")
        lo, hi = _bracket(f, target, lo, hi, max_expansions)
        x = 0.5 * (lo + hi)
        step_before_last = hi - lo
        step = step_before_last.clone()
        done = torch.zeros_like(target, dtype=torch.bool)
        for _ in range(max_iter):
            value, log_slope = f(x)
            residual = value - target
            lo, hi = torch.where(residual < 0, x, lo), torch.where(residual > 0, x, hi)
            newton = residual / log_slope.exp()
            candidate = x - newton
            bisect = ~((candidate >= lo) & (candidate <= hi)) | (2 * newton.abs() > step_before_last.abs())
            step_before_last = step
            step = torch.where(bisect, 0.5 * (hi - lo), newton)
            x_next = torch.where(bisect, 0.5 * (lo + hi), candidate)
            converged = (step.abs() <= tol * (1 + x_next.abs())) | (residual == 0)
            x = torch.where(done, x, torch.where(residual == 0, x, x_next))
            done = done | converged
            if bool(done.all()):
                break
        else:
            raise RuntimeError(
                f"monotone_inverse: {int((~done).sum())} element(s) did not converge in {max_iter} iterations"
            )
    value, log_slope = f(x)
    inverse_slope = torch.exp(-log_slope.detach()).clamp(max=torch.finfo(y.dtype).max)
    correction = ((y - y.detach()) - (value - value.detach())) * inverse_slope  # zero, with the gradients of x
    x = x + correction
    return x, f(x)[1]


class _ImplicitSolve(torch.autograd.Function):
    r"""Stands for :math:`(I + J)^{-1} F` of a residual :math:`F` that is zero up to the solver's tolerance: zero
    in value; its backward maps an incoming gradient :math:`a` to :math:`w = (I + J)^{-\top} a`, solved by the
    fixed-point iteration :math:`w \leftarrow a - J^\top w` (a contraction, since :math:`\|J\| < 1`) with
    vector-Jacobian products of ``g`` at the solution."""

    @staticmethod
    def forward(ctx: Any, residual: Tensor, g: Callable[[Tensor], Tensor], solution: Tensor, tol: float) -> Tensor:
        ctx.g, ctx.tol = g, tol
        ctx.save_for_backward(solution)
        return torch.zeros_like(residual)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (solution,) = ctx.saved_tensors
        with torch.enable_grad():
            point = solution.detach().requires_grad_()
            value = ctx.g(point)
        w = grad
        for _ in range(MAX_ADJOINT_ITERATIONS):
            (vjp,) = torch.autograd.grad(value, point, w, retain_graph=True)
            w_next = grad - vjp
            if bool(((w_next - w).abs() <= ctx.tol * (1 + w_next.abs())).all()):
                w = w_next
                break
            w = w_next
        return w, None, None, None


MAX_ADJOINT_ITERATIONS = 1000
"""The most fixed-point iterations of the implicit backward pass of :func:`contractive_inverse`."""


def contractive_inverse(
    g: Callable[[Tensor], Tensor],
    y: Tensor,
    *,
    jacobian: Callable[[Tensor], Tensor] | None = None,
    tol: float | None = None,
    max_iter: int = 1000,
) -> Tensor:
    r"""Solve :math:`x + g(x) = y` row by row for a contraction :math:`g` (:math:`\operatorname{Lip}(g) < 1`),
    the inverse of an invertible residual block (Behrmann et al. 2019, *Invertible residual networks*).

    1. **Solve, without gradients,** by the Banach fixed-point iteration :math:`x_{k+1} = y - g(x_k)` from
       :math:`x_0 = y`, which converges geometrically at the rate :math:`\operatorname{Lip}(g)`. Each row of the
       batch stops once its step is at most :math:`\mathrm{tol}\,(1 + |x|)` in every coordinate, and is frozen
       from then on, so its result never depends on the rest of the batch.
    2. **Differentiate implicitly.** With :math:`F = x^* + g(x^*) - y` evaluated at the detached solution (zero
       up to the tolerance, carrying the gradients of :math:`y` and of the parameters of :math:`g`), the result
       is :math:`x = x^* - (I + J)^{-1} F`, where :math:`J = \partial g/\partial x(x^*)` is held constant: a Newton
       step whose gradients are those of the implicit function, :math:`\partial x/\partial y = (I + J)^{-1}` and
       :math:`\partial x/\partial\theta = -(I + J)^{-1}\partial g/\partial\theta`. Given ``jacobian`` (dense
       Jacobians ``(N, D, D)``, affordable for small ``D``) the step is a linear solve that works under
       ``torch.func`` transforms; otherwise the value is :math:`x^*` and the backward pass solves
       :math:`(I + J)^\top w = a` by fixed-point iteration (first derivatives only).

    Args:
        g: the residual branch on batches ``(N, D)``; it may close over tensors that require gradients.
        y: the targets, ``(N, D)``.
        jacobian: the Jacobians of ``g`` at a batch, or ``None`` (see above).
        tol: the step tolerance; default :func:`default_tolerance` of ``y``'s dtype.
        max_iter: the most iterations.

    Raises:
        ValueError: if ``y`` is not finite.
        RuntimeError: if some row has not converged after ``max_iter`` iterations (``g`` is not a contraction).
    """
    if not bool(torch.isfinite(y).all()):
        raise ValueError("contractive_inverse needs finite target values y")
    tol = default_tolerance(y.dtype) if tol is None else float(tol)
    with torch.no_grad():
        target = y.detach()
        x = target.clone()
        done = torch.zeros(target.shape[:-1], dtype=torch.bool, device=target.device)
        for _ in range(max_iter):
            x_next = target - g(x)
            converged = ((x_next - x).abs() <= tol * (1 + x_next.abs())).all(-1)
            x = torch.where(done.unsqueeze(-1), x, x_next)
            done = done | converged
            if bool(done.all()):
                break
        else:
            raise RuntimeError(
                f"contractive_inverse: {int((~done).sum())} point(s) did not converge in {max_iter} fixed-point "
                "iterations; is the residual branch a contraction?"
            )
    residual = x + g(x) - y
    if jacobian is None:
        return x - _ImplicitSolve.apply(residual, g, x, tol)
    identity = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    step = torch.linalg.solve(identity + jacobian(x).detach(), residual.unsqueeze(-1)).squeeze(-1)
    return x - step
