"""The universal bijection suite: every entry of ``tests/bijection_registry.py`` must pass every test here.

A test receives a :class:`Subject`: a registered case instantiated by :meth:`Case.instantiate` (every parameter
perturbed, data-dependent state prepared, float64, evaluation mode), unconditional or conditional on a context of
shape ``case.context_shape``. Tests that hold in both directions also take a ``direction``: ``"forward"`` (data
to latent) or ``"inverse"`` (latent to data).

Set ``TORCHNF_LOGDET_REPORT=path`` to write a table of the log-det errors reached per case (run serially).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import pytest
import torch
from bijection_registry import REGISTRY, Case, ContextShape, data_points, random_context
from torch import Tensor, nn
from torch.testing import assert_close

from torchnf.bijections import ActNorm, BatchNorm, Bijection

Direction = Literal["forward", "inverse"]
OPPOSITE: dict[Direction, Direction] = {"forward": "inverse", "inverse": "forward"}

FLOAT32_ROUND_TRIP = {"rtol": 1e-5, "atol": 1e-5}
"""Float32 tolerance of reconstructions."""
SAME_COMPUTATION = {"rtol": 1e-12, "atol": 1e-12}
"""Float64 tolerance between two evaluations of one map that may differ only by rounding (e.g. batched matmul)."""
JACOBIAN_POINTS = 4
"""Points per test at which the log-det is compared with the autograd Jacobian."""


class Variant(NamedTuple):
    """A registered case and the context shape it is built with (``None``: unconditional)."""

    case: Case
    context_shape: ContextShape


def variants(where: Callable[[Case], bool] = lambda case: True, conditional_only: bool = False) -> list[Any]:
    """Test parameters: the unconditional and (when supported) conditional builds of the cases ``where`` holds."""
    return [
        pytest.param(Variant(case, shape), id=case.name if shape is None else f"{case.name}-context")
        for case in REGISTRY
        if where(case)
        for shape in case.context_shapes
        if shape is not None or not conditional_only
    ]


@functools.cache
def prototype(case: Case) -> Bijection:
    """The case's unconditional build, to inspect its structure when collecting tests."""
    return case.build(None)


def contains(layer: type[nn.Module]) -> Callable[[Case], bool]:
    """A predicate: the case's bijection has a ``layer`` among its modules."""
    return lambda case: any(isinstance(m, layer) for m in prototype(case).modules())


def has_parameters(case: Case) -> bool:
    """Whether the case's bijection has any parameter."""
    return any(True for _ in prototype(case).parameters())


@dataclass
class Subject:
    """A registered bijection instantiated for one test, with samplers of matching inputs and contexts."""

    case: Case
    bijection: Bijection
    context_shape: ContextShape
    dtype: torch.dtype

    def map(self, direction: Direction) -> Callable[..., tuple[Tensor, Tensor]]:
        """The bijection's map in ``direction`` (the forward one is called through the module, so hooks fire)."""
        return self.bijection if direction == "forward" else self.bijection.inverse

    def shape(self, direction: Direction) -> torch.Size:
        """The shape of one input point of ``direction``'s map."""
        return self.bijection.event_shape if direction == "forward" else self.bijection.latent_shape

    def points(self, direction: Direction, *batch: int, scale: float = 1.0, shift: float = 0.0) -> Tensor:
        """Inputs ``shift + scale * N(0, 1)`` of shape ``(*batch, *point_shape)`` for ``direction``'s map (data
        points of a bounded domain are uniform within it instead; see :func:`data_points`)."""
        if direction == "forward":
            return data_points(self.bijection, batch, self.dtype, scale, shift)
        return shift + scale * torch.randn(*batch, *self.shape(direction), dtype=self.dtype)

    def context(self, *batch: int) -> Tensor | None:
        """A standard normal context of batch shape ``batch``, or ``None`` for an unconditional build."""
        return random_context(self.context_shape, batch, self.dtype)


def make_subject(variant: Variant, dtype: torch.dtype = torch.float64, **options: Any) -> Subject:
    """Instantiate a variant (``options`` go to :meth:`Case.instantiate`)."""
    bijection = variant.case.instantiate(variant.context_shape, dtype=dtype, **options)
    return Subject(variant.case, bijection, variant.context_shape, dtype)


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same global random state."""
    torch.manual_seed(1234)


@pytest.fixture
def subject(request: pytest.FixtureRequest) -> Subject:
    """The variant given by indirect parametrization, instantiated the standard way."""
    return make_subject(request.param)


@pytest.fixture(params=["forward", "inverse"])
def direction(request: pytest.FixtureRequest) -> Direction:
    """The map under test: ``"forward"`` (data to latent) or ``"inverse"`` (latent to data)."""
    return request.param


def write_logdet_table(path: str, errors: dict[tuple[str, Direction], float]) -> None:
    """Write a Markdown table of the largest log-det error per case and direction."""
    lines = ["| case | forward | inverse | atol |", "|---|---|---|---|"]
    for case in REGISTRY:
        forward, inverse = (errors.get((case.name, d), float("nan")) for d in ("forward", "inverse"))
        lines.append(f"| {case.name} | {forward:.1e} | {inverse:.1e} | {case.atol:.0e} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def logdet_errors() -> Iterator[dict[tuple[str, Direction], float]]:
    """Collects the largest log-det error per case and direction; written out if ``TORCHNF_LOGDET_REPORT`` is set."""
    errors: dict[tuple[str, Direction], float] = {}
    yield errors
    path = os.environ.get("TORCHNF_LOGDET_REPORT")
    if path and errors:
        write_logdet_table(path, errors)


# -- every case ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", variants(), indirect=True)
def test_perturbed_map_is_not_identity(subject: Subject) -> None:
    """The perturbation leaves no map at its identity start; log-dets are non-zero unless volume-preserving."""
    x = subject.points("forward", 16)
    z, log_det = subject.bijection(x, subject.context(16))
    if z.shape == x.shape:  # a map that reshapes (a squeeze) is not the identity anyway
        assert (z - x).abs().max() > 1e-2
    if subject.case.volume_preserving:
        assert log_det.abs().max() == 0
    else:
        assert log_det.abs().max() > 1e-2


@pytest.mark.parametrize("subject", variants(), indirect=True)
def test_round_trip(subject: Subject, direction: Direction) -> None:
    """Mapping one way and back returns the input, and the two log-dets are opposite."""
    y, context = subject.points(direction, 16), subject.context(16)
    image, log_det = subject.map(direction)(y, context)
    back, log_det_back = subject.map(OPPOSITE[direction])(image, context)
    tolerance = {"rtol": subject.case.round_trip_atol, "atol": subject.case.round_trip_atol}
    assert_close(back, y, **tolerance)
    assert_close(log_det + log_det_back, torch.zeros_like(log_det), **tolerance)


@pytest.mark.parametrize("subject", variants(), indirect=True)
def test_log_det_matches_jacobian(
    subject: Subject, direction: Direction, logdet_errors: dict[tuple[str, Direction], float]
) -> None:
    """The returned log-det is log|det J| of the autograd Jacobian of the map, point by point."""
    jacobian_and_log_det = torch.func.jacrev(subject.map(direction), has_aux=True)
    errors = []
    for _ in range(JACOBIAN_POINTS):
        point = subject.points(direction)
        jacobian, log_det = jacobian_and_log_det(point, subject.context())
        logabsdet = torch.linalg.slogdet(jacobian.reshape(-1, point.numel())).logabsdet
        errors.append((log_det - logabsdet).abs().item())
    key = (subject.case.name, direction)
    logdet_errors[key] = max(logdet_errors.get(key, 0.0), *errors)
    assert max(errors) <= subject.case.atol


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)], ids=str)
@pytest.mark.parametrize("subject", variants(), indirect=True)
def test_batch_shapes(subject: Subject, direction: Direction, batch_shape: tuple[int, ...]) -> None:
    """Outputs are ``(*batch, *point_shape)`` and log-dets ``(*batch,)``, equal to those of the flattened batch."""
    assert subject.bijection.event_shape == subject.case.event_shape
    y, context = subject.points(direction, *batch_shape), subject.context(*batch_shape)
    image, log_det = subject.map(direction)(y, context)
    assert image.shape == (*batch_shape, *subject.shape(OPPOSITE[direction]))
    assert log_det.shape == batch_shape
    flat_context = None if context is None else context.reshape(-1, *subject.context_shape)
    flat_image, flat_log_det = subject.map(direction)(y.reshape(-1, *subject.shape(direction)), flat_context)
    assert_close(image, flat_image.reshape(image.shape), **SAME_COMPUTATION)
    assert_close(log_det, flat_log_det.reshape(batch_shape), **SAME_COMPUTATION)


@pytest.mark.parametrize("subject", variants(has_parameters), indirect=True)
def test_gradients_reach_every_parameter(subject: Subject, direction: Direction) -> None:
    """A loss on outputs and log-dets gives every parameter a non-zero gradient (none to declared unused ones)."""
    image, log_det = subject.map(direction)(subject.points(direction, 16), subject.context(16))
    loss = (image * torch.randn_like(image)).sum() + (log_det * torch.randn_like(log_det)).sum()
    loss.backward()
    unused = subject.case.unused_without_context if subject.context_shape is None else ()
    for name, parameter in subject.bijection.named_parameters():
        if parameter.numel() == 0:  # e.g. the input layer of a conditioner that keeps no dimension
            continue
        reached = parameter.grad is not None and bool(parameter.grad.abs().max() > 0)
        assert reached != (name in unused), f"{name}: gradient {'reached' if reached else 'missing'}"


@pytest.mark.parametrize("subject", variants(), indirect=True)
def test_large_inputs_give_finite_values_and_gradients(subject: Subject, direction: Direction) -> None:
    """Inputs of magnitude 1e3 give finite outputs, log-dets and gradients (w.r.t. parameters and inputs); a
    bijection with a bounded domain gives a log-det of -inf outside it (zero density) and finite outputs."""
    y = (1e3 * torch.randn(16, *subject.shape(direction), dtype=subject.dtype)).requires_grad_()
    image, log_det = subject.map(direction)(y, subject.context(16))
    if direction == "forward" and subject.bijection.domain is not None:
        assert image.isfinite().all() and (log_det == -torch.inf).all()
        log_det = torch.zeros_like(log_det)
    assert image.isfinite().all() and log_det.isfinite().all()
    (image.sum() + log_det.sum()).backward()
    assert y.grad is not None and y.grad.isfinite().all()
    for name, parameter in subject.bijection.named_parameters():
        assert parameter.grad is None or parameter.grad.isfinite().all(), name


@pytest.mark.parametrize("subject", variants(), indirect=True)
def test_state_dict_round_trip(subject: Subject, direction: Direction) -> None:
    """A fresh build (another seed) loaded with the state dict computes the same map: all state is saved."""
    fresh = make_subject(Variant(subject.case, subject.context_shape), seed=99, prepare=False)
    fresh.bijection.load_state_dict(subject.bijection.state_dict())
    y, context = subject.points(direction, 16), subject.context(16)
    assert_close(fresh.map(direction)(y, context), subject.map(direction)(y, context), rtol=0, atol=0)


@pytest.mark.parametrize("variant", variants())
def test_float32_round_trip(variant: Variant, direction: Direction) -> None:
    """In float32 the bijection computes in float32 and still inverts itself, to float32 precision."""
    subject = make_subject(variant, dtype=torch.float32)
    y, context = subject.points(direction, 16), subject.context(16)
    image, log_det = subject.map(direction)(y, context)
    back, log_det_back = subject.map(OPPOSITE[direction])(image, context)
    assert image.dtype == log_det.dtype == torch.float32
    tolerance = {"rtol": FLOAT32_ROUND_TRIP["rtol"], "atol": variant.case.float32_atol}
    assert_close(back, y, **tolerance)
    assert_close(log_det + log_det_back, torch.zeros_like(log_det), **tolerance)


# -- training and evaluation modes -----------------------------------------------------------------------------


@pytest.mark.parametrize("subject", variants(lambda case: case.train_eval_agree), indirect=True)
def test_train_and_eval_modes_agree(subject: Subject, direction: Direction) -> None:
    """Once prepared, the map does not depend on the module's training flag."""
    y, context = subject.points(direction, 16), subject.context(16)
    in_eval = subject.map(direction)(y, context)
    subject.bijection.train()
    assert_close(subject.map(direction)(y, context), in_eval, **SAME_COMPUTATION)


@pytest.mark.parametrize("subject", variants(lambda case: not case.train_eval_agree), indirect=True)
def test_training_forward_depends_on_the_batch(subject: Subject) -> None:
    """In training mode a point's image depends on the rest of its batch (batch statistics); in eval mode not."""
    x, context = subject.points("forward", 16), subject.context(16)
    other_batch = torch.cat([x[:4], subject.points("forward", 12, scale=3.0, shift=1.0)])

    def head_difference() -> float:
        head, other_head = (subject.bijection(batch, context)[0][:4] for batch in (x, other_batch))
        return (head - other_head).abs().max().item()

    assert head_difference() == 0
    subject.bijection.train()
    assert head_difference() > 1e-3


# -- context ---------------------------------------------------------------------------------------------------

CONDITIONAL = variants(conditional_only=True)


@pytest.mark.parametrize("subject", CONDITIONAL, indirect=True)
def test_context_changes_the_map(subject: Subject, direction: Direction) -> None:
    """A conditional build maps the same input differently under different contexts."""
    y = subject.points(direction, 16)
    first, second = (subject.map(direction)(y, subject.context(16))[0] for _ in range(2))
    assert (first - second).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("batch_shape", "context_batch_shape"),
    [((4,), ()), ((4,), (1,)), ((2, 3), (3,)), ((2, 3), (2, 1)), ((2, 3), (1, 1))],
    ids=str,
)
@pytest.mark.parametrize("subject", CONDITIONAL, indirect=True)
def test_context_broadcasts(
    subject: Subject, direction: Direction, batch_shape: tuple[int, ...], context_batch_shape: tuple[int, ...]
) -> None:
    """A context whose batch dimensions broadcast to the input's acts as the explicitly expanded context."""
    y, context = subject.points(direction, *batch_shape), subject.context(*context_batch_shape)
    expanded = context.expand(*batch_shape, *subject.context_shape)
    assert_close(subject.map(direction)(y, context), subject.map(direction)(y, expanded), **SAME_COMPUTATION)


@pytest.mark.parametrize("subject", CONDITIONAL, indirect=True)
def test_missing_context_raises(subject: Subject, direction: Direction) -> None:
    """A conditional build called without a context refuses with a ValueError instead of ignoring it."""
    with pytest.raises(ValueError, match="context"):
        subject.map(direction)(subject.points(direction, 4))


# -- normalization layers --------------------------------------------------------------------------------------


@contextmanager
def recording(bijection: Bijection, layer: type[Bijection]) -> Iterator[list[tuple[Any, Tensor, Tensor]]]:
    """Record ``(module, input, output)`` of every forward call of a ``layer`` module inside ``bijection``."""
    calls: list[tuple[Any, Tensor, Tensor]] = []
    handles = [
        module.register_forward_hook(lambda module, args, result: calls.append((module, args[0], result[0])))
        for module in bijection.modules()
        if isinstance(module, layer)
    ]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def assert_standardized(t: Tensor, atol: float, shared: torch.Size | None = None) -> None:
    """The batch ``t`` has mean 0 and (biased) variance 1 per coordinate, or per group of coordinates that share a
    parameter: dimensions where the parameter shape ``shared`` is 1 are pooled."""
    pooled = [0] + [1 + i for i, size in enumerate(shared or ()) if size == 1]
    mean, var = t.mean(pooled), t.var(pooled, unbiased=False)
    assert_close(mean, torch.zeros_like(mean), rtol=0, atol=1e-9)
    assert_close(var, torch.ones_like(var), rtol=0, atol=atol)


def actnorms(bijection: Bijection) -> list[ActNorm]:
    """The ActNorm layers of ``bijection``."""
    return [m for m in bijection.modules() if isinstance(m, ActNorm)]


@pytest.mark.parametrize("variant", variants(contains(ActNorm)))
def test_actnorm_initialization_standardizes_its_first_batch(variant: Variant) -> None:
    """Every ActNorm layer initializes on its first training-mode batch so that its output on it is standardized."""
    subject = make_subject(variant, prepare=False)
    with recording(subject.bijection.train(), ActNorm) as calls:
        subject.bijection(subject.points("forward", 64, scale=2.0, shift=1.0), subject.context(64))
    assert len(calls) == len(actnorms(subject.bijection)) > 0
    for layer, _, output in calls:
        assert layer.initialized
        assert_standardized(output, atol=1e-5, shared=layer.log_scale.shape)


@pytest.mark.parametrize("variant", variants(contains(ActNorm)))
def test_actnorm_initialization_survives_state_dict(variant: Variant) -> None:
    """A build loaded from a state dict is initialized: its next training forward leaves ActNorm unchanged (while
    that of a fresh, unloaded build re-initializes it)."""
    state = make_subject(variant).bijection.state_dict()
    for load in (True, False):
        subject = make_subject(variant, seed=99, prepare=False)
        if load:
            subject.bijection.load_state_dict(state)
        assert all(bool(layer.initialized) == load for layer in actnorms(subject.bijection))
        before = [p.clone() for layer in actnorms(subject.bijection) for p in layer.parameters()]
        subject.bijection.train()(subject.points("forward", 32, scale=3.0, shift=5.0), subject.context(32))
        after = [p for layer in actnorms(subject.bijection) for p in layer.parameters()]
        assert all(map(torch.equal, before, after)) == load


@pytest.mark.parametrize("subject", variants(contains(BatchNorm)), indirect=True)
def test_batchnorm_statistics(subject: Subject) -> None:
    """BatchNorm maps with its (prepared) running statistics in evaluation mode, leaving them unchanged, and
    standardizes with batch statistics in training mode, updating the running ones."""

    def running_statistics() -> dict[BatchNorm, tuple[Tensor, Tensor]]:
        layers = (m for m in subject.bijection.modules() if isinstance(m, BatchNorm))
        return {layer: (layer.running_mean.clone(), layer.running_var.clone()) for layer in layers}

    prepared = running_statistics()
    x, context = subject.points("forward", 64), subject.context(64)
    with recording(subject.bijection, BatchNorm) as evaluation_calls:
        subject.bijection(x, context)
    assert_close(running_statistics(), prepared, rtol=0, atol=0)
    with recording(subject.bijection.train(), BatchNorm) as training_calls:
        subject.bijection(x, context)
    assert len(evaluation_calls) == len(training_calls) == len(prepared) > 0
    for layer, x_eval, z_eval in evaluation_calls:
        mean, var = prepared[layer]
        assert not torch.equal(mean, torch.zeros_like(mean)), "the preparation left the default running mean"
        scale = torch.exp(layer.log_gamma - 0.5 * torch.log(var + layer.eps))
        assert_close(z_eval, (x_eval - mean) * scale + layer.beta, **SAME_COMPUTATION)
        assert not torch.equal(mean, layer.running_mean), "training did not update the running mean"
    for layer, _, z_train in training_calls:
        assert_standardized((z_train - layer.beta) * torch.exp(-layer.log_gamma), atol=1e-3)
