"""The ``Flow`` API: log-densities, sampling, shapes, precision, devices and base distributions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from torchnf import IAF, MAF, NICE, DiagonalNormal, Flow, Preset, RealNVP

D = 2  # event size
C = 3  # context size
M = 4  # number of contexts in a batch of contexts
PRESETS = [RealNVP, MAF, IAF, NICE]


def small_flow(preset: type[Preset] = RealNVP, context_shape: int | None = None, **options: Any) -> Flow:
    """A small flow of the given preset (a few layers of narrow networks), built from a fixed seed."""
    torch.manual_seed(0)
    return Flow(preset(D, context_shape, **{"layers": 3, "hidden": (16, 16), **options}))


def perturb(flow: Flow, scale: float = 0.2, seed: int = 0) -> Flow:
    """Move every parameter away from its identity initialization by seeded noise, and switch to eval mode.

    Freshly built flows are the identity map (zero-initialized output layers), which would hide errors.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device))
    return flow.eval()


def test_readme_usage() -> None:
    """The README's usage, verbatim, fits a small NumPy data set and returns one log-density per row and samples."""
    x = np.random.default_rng(0).normal(size=(50, 2)) * [1.0, 0.3] + [2.0, -1.0]
    torch.manual_seed(0)

    from torchnf import Flow, RealNVP

    n_dim = x.shape[1]
    flow = Flow(RealNVP(n_dim))
    flow.fit(x)
    log_prob = flow.log_prob(x)
    x_new = flow.sample(50)

    assert log_prob.shape == (50,) and bool(torch.isfinite(log_prob).all())
    assert x_new.shape == (50, 2) and bool(torch.isfinite(x_new).all())
    untrained = Flow(RealNVP(n_dim)).eval().log_prob(x)  # the identity: a standard normal density
    # medians: a few of the 50 points may fall in the tails of a flow fitted to so few, far below the rest
    assert log_prob.median() > untrained.median() + 1.0, "fit did not improve on the untrained flow"


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("n", [5, (2, 3)], ids=["n=5", "n=(2,3)"])
@pytest.mark.parametrize("context_shape", [None, (C,), (M, C)], ids=["unconditional", "one-context", "context-batch"])
def test_shapes(preset: type[Preset], n: int | tuple[int, ...], context_shape: tuple[int, ...] | None) -> None:
    """Samples are ``(*n, *context_batch, D)`` and log-densities ``(*n, *context_batch)``, from every method."""
    flow = perturb(small_flow(preset, None if context_shape is None else C))
    context = None if context_shape is None else torch.randn(context_shape)
    sample_shape = (n,) if isinstance(n, int) else n
    context_batch = () if context_shape is None else context_shape[:-1]
    batch = (*sample_shape, *context_batch)

    for x in (flow.sample(n, context), flow.rsample(n, context)):
        assert x.shape == (*batch, D)
    x, log_prob = flow.sample_and_log_prob(n, context)
    assert x.shape == (*batch, D)
    assert log_prob.shape == batch
    assert flow.log_prob(x, context).shape == batch


def test_sample_is_graph_free_and_rsample_is_differentiable() -> None:
    """``sample`` and ``sample_and_log_prob`` build no autograd graph; ``rsample`` does, reaching every parameter."""
    flow = perturb(small_flow())
    assert not flow.sample(5).requires_grad
    assert not any(t.requires_grad for t in flow.sample_and_log_prob(5))

    x = flow.rsample(5)
    assert x.requires_grad
    x.square().sum().backward()
    for name, p in flow.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), f"no gradient reached {name}"


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "conditional"])
def test_sample_and_log_prob_agrees_with_log_prob(preset: type[Preset], conditional: bool) -> None:
    """The log-densities returned with samples equal ``log_prob`` of those samples (one is computed in the
    sampling direction, the other in the density direction, so this checks the two against each other)."""
    flow = perturb(small_flow(preset, C if conditional else None).double())
    flow.standardization.fit(3.0 + 2.0 * torch.randn(50, D, dtype=torch.float64))  # a non-trivial standardization
    context = torch.randn(M, C, dtype=torch.float64) if conditional else None
    x, log_prob = flow.sample_and_log_prob(100, context)
    torch.testing.assert_close(flow.log_prob(x, context), log_prob, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(np.random.default_rng(0).normal(size=(200, D)), id="numpy-float64"),
        pytest.param(torch.randn(200, D, generator=torch.Generator().manual_seed(0)), id="tensor-float32"),
    ],
)
def test_float64_end_to_end(data: np.ndarray | torch.Tensor) -> None:
    """A ``.double()`` flow fits, evaluates and samples in float64, converting float data of other types."""
    flow = small_flow().double()
    assert flow.dtype == torch.float64
    flow.fit(data, steps=20, progress=False)
    assert all(t.dtype == torch.float64 for t in (*flow.parameters(), *flow.buffers()) if t.is_floating_point())
    assert flow.log_prob(data).dtype == torch.float64
    assert flow.sample(10).dtype == torch.float64
    assert all(t.dtype == torch.float64 for t in flow.sample_and_log_prob(10))


def test_device_and_dtype_follow_to() -> None:
    """``flow.device`` and ``flow.dtype`` report where the parameters live and follow ``.to()``."""
    flow = small_flow()
    assert flow.device == torch.device("cpu")
    assert flow.dtype == torch.float32
    flow.to(torch.float64)
    assert flow.dtype == torch.float64
    assert flow.base.loc.dtype == torch.float64, "the base distribution's buffers must follow .to() as well"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_smoke() -> None:
    """On CUDA, CPU data is moved to the flow's device, and fitting, evaluation and sampling happen there."""
    flow = small_flow().to("cuda")
    data = np.random.default_rng(0).normal(size=(200, D))
    flow.fit(data, steps=5, progress=False)
    assert flow.device.type == "cuda"
    assert flow.log_prob(data).device.type == "cuda"
    assert flow.sample(10).device.type == "cuda"
    assert all(t.device.type == "cuda" for t in flow.sample_and_log_prob(10))


def test_custom_base_distribution() -> None:
    """A given base is used as is: its parameters belong to the flow and enter the density exactly."""
    base = DiagonalNormal(D)
    flow = perturb(Flow(RealNVP(D, layers=2, hidden=(16,)), base).double())
    assert flow.base is base
    assert {id(p) for p in base.parameters()} <= {id(p) for p in flow.parameters()}

    x = torch.randn(10, D, dtype=torch.float64)
    z, log_det = flow.bijection(x)
    torch.testing.assert_close(flow.log_prob(x), base.log_prob(z) + log_det)
    samples, log_prob = flow.sample_and_log_prob(10)
    torch.testing.assert_close(flow.log_prob(samples), log_prob)


def test_base_of_another_shape_is_refused() -> None:
    """A base whose event shape differs from the bijection's latent shape is refused at construction."""
    with pytest.raises(ValueError, match=r"event_shape \(3,\) differs from the bijection's latent_shape \(2,\)"):
        Flow(RealNVP(D), DiagonalNormal(3))


def test_density_integrates_to_one() -> None:
    """A perturbed (far from identity) RealNVP density integrates to 1 over the plane (numerically, on a grid)."""
    flow = perturb(small_flow(layers=4).double(), scale=0.1)
    axis = torch.linspace(-8.0, 8.0, 801, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1)

    def integral(density: torch.Tensor) -> float:
        return float(torch.trapezoid(torch.trapezoid(density, axis, dim=1), axis))

    with torch.no_grad():
        density = flow.log_prob(grid).exp()
    standard_normal = torch.exp(-0.5 * grid.square().sum(-1)) / (2 * math.pi)
    assert 0.5 * integral((density - standard_normal).abs()) > 0.1, "the perturbed flow is too close to identity"
    assert integral(density) == pytest.approx(1.0, abs=1e-2)


@pytest.mark.parametrize("conditional", [False, True], ids=["unconditional", "conditional"])
def test_calling_the_flow_is_log_prob(conditional: bool) -> None:
    """``flow(x)`` (the ``nn.Module`` call) is ``flow.log_prob(x)``."""
    flow = perturb(small_flow(context_shape=C if conditional else None))
    x = torch.randn(10, D)
    context = torch.randn(10, C) if conditional else None
    assert torch.equal(flow(x, context), flow.log_prob(x, context))


def test_deep_copy_is_an_independent_equal_flow() -> None:
    """``copy.deepcopy`` (as FlowMCMC's docs advise before refitting) copies weights, config and standardization."""
    import copy

    flow = perturb(small_flow())
    flow.standardization.fit(torch.randn(50, D) * 3 + 1)
    twin = copy.deepcopy(flow)
    x = torch.randn(7, D)
    torch.testing.assert_close(twin.log_prob(x), flow.log_prob(x))
    assert twin.bijection.config == flow.bijection.config
    with torch.no_grad():
        next(twin.parameters()).add_(1.0)
    assert not torch.equal(twin.log_prob(x), flow.log_prob(x))
