"""The compiled path: ``torch.compile(fullgraph=True)`` of the main presets' log-density and training step.

``fullgraph=True`` turns any graph break into an error, so these tests prove that the whole forward pass (and its
backward) compiles as one graph. Compiling takes seconds per model, hence the tiny models.
"""

from __future__ import annotations

import pytest
import torch

from torchnf import MAF, SINF, CouplingRQNSF, Flow, MaskedAutoregressiveRQNSF, RealNVP
from torchnf.training import compiled_log_prob

PRESETS = {
    "RealNVP": lambda: RealNVP(3, layers=2, hidden=(8,)),  # with its default ActNorm
    # an interleaved split: the gathers whose backward torch 2.13's CPU compiler got wrong (see permute_last)
    "RealNVP-alternate": lambda: RealNVP(8, layers=2, hidden=(8,), mask="alternate"),
    "MaskedAutoregressiveRQNSF": lambda: MaskedAutoregressiveRQNSF(3, layers=2, hidden=(8,), bins=4),
    "MAF": lambda: MAF(3, layers=2, hidden=(8,)),
    "CouplingRQNSF": lambda: CouplingRQNSF(3, layers=2, hidden=(8,), bins=4),
}
SLOW = {"MAF", "CouplingRQNSF"}  # the default run compiles one affine and one spline preset, and the gathers


def _flow(name: str) -> Flow:
    torch.manual_seed(0)
    flow = Flow(PRESETS[name]())
    # ActNorm initialized, spline parameters off zero
    flow.fit(torch.randn(64, flow.event_shape[0]), steps=3, progress=False)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return flow


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in PRESETS])
def test_compiled_log_prob_and_gradients_match_eager(name: str) -> None:
    flow = _flow(name).train()
    x = 2 * torch.randn(32, flow.event_shape[0])
    compiled = compiled_log_prob(flow)
    for _ in range(2):  # the second call reuses the graph
        ours = compiled(x, None)
        ours_grads = torch.autograd.grad(ours.mean(), list(flow.parameters()), allow_unused=True)
    eager = flow.unchecked_log_prob(x)
    eager_grads = torch.autograd.grad(eager.mean(), list(flow.parameters()), allow_unused=True)
    torch.testing.assert_close(ours, eager, rtol=1e-5, atol=1e-5)
    for a, b in zip(ours_grads, eager_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_compiled_fit_trains() -> None:
    torch.manual_seed(0)
    flow = Flow(RealNVP(2, layers=2, hidden=(8,)))
    x = torch.randn(256, 2) * torch.tensor([3.0, 0.5]) + 1
    before = flow.log_prob(x).mean()
    history = flow.fit(x, steps=30, batch_size=64, compile=True, progress=False, seed=0)
    assert history.step[-1] == 30 and flow.log_prob(x).mean() > before


def test_compile_option_is_checked() -> None:
    flow = Flow(RealNVP(2, layers=1, hidden=(4,)))
    with pytest.raises(TypeError, match="compile must be True or False"):
        flow.fit(torch.randn(32, 2), steps=1, compile="yes")
    with pytest.raises(ValueError, match="compile applies to gradient fitting"):
        Flow(SINF(2)).fit(torch.randn(64, 2), compile=True)


def test_each_flow_compiles_in_a_cache_of_its_own() -> None:
    """torch allows only a few recompilations per code object; fitting flow after flow must not run into it."""
    with torch._dynamo.config.patch(recompile_limit=1):
        for dim in (2, 3, 4):  # each shape needs a graph of its own
            flow = Flow(RealNVP(dim, layers=1, hidden=(4,), normalization=None))
            assert compiled_log_prob(flow)(torch.randn(16, dim), None).shape == (16,)
