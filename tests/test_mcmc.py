"""The samplers of torchnf.mcmc: exactness on targets with known moments, what flows add, and the entry checks.

Moments are checked against the truth within 5 Monte Carlo standard errors, estimated from the spread of the
per-chain estimates across independent chains (plus a small floor), so the tolerances follow the chains' actual
efficiency. Every run is seeded.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from torchnf import Flow, RealNVP
from torchnf.bijections import Compose, ElementwiseAffine, LULinear
from torchnf.dequantization import UniformDequantization
from torchnf.mcmc import HMC, MALA, Chains, FlowMCMC, IndependentMetropolisHastings, NeuTra, sample

pytestmark = pytest.mark.usefixtures("one_thread")

MEAN = torch.tensor([1.0, -1.0])
COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]])


def gaussian(mean: Tensor, cov: Tensor) -> Callable[[Tensor], Tensor]:
    """The unnormalized log-density of N(mean, cov), in the dtype of the points."""
    precision = torch.linalg.inv(cov)

    def log_prob(x: Tensor) -> Tensor:
        d = x - mean.to(x.dtype)
        return -0.5 * ((d @ precision.to(x.dtype)) * d).sum(-1)

    return log_prob


def two_modes(x: Tensor) -> Tensor:
    """Equal mixture of N((-4, 0), I) and N((4, 0), I)."""
    shift = torch.tensor([4.0, 0.0], dtype=x.dtype)
    return torch.logaddexp(-0.5 * (x - shift).square().sum(-1), -0.5 * (x + shift).square().sum(-1))


def check_moments(chains: Chains, mean: Tensor, cov: Tensor, k: float = 5.0, floor: float = 0.02) -> None:
    """Pooled mean and covariance within ``k`` standard errors (from the spread over chains) of the truth."""
    x = chains.samples.double()
    per_chain_mean = x.mean(0)  # (chains, d)
    centered = x - per_chain_mean
    per_chain_cov = torch.einsum("dci,dcj->cij", centered, centered) / (x.shape[0] - 1)
    root_chains = math.sqrt(x.shape[1])
    for estimates, truth, name in ((per_chain_mean, mean, "mean"), (per_chain_cov, cov, "covariance")):
        estimate, se = estimates.mean(0), estimates.std(0) / root_chains
        error = (estimate - truth.double()).abs()
        assert bool((error <= k * se + floor).all()), f"{name} {estimate} vs {truth}: error {error}, se {se}"


def wide_flow(scale: float = 4.0, seed: int = 0) -> Flow:
    """An untrained RealNVP behind a fixed-at-start scaling: proposals about N(0, scale² I)."""
    torch.manual_seed(seed)
    wide = ElementwiseAffine(2)
    with torch.no_grad():
        wide.log_scale.fill_(-math.log(scale))
    return Flow(Compose([wide, RealNVP(2, layers=4, hidden=(32, 32))]))


def whitening_flow(mean: Tensor, cov: Tensor) -> Flow:
    """A flow whose map z = L^{-1}(x - mean) (cov = L L^T) sends N(mean, cov) exactly to N(0, I)."""
    w = torch.linalg.inv(torch.linalg.cholesky(cov))
    linear = LULinear(2, init="identity")
    with torch.no_grad():
        d = w.diagonal()
        linear.lower.copy_((w / d).tril(-1))
        linear.upper.zero_()
        linear.log_diag.copy_(d.log())
        linear.bias.copy_(-w @ mean)
    return Flow(linear)


# -- exactness of each sampler ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kernel", "warmup", "target"), [(MALA(), 300, 0.574), (HMC(leapfrog_steps=5), 500, 0.65)], ids=["mala", "hmc"]
)
def test_local_kernels_recover_a_correlated_gaussian(kernel: MALA | HMC, warmup: int, target: float) -> None:
    chains = sample(
        gaussian(MEAN, COV),
        kernel,
        chains=16,
        draws=400,
        warmup=warmup,
        initial=torch.zeros(16, 2),
        seed=0,
        progress=False,
    )
    check_moments(chains, MEAN, COV)
    assert abs(float(chains.acceptance[kernel.name].mean()) - target) < 0.1
    assert chains.step_size is not None and bool((chains.step_size == chains.step_size[0]).all())


def test_independence_sampler_is_exact_with_a_poor_flow() -> None:
    """Proposal N(-0.5, 3²) for the target N(1, 1.5²): wrong scale and location, still the right moments."""
    flow = Flow(ElementwiseAffine(1))
    with torch.no_grad():  # x = (z - t) e^{-s}: scale e^{-s} = 3, mean -t e^{-s} = -0.5
        flow.bijection.log_scale.fill_(-math.log(3.0))
        flow.bijection.shift.fill_(0.5 / 3.0)
    chains = sample(
        gaussian(torch.tensor([1.0]), torch.tensor([[2.25]])),
        IndependentMetropolisHastings(flow),
        chains=16,
        draws=500,
        warmup=20,
        seed=0,
        progress=False,
    )
    check_moments(chains, torch.tensor([1.0]), torch.tensor([[2.25]]))
    assert 0.3 < float(chains.acceptance["flow"].mean()) < 0.8


def test_independence_sampler_accepts_everything_with_a_perfect_flow() -> None:
    torch.manual_seed(0)
    flow = Flow(RealNVP(2, layers=2, hidden=(16,)))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))  # a non-trivial flow
    chains = sample(
        flow.log_prob, IndependentMetropolisHastings(flow), chains=8, draws=50, warmup=0, seed=0, progress=False
    )
    assert float(chains.acceptance["flow"].min()) > 0.999


def test_neutra_with_a_whitening_flow_accepts_where_plain_hmc_fails() -> None:
    """Correlation 0.95: HMC steps of 0.5 exceed the stability limit 2·sqrt(0.05) in x, not in the whitened z."""
    mean, cov = MEAN, torch.tensor([[1.0, 0.95], [0.95, 1.0]])
    flow, target, start = whitening_flow(mean, cov), gaussian(mean, cov), mean.expand(16, 2)
    fixed = HMC(step_size=0.5, leapfrog_steps=3, jitter=0.0)
    neutra = sample(target, NeuTra(flow, fixed), chains=16, draws=100, warmup=0, initial=start, seed=0, progress=False)
    plain = sample(target, fixed, chains=16, draws=100, warmup=0, initial=start, seed=0, progress=False)
    assert float(neutra.acceptance["hmc"].mean()) > 0.95
    assert float(plain.acceptance["hmc"].mean()) < 0.2
    adapted = sample(
        target, NeuTra(flow, HMC(leapfrog_steps=3)), chains=16, draws=300, warmup=150, seed=0, progress=False
    )
    check_moments(adapted, mean, cov)
    assert all(not p.requires_grad or p.grad is None for p in flow.parameters())
    assert all(p.requires_grad for p in flow.parameters())


def test_flow_mcmc_balances_two_modes_that_mala_cannot_leave() -> None:
    start = torch.tensor([-4.0, 0.0]).expand(16, 2)
    local = sample(two_modes, MALA(), chains=16, draws=200, warmup=100, initial=start, seed=0, progress=False)
    assert float((local.samples[..., 0] > 0).float().mean()) == 0.0  # never leaves the mode it started in

    sampler = FlowMCMC(wide_flow(), local_steps=5, refit=True, refit_steps=10)
    chains = sample(two_modes, sampler, chains=16, draws=200, warmup=150, initial=start, seed=0, progress=False)
    weight = float((chains.samples[..., 0] > 0).float().mean())
    assert abs(weight - 0.5) < 0.1
    assert chains.info["refits"] == 15 and len(chains.info["flow_acceptance"]) == 15
    assert chains.info["flow_acceptance"][-1] > chains.info["flow_acceptance"][0]  # the refits help
    assert set(chains.acceptance) == {"mala", "flow"}


def test_kernels_reject_proposals_outside_the_support() -> None:
    """A half-normal: log_target is -inf for x <= 0, so such proposals are rejected and chains stay inside."""

    def half_normal(x: Tensor) -> Tensor:
        inside = (x > 0).all(-1)
        return torch.where(inside, -0.5 * x.square().sum(-1), -math.inf)

    for kernel in (MALA(), HMC(leapfrog_steps=4)):
        chains = sample(
            half_normal, kernel, chains=8, draws=100, warmup=50, initial=torch.ones(8, 1), seed=0, progress=False
        )
        assert bool((chains.samples > 0).all())
        assert bool(torch.isfinite(chains.log_prob).all())


# -- reproducibility, dtypes, the result ------------------------------------------------------------------------


def test_seed_reproduces_a_run_and_leaves_the_global_generator_alone() -> None:
    samplers = [FlowMCMC(wide_flow(), local_steps=2, refit=True, refit_every=5, refit_steps=2) for _ in range(2)]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    runs = [sample(two_modes, sampler, chains=4, draws=10, warmup=10, seed=7, progress=False) for sampler in samplers]
    assert torch.equal(runs[0].samples, runs[1].samples)
    assert torch.equal(runs[0].log_prob, runs[1].log_prob)
    assert torch.equal(torch.get_rng_state(), state)
    other = sample(two_modes, MALA(), chains=4, draws=10, warmup=5, initial=torch.zeros(4, 2), seed=8, progress=False)
    again = sample(two_modes, MALA(), chains=4, draws=10, warmup=5, initial=torch.zeros(4, 2), seed=9, progress=False)
    assert not torch.equal(other.samples, again.samples)


def test_float64_end_to_end() -> None:
    flow = wide_flow().double()
    target = gaussian(MEAN.double(), COV.double())
    for sampler in (IndependentMetropolisHastings(flow), NeuTra(flow, MALA()), FlowMCMC(flow, local_steps=2)):
        chains = sample(target, sampler, chains=4, draws=10, warmup=10, seed=0, progress=False)
        assert chains.samples.dtype == chains.log_prob.dtype == torch.float64, sampler
    initial = torch.zeros(4, 2, dtype=torch.float64)
    chains = sample(target, HMC(leapfrog_steps=2), chains=4, draws=10, warmup=10, initial=initial, progress=False)
    assert chains.samples.dtype == torch.float64 and chains.step_size.dtype == torch.float64


def test_chains_shapes_thinning_and_info() -> None:
    chains = sample(
        gaussian(MEAN, COV),
        MALA(),
        chains=3,
        draws=7,
        warmup=4,
        initial=torch.zeros(3, 2),
        thin=3,
        seed=0,
        progress=False,
    )
    assert chains.samples.shape == (7, 3, 2) and chains.log_prob.shape == (7, 3)
    assert (len(chains), chains.draws, chains.num_chains, chains.event_shape) == (7, 7, 3, torch.Size([2]))
    assert torch.equal(chains.flatten()[3:6], chains.samples[1])
    assert torch.allclose(chains.mean(), chains.flatten().mean(0))
    assert torch.allclose(chains.variance(), chains.flatten().var(0))
    assert chains.acceptance["mala"].shape == (3,) and chains.step_size.shape == (3,)
    assert chains.info["thin"] == 3 and chains.info["warmup"] == 4 and chains.info["sampler"] == "mala"
    assert chains.info["accept_prob"]["mala"].shape == (7, 3)
    assert torch.allclose(chains.log_prob, gaussian(MEAN, COV)(chains.samples))
    with pytest.raises(ValueError, match="log_prob must have shape"):
        Chains(torch.zeros(5, 2, 3), torch.zeros(5, 3))


def test_chains_delegate_to_the_diagnostics() -> None:
    pytest.importorskip("torchnf.mcmc.diagnostics")
    chains = sample(
        gaussian(MEAN, COV), MALA(), chains=4, draws=200, warmup=100, initial=torch.zeros(4, 2), seed=0, progress=False
    )
    assert chains.ess().shape == (2,) and bool((chains.ess() > 20).all())
    assert chains.rhat().shape == (2,) and bool((chains.rhat() < 1.1).all())
    assert "x[0]" in str(chains.summary(["x[0]", "x[1]"]))


def test_without_warmup_the_flow_is_not_refitted() -> None:
    flow = wide_flow()
    before = [p.detach().clone() for p in flow.parameters()]
    chains = sample(two_modes, FlowMCMC(flow, local_steps=1), chains=4, draws=20, warmup=0, seed=0, progress=False)
    assert chains.info["refits"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, flow.parameters(), strict=True))
    assert not flow.training


# -- entry checks -----------------------------------------------------------------------------------------------


def constant(x: Tensor) -> Tensor:
    return torch.zeros(x.shape[0])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: sample(two_modes, MALA(), chains=4), ValueError, "pass initial"),
        (lambda: sample(two_modes, MALA(), chains=4, initial=torch.zeros(5, 2)), ValueError, r"shape \(chains"),
        (lambda: sample(two_modes, MALA(), chains=4, initial=torch.zeros(4)), ValueError, r"shape \(chains"),
        (
            lambda: sample(two_modes, MALA(), chains=2, initial=torch.tensor([[0.0, 1], [math.nan, 0]])),
            ValueError,
            "NaN",
        ),
        (
            lambda: sample(two_modes, MALA(), chains=2, initial=torch.zeros(2, 2, dtype=torch.long)),
            TypeError,
            "floating point",
        ),
        (lambda: sample(lambda x: x, MALA(), chains=2, initial=torch.zeros(2, 2)), ValueError, r"shape \(2,\)"),
        (
            lambda: sample(lambda x: x.sum(-1) * math.nan, MALA(), chains=2, initial=torch.zeros(2, 2)),
            ValueError,
            "NaN at the starting point of chain",
        ),
        (
            lambda: sample(lambda x: -1 / x.sum(-1).abs(), MALA(), chains=2, initial=torch.zeros(2, 2)),
            ValueError,
            "-inf",
        ),
        (lambda: sample(constant, MALA(), chains=2, initial=torch.zeros(2, 2)), ValueError, "differentiabl"),
        (lambda: sample(two_modes, "mala", chains=2), TypeError, "sampler must be"),
        (lambda: sample(two_modes, MALA(), chains=0, initial=torch.zeros(0, 2)), ValueError, "chains"),
        (lambda: sample(two_modes, MALA(), warmup=-1, initial=torch.zeros(16, 2)), ValueError, "warmup"),
        (lambda: sample(two_modes, MALA(), thin=0, initial=torch.zeros(16, 2)), ValueError, "thin"),
        (lambda: sample(two_modes, MALA(), seed="x", initial=torch.zeros(16, 2)), ValueError, "seed"),
        (lambda: sample(two_modes, MALA(), progress="yes", initial=torch.zeros(16, 2)), ValueError, "progress"),
        (
            lambda: sample(two_modes, IndependentMetropolisHastings(wide_flow()), chains=2, initial=torch.zeros(2, 3)),
            ValueError,
            "initial must have shape",
        ),
        (lambda: FlowMCMC(wide_flow(), local="nuts"), TypeError, "local must be"),
        (lambda: FlowMCMC(wide_flow(), local_steps=-1), ValueError, "local_steps"),
        (lambda: FlowMCMC(wide_flow(), refit_every=0), ValueError, "refit_every"),
        (lambda: NeuTra(wide_flow(), kernel=IndependentMetropolisHastings(wide_flow())), TypeError, "kernel must be"),
        (lambda: MALA(step_size=-1.0), ValueError, "step_size"),
        (lambda: MALA(target_acceptance=1.5), ValueError, "target_acceptance"),
        (lambda: HMC(leapfrog_steps=0), ValueError, "leapfrog_steps"),
        (lambda: HMC(jitter=1.0), ValueError, "jitter"),
        (
            lambda: IndependentMetropolisHastings(Flow(RealNVP(2), dequantization=UniformDequantization(2, 256))),
            ValueError,
            "dequantized",
        ),
        (lambda: NeuTra(Flow(RealNVP(2, context_shape=3))), ValueError, "conditional"),
        (lambda: IndependentMetropolisHastings(RealNVP(2)), TypeError, "torchnf.Flow"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(
    call: Callable[[], object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        call()


def test_a_target_that_turns_bad_mid_run_is_named() -> None:
    def misbehaving_far_out(x: Tensor) -> Tensor:
        return (-0.5 * x.square().sum(-1)).unsqueeze(-1) if x.abs().max() > 50 else -0.5 * x.square().sum(-1)

    chains = sample(
        misbehaving_far_out, MALA(step_size=0.1), chains=2, draws=5, warmup=0, initial=torch.zeros(2, 1), progress=False
    )
    assert chains.samples.shape == (5, 2, 1)
    with pytest.raises(ValueError, match="log_target must return"):
        sample(
            misbehaving_far_out,
            MALA(step_size=1e4),
            chains=2,
            draws=5,
            warmup=0,
            initial=torch.zeros(2, 1),
            progress=False,
        )
