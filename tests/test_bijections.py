"""The universal bijection suite: every entry of ``tests/bijection_registry.py`` must pass every test here.

Bijections are instantiated through :meth:`Case.instantiate` (perturbed parameters, prepared data-dependent
state, float64, evaluation mode) unless a test says otherwise. Tests that apply to both directions take a
``direction`` ("forward": data to latent, "inverse": latent to data).

Set ``TORCHNF_LOGDET_REPORT=path`` to write a table of the log-det errors reached per case (run serially).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import pytest
import torch
from bijection_registry import REGISTRY, Case, ContextShape, random_context
from torch import Tensor, nn
from torch.testing import assert_close

from torchnf.bijections import ActNorm, BatchNorm, Bijection

Direction = Literal["forward", "inverse"]
DIRECTIONS: tuple[Direction, ...] = ("forward", "inverse")
OPPOSITE: dict[Direction, Direction] = {"forward": "inverse", "inverse": "forward"}
ROUND_TRIP = {"rtol": 1e-9, "atol": 1e-9}
"""Float64 tolerance of exact reconstructions."""
SAME_COMPUTATION = {"rtol": 1e-12, "atol": 1e-12}
"""Float64 tolerance between two evaluations of the same map that may only differ by rounding."""
JACOBIAN_POINTS = 4


def contains(case: Case, layer: type[nn.Module]) -> bool:
    """Whether the case's bijection has a ``layer`` among its modules."""
    return any(isinstance(m, layer) for m in case.build(None).modules())


def has_parameters(case: Case) -> bool:
    """Whether the case's bijection has any parameter."""
    return any(True for _ in case.build(None).parameters())


def variant_params(cases: list[Case], context_only: bool = False) -> list[object]:
    """``(case, context_shape)`` parameters: every case without context, and conditional builds when supported."""
    return [
        pytest.param(case, shape, id=case.name if shape is None else f"{case.name}-context")
        for case in cases
        for shape in case.context_shapes
        if shape is not None or not context_only
    ]


def case_params(cases: list[Case]) -> list[object]:
    """One parameter per case, identified by its name."""
    return [pytest.param(case, id=case.name) for case in cases]


@dataclass
class Subject:
    """A registered bijection instantiated for one test, with samplers of matching inputs and contexts."""

    case: Case
    bijection: Bijection
    context_shape: ContextShape

    def map(self, direction: Direction) -> Callable[..., tuple[Tensor, Tensor]]:
        """The bijection's map in ``direction`` (called through the module, so hooks fire)."""
        return self.bijection if direction == "forward" else self.bijection.inverse

    def shape(self, direction: Direction) -> torch.Size:
        """The shape of one input point of ``direction``'s map."""
        return self.bijection.event_shape if direction == "forward" else self.bijection.latent_shape

    def points(self, direction: Direction, *batch: int, scale: float = 1.0) -> Tensor:
        """Standard normal inputs (times ``scale``) of shape ``(*batch, *point_shape)`` for ``direction``."""
        dtype = next(self.bijection.parameters(), torch.empty((), dtype=torch.float64)).dtype
        return scale * torch.randn(*batch, *self.shape(direction), dtype=dtype)

    def context(self, *batch: int) -> Tensor | None:
        """A random context of batch shape ``batch``, or ``None`` for an unconditional build."""
        return random_context(self.context_shape, batch, torch.float64)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(1234)


@pytest.fixture(params=DIRECTIONS)
def direction(request: pytest.FixtureRequest) -> Direction:
    return request.param


def make_subject(case: Case, context_shape: ContextShape) -> Subject:
    """Instantiate ``case`` as the suite tests it: perturbed, prepared, float64, evaluation mode."""
    return Subject(case, case.instantiate(context_shape), context_shape)


@pytest.fixture(scope="session")
def logdet_errors() -> Iterator[dict[tuple[str, Direction], float]]:
    """Collects the largest log-det error per case and direction; writes them to ``$TORCHNF_LOGDET_REPORT``."""
    errors: dict[tuple[str, Direction], float] = {}
    yield errors
    path = os.environ.get("TORCHNF_LOGDET_REPORT")
    if path and errors:
        rows = [f"| {c.name} | {errors.get((c.name, 'forward'), float('nan')):.1e} "
                f"| {errors.get((c.name, 'inverse'), float('nan')):.1e} | {c.atol:.0e} |"
                for c in REGISTRY if (c.name, "forward") in errors]
        header = ["| case | forward | inverse | atol |", "|---|---|---|---|"]
        with open(path, "w") as f:
            f.write("\n".join(header + rows) + "\n")


# -- every case ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "context_shape"), variant_params(REGISTRY))
def test_perturbed_map_is_not_identity(case: Case, context_shape: ContextShape) -> None:
    """The perturbation leaves no map at its identity start, and log-dets are non-zero unless volume-preserving."""
    s = make_subject(case, context_shape)
    x = s.points("forward", 16)
    z, log_det = s.bijection(x, s.context(16))
    assert s.bijection.event_shape == case.event_shape
    assert (z - x).abs().max() > 1e-2
    assert (log_det.abs().max() == 0) if case.volume_preserving else (log_det.abs().max() > 1e-2)


@pytest.mark.parametrize(("case", "context_shape"), variant_params(REGISTRY))
def test_round_trip(case: Case, context_shape: ContextShape, direction: Direction) -> None:
    """Mapping one way and back returns the input, and the two log-dets are opposite."""
    s = make_subject(case, context_shape)
    y, context = s.points(direction, 16), s.context(16)
    image, log_det = s.map(direction)(y, context)
    back, log_det_back = s.map(OPPOSITE[direction])(image, context)
    assert_close(back, y, **ROUND_TRIP)
    assert_close(log_det + log_det_back, torch.zeros_like(log_det), **ROUND_TRIP)


@pytest.mark.parametrize(("case", "context_shape"), variant_params(REGISTRY))
def test_log_det_matches_jacobian(
    case: Case,
    context_shape: ContextShape,
    direction: Direction,
    logdet_errors: dict[tuple[str, Direction], float],
) -> None:
    """The returned log-det is log|det J| of the autograd Jacobian, point by point."""
    s = make_subject(case, context_shape)
    fn = s.map(direction)
    errors = []
    for _ in range(JACOBIAN_POINTS):
        point, context = s.points(direction), s.context()
        jacobian, log_det = torch.func.jacrev(lambda p, c=context: fn(p, c), has_aux=True)(point)
        square = jacobian.reshape(-1, point.numel())
        errors.append((log_det - torch.linalg.slogdet(square).logabsdet).abs().item())
    key = (case.name, direction)
    logdet_errors[key] = max(logdet_errors.get(key, 0.0), *errors)
    assert max(errors) <= case.atol


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)], ids=str)
@pytest.mark.parametrize(("case", "context_shape"), variant_params(REGISTRY))
def test_batch_shapes(
    case: Case, context_shape: ContextShape, direction: Direction, batch_shape: tuple[int, ...]
) -> None:
    """Outputs are ``(*batch, *point_shape)`` and log-dets ``(*batch,)``, equal to those of the flattened batch."""
    s = make_subject(case, context_shape)
    y, context = s.points(direction, *batch_shape), s.context(*batch_shape)
    image, log_det = s.map(direction)(y, context)
    assert image.shape == (*batch_shape, *s.shape(OPPOSITE[direction]))
    assert log_det.shape == batch_shape
    flat_context = None if context is None else context.reshape(-1, *context_shape)
    flat_image, flat_log_det = s.map(direction)(y.reshape(-1, *s.shape(direction)), flat_context)
    assert_close(image, flat_image.reshape(image.shape), **SAME_COMPUTATION)
    assert_close(log_det, flat_log_det.reshape(batch_shape), **SAME_COMPUTATION)


@pytest.mark.parametrize(("case", "context_shape"), variant_params(REGISTRY))
def test_large_inputs_give_finite_values_and_gradients(
    case: Case, context_shape: ContextShape, direction: Direction
) -> None:
    """Inputs of magnitude 1e3 give finite outputs, log-dets and gradients (w.r.t. parameters and inputs)."""
    s = make_subject(case, context_shape)
    y = s.points(direction, 16, scale=1e3).requires_grad_()
    image, log_det = s.map(direction)(y, s.context(16))
    assert image.isfinite().all() and log_det.isfinite().all()
    (image.sum() + log_det.sum()).backward()
    assert y.grad is not None and y.grad.isfinite().all()
    for name, parameter in s.bijection.named_parameters():
        assert parameter.grad is None or parameter.grad.isfinite().all(), name
