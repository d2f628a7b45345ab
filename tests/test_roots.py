"""The shared root finder :func:`torchnf.roots.monotone_inverse`: accuracy, bracketing, implicit gradients, errors."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.testing import assert_close

from torchnf.roots import default_tolerance, monotone_inverse

pytestmark = pytest.mark.usefixtures("one_thread")

DTYPES = [torch.float32, torch.float64]
ACCURACY = {torch.float32: 1e-5, torch.float64: 1e-12}
"""Relative-or-absolute error ``|x - x_true| <= tol * (1 + |x_true|)`` required of the solution: about a hundred
float32 epsilons, and float64 near the default tolerance (a final Newton step usually leaves it far below)."""


def log_sinh_slope(x: Tensor) -> Tensor:
    """``log cosh(x)`` without overflow."""
    return x.abs() + torch.log1p(torch.exp(-2 * x.abs())) - torch.log(torch.tensor(2.0, dtype=x.dtype))


def cube_root(y: Tensor) -> Tensor:
    return y.sign() * y.abs() ** (1 / 3)


Map = Callable[[Tensor], tuple[Tensor, Tensor]]
CASES: list[tuple[str, Map, list[float], Callable[[Tensor], Tensor] | None]] = [
    ("sinh", lambda x: (torch.sinh(x), log_sinh_slope(x)), [-1e8, -3.0, -1e-3, 0.0, 0.5, 7.0, 1e6], torch.asinh),
    ("exp", lambda x: (torch.exp(x), x), [1e-25, 1e-3, 0.7, 1.0, 40.0, 1e20], torch.log),
    ("affine-far", lambda x: (2 * x + 3, torch.full_like(x, math.log(2))), [-1e15, 3.0, 1e12], lambda y: (y - 3) / 2),
    ("cube", lambda x: (x**3, torch.log(3 * x**2)), [-1e6, -8.0, -1e-9, 0.0, 2e-6, 27.0, 1e6], cube_root),
    ("slow-tail", lambda x: (torch.atan(x) + 1e-3 * x, torch.log(1 / (1 + x**2) + 1e-3)), [-50.0, 1.0, 3.0], None),
]  # fmt: skip
"""(name, map returning its value and log-derivative, targets, exact inverse or ``None``)."""


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("name", "f", "targets", "exact"), CASES, ids=[case[0] for case in CASES])
def test_solutions_are_accurate(
    name: str, f: Map, targets: list[float], exact: Callable[[Tensor], Tensor] | None, dtype: torch.dtype
) -> None:
    """The solution is within the tolerance of the exact inverse (or, without one, of a float64 reference), including
    targets far outside the initial bracket ``[-1, 1]`` and a map with zero derivative (``x**3`` at 0)."""
    y = torch.tensor(targets, dtype=dtype)
    x, log_slope = monotone_inverse(f, y)
    assert x.dtype == log_slope.dtype == dtype
    reference = exact(y.double()) if exact is not None else monotone_inverse(f, y.double(), tol=1e-15)[0]
    assert ((x.double() - reference).abs() <= ACCURACY[dtype] * (1 + reference.abs())).all(), (x, reference)
    finite = log_slope.isfinite()  # -inf where the derivative vanishes
    assert_close(log_slope[finite], f(x)[1][finite])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_float64_reaches_machine_precision_where_newton_converges(dtype: torch.dtype) -> None:
    """On a smooth map with a well-conditioned root the residual is at rounding level, far below the tolerance."""
    y = torch.linspace(-20, 20, 41, dtype=dtype)
    x, _ = monotone_inverse(lambda x: (x + torch.sinh(x / 4), torch.log(1 + torch.cosh(x / 4) / 4)), y)
    residual = (x + torch.sinh(x / 4) - y).abs()
    assert (residual <= 4 * torch.finfo(dtype).eps * (1 + y.abs())).all()


def test_plateau_needs_bisection() -> None:
    """A nearly flat stretch between two steep rises (Newton overshoots it) is solved by the bisection fallback."""

    def f(x: Tensor) -> tuple[Tensor, Tensor]:
        a, b = torch.sigmoid(40 * (x + 2)), torch.sigmoid(40 * (x - 2))
        slope = 40 * (a * (1 - a) + b * (1 - b)) + 1e-6
        return a + b + 1e-6 * x, torch.log(slope)

    y = torch.tensor([0.2, 0.9999, 1.0, 1.001, 1.8], dtype=torch.float64)
    x, _ = monotone_inverse(f, y)
    assert_close(f(x)[0], y, rtol=0, atol=1e-12)


def test_each_element_is_independent_of_the_batch() -> None:
    """An element's solution is the same alone or in a batch: every element stops on its own criterion."""
    y = torch.tensor([-1e4, -0.3, 0.0, 2.0, 1e5], dtype=torch.float64)

    def f(x: Tensor) -> tuple[Tensor, Tensor]:
        return x + torch.tanh(3 * x), torch.log(1 + 3 / torch.cosh(3 * x) ** 2)

    together = monotone_inverse(f, y)[0]
    alone = torch.stack([monotone_inverse(f, value)[0] for value in y])
    assert torch.equal(together, alone)


def tanh_map(y: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """The inverse of ``x -> e^a x + b + tanh(x)``, whose derivative ``e^a + 1 - tanh^2`` is positive."""

    def f(x: Tensor) -> tuple[Tensor, Tensor]:
        return a.exp() * x + b + torch.tanh(x), torch.log(a.exp() + 1 - torch.tanh(x) ** 2)

    return monotone_inverse(f, y)


def test_implicit_gradients_pass_gradcheck() -> None:
    """Gradients of the solution and of its log-derivative with respect to targets and closed-over parameters match
    finite differences (float64)."""
    generator = torch.Generator().manual_seed(0)
    y, a, b = (3 * torch.randn(6, dtype=torch.float64, generator=generator).requires_grad_() for _ in range(3))
    assert torch.autograd.gradcheck(tanh_map, (y, a, b))


def test_implicit_gradients_equal_those_of_the_analytic_inverse() -> None:
    """For ``f(x) = sinh(e^a x) + b``, whose inverse is ``asinh(y - b) e^{-a}``, the implicit gradients (and the
    log-derivative's) equal autograd's through the closed form, to rounding."""
    generator = torch.Generator().manual_seed(1)
    y, a, b = (2 * torch.randn(8, dtype=torch.float64, generator=generator).requires_grad_() for _ in range(3))

    def f(x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.sinh(a.exp() * x) + b, a + log_sinh_slope(a.exp() * x)

    x, log_slope = monotone_inverse(f, y)
    exact = torch.asinh(y - b) * torch.exp(-a)
    assert_close(x, exact, rtol=1e-13, atol=1e-13)
    weights = torch.randn(2, 8, dtype=torch.float64, generator=generator)
    implicit = torch.autograd.grad((weights[0] * x + weights[1] * log_slope).sum(), (y, a, b))
    exact_log_slope = a + log_sinh_slope(a.exp() * exact)
    analytic = torch.autograd.grad((weights[0] * exact + weights[1] * exact_log_slope).sum(), (y, a, b))
    for got, expected in zip(implicit, analytic, strict=True):
        assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_gradients_reach_module_weights_and_work_under_jacrev() -> None:
    """Parameters of a module the map closes over get implicit gradients, and ``torch.func.jacrev`` gives the
    diagonal Jacobian ``1 / f'(x)``."""
    scale = nn.Linear(1, 1).double()
    y = torch.linspace(-1, 4, 5, dtype=torch.float64)

    def solve(y: Tensor) -> tuple[Tensor, Tensor]:
        def f(x: Tensor) -> tuple[Tensor, Tensor]:
            slope = 1 + scale.weight.squeeze() ** 2
            return slope * x + torch.sin(x) / 2, torch.log(slope + torch.cos(x) / 2)

        return monotone_inverse(f, y)

    x, log_slope = solve(y)
    x.sum().backward()
    assert scale.weight.grad is not None and scale.weight.grad.abs() > 0
    jacobian, log_slope_again = torch.func.jacrev(solve, has_aux=True)(y)
    assert_close(jacobian, torch.diag(torch.exp(-log_slope.detach())), rtol=1e-12, atol=1e-14)
    assert_close(log_slope_again, log_slope.detach())


def test_default_tolerance() -> None:
    assert default_tolerance(torch.float64) == 1e-12
    assert default_tolerance(torch.float32) == pytest.approx(8 * 2**-23)


def test_errors_are_explicit() -> None:
    """Non-finite targets, an empty bracket, targets outside the range and too few iterations raise with a message."""

    def tanh(x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.tanh(x), torch.log(1 - torch.tanh(x) ** 2)

    with pytest.raises(ValueError, match="finite"):
        monotone_inverse(tanh, torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="lower < upper"):
        monotone_inverse(tanh, torch.tensor([0.5]), 1.0, 1.0)
    with pytest.raises(ValueError, match="range of the map"):
        monotone_inverse(tanh, torch.tensor([0.5, 2.0]), max_expansions=8)
    with pytest.raises(RuntimeError, match="did not converge"):
        monotone_inverse(tanh, torch.tensor([0.5], dtype=torch.float64), max_iter=2)
