"""MADE's autoregressive structure and its one-dimension-at-a-time evaluation (:class:`SequentialMADE`)."""

from __future__ import annotations

import pytest
import torch

from torchnf.nn import MADE

ORDER = [3, 0, 4, 1, 2]


def _made(residual: bool = False, context: int = 0, features: int = 5) -> MADE:
    torch.manual_seed(0)
    order = ORDER if features == 5 else None
    return MADE(features, 3, (16, 16), order, context, residual=residual, zero_init=False).double()


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("context", [0, 2], ids=["unconditional", "conditional"])
def test_outputs_depend_only_on_earlier_inputs(residual: bool, context: int) -> None:
    made = _made(residual, context)
    x, c = torch.randn(5, dtype=torch.float64), torch.randn(context, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: made(v, c if context else None), x)  # (D, P, D)
    position = {d: k for k, d in enumerate(ORDER)}
    for d in range(5):
        for e in range(5):
            if position[e] >= position[d]:
                assert jacobian[d, :, e].abs().max() == 0, (d, e)


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("context", [0, 2], ids=["unconditional", "conditional"])
@pytest.mark.parametrize("batch_shape", [(), (7,), (2, 3)], ids=["unbatched", "flat", "nested"])
def test_sequential_matches_full_passes(residual: bool, context: int, batch_shape: tuple[int, ...]) -> None:
    """Set in the order, every dimension's parameters equal the full pass's at the final inputs."""
    made = _made(residual, context)
    x = torch.randn(*batch_shape, 5, dtype=torch.float64)
    c = torch.randn(*batch_shape, context, dtype=torch.float64) if context else None
    full = made(x, c)
    steps = made.sequential(torch.Size(batch_shape), c)
    for d in ORDER:
        params = steps.parameters(d)
        assert params.shape == (*batch_shape, 3)
        torch.testing.assert_close(params, full[..., d, :], rtol=0, atol=1e-12)
        steps.set_input(d, x[..., d])


def test_sequential_single_dimension_and_gradients() -> None:
    made = _made(features=1, context=2)
    c = torch.randn(4, 2, dtype=torch.float64)
    steps = made.sequential(torch.Size([4]), c)
    torch.testing.assert_close(steps.parameters(0), made(torch.zeros(4, 1, dtype=torch.float64), c)[..., 0, :])
    steps.parameters(0).sum().backward()
    assert all(p.grad is not None for p in made.parameters())


def test_sequential_needs_its_context() -> None:
    with pytest.raises(ValueError, match="needs a context"):
        _made(context=2).sequential(torch.Size([3]))
