"""``Flow.as_distribution``: the flow as a :class:`torch.distributions.Distribution`, and as a Pyro distribution."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Distribution, Independent

from torchnf import MAF, Flow, RealNVP
from torchnf.dequantization import UniformDequantization
from torchnf.flow_distribution import FlowDistribution

D, C = 2, 3


def perturbed(flow: Flow) -> Flow:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator))
    return flow.eval()


@pytest.fixture
def conditional() -> Flow:
    torch.manual_seed(0)
    return perturbed(Flow(RealNVP(D, context_shape=C, layers=2, hidden=(8,))))


@pytest.mark.parametrize("context_batch", [(), (4,), (2, 4)], ids=["one", "batch", "batch-2d"])
def test_shapes_follow_torch_conventions(conditional: Flow, context_batch: tuple[int, ...]) -> None:
    """``batch_shape`` is the contexts' batch shape; samples are ``(*sample_shape, *batch_shape, *event_shape)``."""
    distribution = conditional.as_distribution(torch.randn(*context_batch, C))
    assert isinstance(distribution, Distribution)
    assert distribution.batch_shape == context_batch and distribution.event_shape == (D,)
    for draw in (distribution.sample, distribution.rsample):
        assert draw().shape == (*context_batch, D)
        assert draw((5, 3)).shape == (5, 3, *context_batch, D)
    x = distribution.sample((7,))
    assert distribution.log_prob(x).shape == (7, *context_batch)


def test_log_prob_is_the_flows(conditional: Flow) -> None:
    context = torch.randn(4, C)
    distribution = conditional.as_distribution(context)
    x = distribution.sample((6,))
    assert torch.equal(distribution.log_prob(x), conditional.log_prob(x, context))


def test_rsample_is_differentiable() -> None:
    """``rsample`` is reparameterized: its gradient reaches the flow's parameters (``sample``'s does not exist)."""
    flow = perturbed(Flow(MAF(D, layers=2, hidden=(8,))))
    distribution = flow.as_distribution()
    assert distribution.has_rsample and not distribution.sample((3,)).requires_grad
    distribution.rsample((3,)).sum().backward()
    assert all(p.grad is not None for p in flow.parameters())


def test_expand_and_independent(conditional: Flow) -> None:
    """``expand`` broadcasts the batch (unconditional flows and batches of contexts), and torch's ``Independent``
    reinterprets batch dimensions as event dimensions."""
    distribution = conditional.as_distribution(torch.randn(4, C))
    expanded = distribution.expand((5, 4))
    assert expanded.batch_shape == (5, 4) and expanded.sample((2,)).shape == (2, 5, 4, D)
    joint = Independent(expanded, 2)
    assert joint.log_prob(expanded.sample()).shape == ()
    unconditional = perturbed(Flow(RealNVP(D))).as_distribution().expand((3,))
    x = unconditional.sample((2,))
    assert x.shape == (2, 3, D) and unconditional.log_prob(x).shape == (2, 3)
    with pytest.raises(ValueError, match="cannot expand"):
        distribution.expand((5,))


def test_support_and_validation() -> None:
    """The support is the real vectors (or the bijection's open box) and ``validate_args`` checks values."""
    flow = perturbed(Flow(RealNVP(D)))
    distribution = flow.as_distribution()
    assert distribution.support.check(torch.tensor([[0.0, 1e6]])).all()
    with pytest.raises(ValueError):
        FlowDistribution(flow, validate_args=True).log_prob(torch.tensor([float("nan"), 0.0]))


def test_bad_contexts_and_dequantized_flows_are_refused(conditional: Flow) -> None:
    with pytest.raises(ValueError, match="this flow is conditional"):
        conditional.as_distribution()
    with pytest.raises(ValueError, match=r"context must have shape \(\.\.\., 3\)"):
        conditional.as_distribution(torch.randn(4, 2))
    with pytest.raises(ValueError, match="takes no context"):
        Flow(RealNVP(D)).as_distribution(torch.randn(C))
    image = Flow(RealNVP(D), dequantization=UniformDequantization(D, levels=4))
    with pytest.raises(ValueError, match="dequantized"):
        image.as_distribution()


def test_pyro_model_with_a_flow_prior(conditional: Flow) -> None:
    """In a Pyro model, ``pyro.sample`` draws from the flow inside a plate, and the trace's log-density is the
    flow's."""
    pyro = pytest.importorskip("pyro")
    context = torch.randn(C)

    def model() -> torch.Tensor:
        with pyro.plate("points", 5):
            return pyro.sample("x", conditional.as_distribution(context))

    trace = pyro.poutine.trace(model).get_trace()
    trace.compute_log_prob()
    x = trace.nodes["x"]["value"]
    assert x.shape == (5, D)
    torch.testing.assert_close(trace.nodes["x"]["log_prob"], conditional.log_prob(x, context))


def test_pyro_svi_with_a_flow_guide() -> None:
    r"""A flow as the guide of Pyro's stochastic variational inference learns the posterior of a conjugate model:
    :math:`\theta \sim \mathcal N(0, I)`, :math:`y \mid \theta \sim \mathcal N(\theta, \tfrac14 I)` has posterior
    :math:`\mathcal N(0.8\,y, 0.2\,I)`. After 200 steps the loss has fallen, the flow's mean is within 0.25 of the
    posterior's and its standard deviations within 25% (seeds 0-4: mean errors at most 0.14, sd ratios 0.94-1.12)."""
    pyro = pytest.importorskip("pyro")
    import pyro.distributions as dist

    pyro.clear_param_store()
    torch.manual_seed(0)
    y = torch.tensor([1.0, 2.0])
    flow = Flow(RealNVP(D, layers=2, hidden=(16,)))

    def model() -> None:
        theta = pyro.sample("theta", dist.Normal(torch.zeros(D), 1.0).to_event(1))
        pyro.sample("y", dist.Normal(theta, 0.5).to_event(1), obs=y)

    def guide() -> None:
        pyro.module("flow", flow)
        pyro.sample("theta", flow.as_distribution())

    elbo = pyro.infer.Trace_ELBO(num_particles=16, vectorize_particles=True)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 2e-2}), elbo)
    flow.train()
    losses = [svi.step() for _ in range(200)]
    flow.eval()
    assert sum(losses[-20:]) < sum(losses[:20])
    draws = flow.sample(20000)
    assert float((draws.mean(0) - 0.8 * y).abs().max()) < 0.25
    assert float((draws.std(0) / 0.2**0.5 - 1).abs().max()) < 0.25
