"""Input validation at the public entry points.

Bad input must fail early with an exception whose message names the offending argument and says what was
expected; good input in another float type or container must be converted, not refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from torchnf import Compose, Flow, RealNVP
from torchnf.bijections import Coupling

D = 2  # event size of the test flows
C = 3  # context size of the conditional test flow
GOOD_DATA = torch.randn(64, D, generator=torch.Generator().manual_seed(0))

DataCall = Callable[[Flow, Any], object]


def tiny_flow(context_shape: int | None = None) -> Flow:
    """A small, fast RealNVP flow; validation does not depend on the architecture."""
    return Flow(RealNVP(D, context_shape, layers=2, hidden=(8,)))


@pytest.fixture
def flow() -> Flow:
    return tiny_flow()


@pytest.fixture
def conditional_flow() -> Flow:
    return tiny_flow(context_shape=C)


def _log_prob(flow: Flow, data: Any) -> object:
    return flow.log_prob(data)


def _fit(flow: Flow, data: Any) -> object:
    return flow.fit(data, steps=1, progress=False)


def _fit_validation(flow: Flow, data: Any) -> object:
    return flow.fit(GOOD_DATA, validation_data=data, steps=1, progress=False)


# Every public way data enters a flow, with the argument name its error messages must use.
FIT_ENTRY_POINTS = [
    pytest.param(_fit, "x", id="fit"),
    pytest.param(_fit_validation, "validation_data", id="fit-validation_data"),
]
DATA_ENTRY_POINTS = [pytest.param(_log_prob, "x", id="log_prob"), *FIT_ENTRY_POINTS]


def raises_naming(exception: type[Exception], *fragments: str) -> AbstractContextManager[pytest.ExceptionInfo[Any]]:
    """``pytest.raises`` for a message containing the literal ``fragments``, in order."""
    return pytest.raises(exception, match=".*".join(map(re.escape, fragments)))


# -- data: shape, emptiness, values and types -----------------------------------------------------------------


@pytest.mark.parametrize(("call", "name"), DATA_ENTRY_POINTS)
@pytest.mark.parametrize("shape", [(10, 3), (3,)], ids=["wrong-event-size", "1d-wrong-length"])
def test_wrong_trailing_shape_is_refused(flow: Flow, call: DataCall, name: str, shape: tuple[int, ...]) -> None:
    """Data whose trailing dimensions are not the event shape is refused, naming the expected and actual shapes."""
    with raises_naming(ValueError, f"{name} must have shape (..., {D})", f"got shape {shape}"):
        call(flow, torch.zeros(shape))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        pytest.param(_fit, "x", id="fit"),
        pytest.param(_fit_validation, "validation_data", id="fit-validation_data"),
    ],
)
def test_fit_needs_a_batch_of_points(flow: Flow, call: DataCall, name: str) -> None:
    """``fit`` takes ``(n, *event_shape)`` data: one bare point of the right shape is refused."""
    with raises_naming(ValueError, f"{name} must have shape (n, {D})"):
        call(flow, torch.zeros(D))


@pytest.mark.parametrize(("call", "name"), FIT_ENTRY_POINTS)
def test_fit_refuses_empty_data(flow: Flow, call: DataCall, name: str) -> None:
    """``fit`` needs at least one point of training (and of validation) data."""
    with raises_naming(ValueError, f"{name} is empty: it must hold at least one point of shape ({D},)"):
        call(flow, torch.zeros(0, D))


@pytest.mark.parametrize("shape", [(0, D), (3, 0, D)], ids=["0-points", "empty-inner-batch"])
def test_log_prob_of_an_empty_batch_is_empty(flow: Flow, shape: tuple[int, ...]) -> None:
    """``log_prob`` of an empty batch returns an empty result of the batch shape rather than raising."""
    assert flow.log_prob(torch.zeros(shape)).shape == shape[:-1]


@pytest.mark.parametrize(("call", "name"), DATA_ENTRY_POINTS)
@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_values_are_refused(flow: Flow, call: DataCall, name: str, bad_value: float) -> None:
    """A NaN or infinite value is refused, and the message says how many there are and where the first is."""
    data = torch.zeros(4, D)
    data[2, 1] = bad_value
    with raises_naming(ValueError, f"{name} contains 1 NaN or infinite value(s), the first at index (2, 1)"):
        call(flow, data)


@pytest.mark.parametrize(("call", "name"), DATA_ENTRY_POINTS)
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(torch.ones(4, D, dtype=torch.int64), "must be floating point, got dtype torch.int64", id="int"),
        pytest.param(torch.ones(4, D, dtype=torch.bool), "must be floating point, got dtype torch.bool", id="bool"),
        pytest.param(
            torch.ones(4, D, dtype=torch.complex64),
            "must be real floating point, got complex dtype torch.complex64",
            id="complex",
        ),
        pytest.param(np.ones((4, D), dtype=np.int32), "must be floating point, got dtype torch.int32", id="numpy-int"),
        pytest.param(np.full((4, D), "a"), "must be a numeric array or tensor, got an array of dtype <U1", id="str"),
        pytest.param(
            np.full((4, D), None, dtype=object),
            "must be a numeric array or tensor, got an array of dtype object",
            id="object",
        ),
    ],
)
def test_non_float_data_is_refused(flow: Flow, call: DataCall, name: str, data: Any, expected: str) -> None:
    """Integer, bool, complex and non-numeric data are refused with a TypeError naming the dtype."""
    with raises_naming(TypeError, f"{name} {expected}"):
        call(flow, data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(GOOD_DATA.numpy().astype(np.float64), id="numpy-float64"),
        pytest.param(GOOD_DATA.double(), id="tensor-float64"),
        pytest.param(GOOD_DATA.half(), id="tensor-float16"),
        pytest.param(GOOD_DATA.tolist(), id="nested-list"),
    ],
)
def test_other_float_data_is_converted(flow: Flow, data: Any) -> None:
    """Float data of another precision or container is converted to the flow's float32, by log_prob and fit."""
    expected = flow.log_prob(torch.as_tensor(data, dtype=torch.float32))
    log_prob = flow.log_prob(data)
    assert log_prob.dtype == torch.float32
    torch.testing.assert_close(log_prob, expected)
    flow.fit(data, steps=1, progress=False)
    assert all(p.dtype == torch.float32 for p in flow.parameters())


# -- contexts -------------------------------------------------------------------------------------------------

ContextCall = Callable[[Flow, Tensor, Any], object]


def _log_prob_given(flow: Flow, x: Tensor, context: Any) -> object:
    return flow.log_prob(x, context)


def _sample_given(flow: Flow, x: Tensor, context: Any) -> object:
    return flow.sample(len(x), context)


def _fit_given(flow: Flow, x: Tensor, context: Any) -> object:
    return flow.fit(x, context, steps=1, progress=False)


# Every public way a context enters a flow: with data, and for sampling (which ignores the data).
CONTEXT_WITH_DATA_ENTRY_POINTS = [pytest.param(_log_prob_given, id="log_prob"), pytest.param(_fit_given, id="fit")]
CONTEXT_ENTRY_POINTS = [*CONTEXT_WITH_DATA_ENTRY_POINTS, pytest.param(_sample_given, id="sample")]


@pytest.mark.parametrize("call", CONTEXT_ENTRY_POINTS)
def test_context_of_the_wrong_shape_is_refused(conditional_flow: Flow, call: ContextCall) -> None:
    """A context whose trailing dimensions are not the context shape is refused."""
    with raises_naming(ValueError, f"context must have shape (..., {C})"):
        call(conditional_flow, GOOD_DATA, torch.zeros(len(GOOD_DATA), C + 1))


@pytest.mark.parametrize("call", CONTEXT_ENTRY_POINTS)
def test_conditional_flow_needs_a_context(conditional_flow: Flow, call: ContextCall) -> None:
    """A conditional flow called without a context says so and gives the context shape it needs."""
    with raises_naming(ValueError, f"this flow is conditional: pass a context of shape (..., {C})"):
        call(conditional_flow, GOOD_DATA, None)


@pytest.mark.parametrize("call", CONTEXT_ENTRY_POINTS)
def test_unconditional_flow_refuses_a_context(flow: Flow, call: ContextCall) -> None:
    """Passing a context to an unconditional flow is an error, not silently ignored."""
    with raises_naming(ValueError, "this flow takes no context, but context was given"):
        call(flow, GOOD_DATA, torch.zeros(len(GOOD_DATA), C))


@pytest.mark.parametrize("call", CONTEXT_WITH_DATA_ENTRY_POINTS)
@pytest.mark.parametrize(
    ("n_points", "n_contexts"), [(len(GOOD_DATA), 3), (1, 5)], ids=["incompatible", "more-contexts-than-points"]
)
def test_context_batch_must_broadcast_to_the_data_batch(
    conditional_flow: Flow, call: ContextCall, n_points: int, n_contexts: int
) -> None:
    """A batch of contexts that cannot be broadcast to the batch of data points is refused, naming both."""
    expected = f"context has batch shape ({n_contexts},), which does not broadcast to the data's batch shape"
    with raises_naming(ValueError, expected, f"({n_points},)"):
        call(conditional_flow, GOOD_DATA[:n_points], torch.zeros(n_contexts, C))


@pytest.mark.parametrize("context_shape", [(C,), (1, C)], ids=["bare", "one-row"])
def test_fit_refuses_a_context_without_one_row_per_point(
    conditional_flow: Flow, context_shape: tuple[int, ...]
) -> None:
    """``fit`` needs ``(n, *context_shape)`` contexts; a single shared context is refused with a clear message."""
    with pytest.raises(ValueError, match="context must hold one context per point of x"):
        conditional_flow.fit(GOOD_DATA, torch.zeros(context_shape), steps=1, progress=False)


# -- sample counts --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [-1, 2.5, True, (2, -1), "3", None], ids=repr)
def test_bad_sample_count_is_refused(flow: Flow, n: Any) -> None:
    """A sample count must be a non-negative int or a tuple of them; bools and floats are not counts."""
    with raises_naming(ValueError, f"the number of samples must be a non-negative int or a tuple of them, got {n!r}"):
        flow.sample(n)


# -- fit options ----------------------------------------------------------------------------------------------

POSITIVE_INT_OPTIONS = [
    (name, value) for name in ("steps", "epochs", "batch_size", "eval_every") for value in (0, -3, 2.5)
]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"optimizer": "sgd"}, "unknown optimizer 'sgd'; expected 'adam', 'adamw' or a callable"),
        ({"lr_schedule": "step"}, "unknown lr_schedule 'step'; expected None, 'cosine', 'plateau' or a callable"),
        *[({name: value}, f"{name} must be a positive int, got {value!r}") for name, value in POSITIVE_INT_OPTIONS],
        *[({"lr": lr}, f"lr must be positive, got {lr}") for lr in (0.0, -1e-3)],
        *[({"validation_fraction": f}, f"validation_fraction must lie in [0, 1), got {f}") for f in (-0.1, 1.0, 1.5)],
    ],
    ids=repr,
)
def test_bad_fit_option_is_refused(flow: Flow, options: dict[str, Any], expected: str) -> None:
    """Each invalid fit option is refused by name, with the value given and what was expected."""
    with raises_naming(ValueError, expected):
        flow.fit(GOOD_DATA, progress=False, **options)


# -- presets and composition ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(lambda: RealNVP(D, activation="swish"), "unknown activation 'swish'; expected one of", id="act"),
        pytest.param(
            lambda: RealNVP(D, normalization="layernorm"),
            "unknown normalization 'layernorm'; expected None, 'actnorm' or 'batchnorm'",
            id="normalization",
        ),
        pytest.param(lambda: RealNVP((3, 8, 8)), "RealNVP models vectors; got event_shape (3, 8, 8)", id="image"),
        pytest.param(
            lambda: Compose([RealNVP(2), RealNVP(3)]),
            "Compose part 0 outputs shape (2,) but part 1 expects (3,)",
            id="compose-mismatch",
        ),
        pytest.param(
            lambda: Coupling(D, mask=torch.ones(D, dtype=torch.bool)),
            "the coupling mask keeps every dimension; at least one must be transformed",
            id="mask-keeps-all",
        ),
    ],
)
def test_bad_architecture_is_refused(build: Callable[[], object], expected: str) -> None:
    """Invalid preset options and inconsistent compositions fail at construction, saying what is wrong."""
    with raises_naming(ValueError, expected):
        build()


def test_flow_needs_a_bijection() -> None:
    """``Flow`` refuses a module that is not a Bijection and names the type it got."""
    with raises_naming(TypeError, "Flow needs a Bijection, got Linear"):
        Flow(torch.nn.Linear(D, D))  # type: ignore[arg-type]
