"""Reverse-KL (variational) fitting side by side: torchnf's ``fit_variational`` against a plain loop in each peer.

Usage (from the repository root): ``.venv/bin/python -m benchmarks.peers_variational [--steps N] [--samples S]
[--targets NAME ...] [--models MODEL ...] [--libraries [LIB ...]] [--threads T]``. Defaults: 2000 steps of 256
draws, the targets U1 and funnel, RealNVP and CouplingRQNSF, every installed peer, 1 thread. Prints the run's
facts (command, versions, load) and one Markdown table per target.

Each library builds the model the peers benchmark builds (``benchmarks/peers``: 5 layers, hidden [128, 128], 8 bins
on [-5, 5] with identity tails, no normalization layers, a standard normal base; the parameter counts are printed
and are equal; each library keeps its own affine parameterization) and fits it to an unnormalized target by
maximizing the ELBO with reparameterized draws: the same objective, optimizer, learning rate, draws per step and
number of steps everywhere, float32, one thread.

- ``fit_variational`` (torchnf): ``Flow.fit_variational(target, steps=N, samples=S, lr=1e-3, patience=None,
  seed=0)``, its defaults otherwise: Adam (torch's fused kernel), gradient norm clipped at 10, a divergence guard
  that skips non-finite or exploding steps, and the weights of the best evaluation (every 100 steps, by the mean
  ELBO since the previous one) kept at the end.
- ``torchnf loop``, ``zuko``, ``nflows``, ``normflows``, ``torchflows``: the hand-written loop :func:`plain_fit`:
  draw ``S`` points with their log-densities through the library's differentiable sampler (torchnf
  ``Flow.rsample_and_log_prob``, zuko ``flow().rsample_and_log_prob``, nflows ``Flow.sample_and_log_prob``,
  normflows ``NormalizingFlow.sample``), take the mean of ``log q - log p`` (the negative ELBO), backpropagate, clip
  the gradient norm at 10 and step the library's Adam (torch's default for the peers, the fused one for torchnf, as
  in ``benchmarks/peers``); a non-finite loss skips the step. The weights after the last step are kept.
- torchflows 1.2.1 cannot give a sample's log-density in the same pass: ``Flow.sample(n, return_log_prob=True)``
  returns ``log p(z) + log|det dx/dz|`` where it must subtract (checked against its own ``log_prob`` and an
  autograd Jacobian), so reverse KL through it maximizes the wrong objective (a trial run on U1: +inf log-weights for
  RealNVP, an "ELBO" of 3.44 above the true log Z of 1.88 for the spline flow). Its rows draw with
  ``Flow.sample`` and evaluate ``Flow.log_prob`` on the draws: right, at the cost of a second pass.

The "torchnf loop" row separates what the model costs from what ``fit_variational`` adds. The step time is the
median over the steps after the first ``WARMUP_STEPS`` (for ``fit_variational``, the time between consecutive calls
of the target, one per step); the fit time is the whole fit (a throwaway optimizer is made first, since torch
imports its compiler, 1-2 s, at the first optimizer of a process). The fitted models are then scored by the same
torchnf code: ``IS_DRAWS`` draws from each library's sampler (after ``torch.manual_seed(1)``, without gradients),
their log-weights ``log p - log q`` with the library's ``log_prob`` of the draws (a sampler whose own log-density
disagrees by more than ``LOG_Q_TOLERANCE`` is flagged), and
``torchnf.importance.ImportanceDiagnostics.from_log_weights``: the ELBO, the importance-sampling log Z with its
standard error (the truth is in each table's heading), the reverse ESS fraction and the Pareto k-hat (above 0.7:
the weights' estimates cannot be trusted). Every model is built after ``torch.manual_seed(0)`` and trained from
``torch.manual_seed(0)`` (``seed=0``).

Targets (:mod:`torchnf.targets`): ``U1``, ``RezendePotential("U1")`` (2-D, a ring with two lobes, log Z 1.8775);
``funnel``, ``NealFunnel(dim=10)`` (log Z 0); and, only when named, ``mixture``,
``GaussianMixture.two_modes(dim=2, separation=8)``, fitted without annealing, where reverse KL may settle on one
mode (the ELBO is then near -log 2).

Measured with ``.venv/bin/python -m benchmarks.peers_variational`` (12.8 minutes; torch 2.13.0+cpu, zuko 1.6.0,
nflows 0.14, normflows 1.7.3, torchflows 1.2.1; 1 thread of 2 cores shared with other jobs, load average 1.6 at the
start and 1.0 at the end), U1:

| model | library | parameters | step ms (median) | fit s | skipped steps | ELBO | IS log Z | reverse ESS | k-hat |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| RealNVP | fit_variational | 85,130 | 5.03 | 10.0 | 0 | 1.814 ± 0.004 | 1.879 ± 0.004 | 0.844 | 0.46 |
| RealNVP | torchnf loop | 85,130 | 4.75 | 9.7 | 0 | 1.812 ± 0.004 | 1.878 ± 0.004 | 0.833 | 0.47 |
| RealNVP | zuko | 85,130 | 9.25 | 19.0 | 0 | 1.731 ± 0.006 | 1.857 ± 0.005 | 0.787 | 0.63 |
| RealNVP | nflows | 85,130 | 6.01 | 12.5 | 0 | 1.671 ± 0.010 | 1.866 ± 0.005 | 0.806 | 0.55 |
| RealNVP | normflows | 85,130 | 5.56 | 11.1 | 0 | 1.813 ± 0.003 | 1.872 ± 0.004 | 0.866 | 0.32 |
| RealNVP | torchflows | 85,130 | 10.60 | 22.2 | 0 | 1.824 ± 0.003 | 1.871 ± 0.003 | 0.901 | 0.53 |
| CouplingRQNSF | fit_variational | 98,675 | 12.32 | 25.0 | 0 | 1.863 ± 0.002 | 1.877 ± 0.002 | 0.975 | 0.13 |
| CouplingRQNSF | torchnf loop | 98,675 | 12.31 | 25.6 | 0 | 1.863 ± 0.002 | 1.882 ± 0.005 | 0.805 | 0.52 |
| CouplingRQNSF | zuko | 98,675 | 24.01 | 52.3 | 0 | 1.788 ± 0.004 | 1.882 ± 0.005 | 0.816 | 0.25 |
| CouplingRQNSF | nflows | 98,675 | 16.75 | 35.3 | 0 | 1.853 ± 0.003 | 1.878 ± 0.002 | 0.956 | 0.30 |
| CouplingRQNSF | normflows | 98,675 | 17.72 | 41.0 | 0 | 1.863 ± 0.002 | 1.879 ± 0.002 | 0.970 | 0.74 |
| CouplingRQNSF | torchflows | 98,675 | 26.98 | 58.0 | 0 | 0.930 ± 0.009 | 1.613 ± 0.168 | 0.004 | 1.24 |

funnel:

| model | library | parameters | step ms (median) | fit s | skipped steps | ELBO | IS log Z | reverse ESS | k-hat |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| RealNVP | fit_variational | 92,850 | 5.32 | 11.1 | 0 | -0.069 ± 0.004 | -0.008 ± 0.004 | 0.875 | 0.42 |
| RealNVP | torchnf loop | 92,850 | 5.00 | 10.7 | 0 | -0.058 ± 0.003 | -0.005 ± 0.004 | 0.861 | 0.38 |
| RealNVP | zuko | 92,850 | 10.16 | 22.1 | 0 | -0.058 ± 0.003 | -0.000 ± 0.005 | 0.812 | 0.52 |
| RealNVP | nflows | 92,850 | 6.22 | 13.2 | 0 | -0.579 ± 0.006 | -0.177 ± 0.055 | 0.032 | 1.02 |
| RealNVP | normflows | 92,850 | 5.82 | 12.0 | 2 | -0.074 ± 0.003 | -0.019 ± 0.005 | 0.787 | 0.58 |
| RealNVP | torchflows | 92,850 | 11.88 | 27.4 | 0 | -0.072 ± 0.003 | -0.008 ± 0.005 | 0.817 | 0.45 |
| CouplingRQNSF | fit_variational | 160,575 | 17.65 | 39.0 | 0 | -0.432 ± 0.004 | -0.317 ± 0.032 | 0.087 | 0.62 |
| CouplingRQNSF | torchnf loop | 160,575 | 17.93 | 39.5 | 0 | -0.432 ± 0.004 | -0.317 ± 0.032 | 0.087 | 0.62 |
| CouplingRQNSF | zuko | 160,575 | 38.13 | 78.6 | 0 | -0.471 ± 0.005 | -0.364 ± 0.005 | 0.778 | 0.35 |
| CouplingRQNSF | nflows | 160,575 | 24.19 | 49.7 | 0 | -0.424 ± 0.004 | -0.333 ± 0.025 | 0.138 | 0.63 |
| CouplingRQNSF | normflows | 160,575 | 23.48 | 47.3 | 0 | -0.430 ± 0.004 | -0.360 ± 0.006 | 0.718 | 0.63 |
| CouplingRQNSF | torchflows | 160,575 | 41.92 | 85.3 | 0 | -1.842 ± 0.016 | -0.808 ± 0.114 | 0.008 | 0.85 |

- Speed. torchnf's step is the fastest in all four cases, against the fastest peer: 1.11x (RealNVP, U1; normflows),
  1.36x (CouplingRQNSF, U1; nflows), 1.09x (RealNVP, funnel; normflows), 1.33x (CouplingRQNSF, funnel; normflows).
  An earlier run of the same code (load average 0.3-1.0) gave 1.07x, 1.29x, 0.98x and 1.38x: on RealNVP over the
  funnel ``fit_variational`` (5.52 ms) was then 2% slower than normflows' plain loop (5.42 ms) while torchnf's own
  plain loop was the fastest (4.84 ms). zuko takes about twice torchnf's time; torchflows too, with its second pass.
- ``fit_variational``'s own work per step (the ESS statistic, the divergence guard, a walk over the modules for
  regularization terms) costs about 0.3 ms: 6% of a RealNVP step here (7% and 14% in the earlier run), lost in the
  noise of a spline step (-2% to +3% over the two runs).
- Quality. torchnf's fits are as good as the best peer's up to noise: ELBO 1.814 (RealNVP) and 1.863 (spline)
  against the true log Z 1.8775 on U1, where zuko and nflows stay 0.08 and 0.14 lower on RealNVP; on the funnel all
  RealNVPs but nflows' reach an ELBO of -0.06 to -0.07 (nflows: -0.58, k-hat 1.0), and every spline flow misses
  part of the funnel (IS log Z -0.32 to -0.81 against 0): the funnel reaches far beyond the splines' [-5, 5], where
  they are the identity. The reverse ESS and k-hat of one set of draws vary much more than the ELBO (the two
  torchnf rows of U1's spline flow, with the same ELBO: ESS 0.975 and 0.805). Both runs gave the same figures.
- torchflows' spline flow fits poorly on both targets (ELBO 0.93 on U1, -1.84 on the funnel) although its
  RealNVP is as good as the others'. normflows skipped 2 steps with a non-finite loss on the funnel.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import math
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from torchnf.importance import ImportanceDiagnostics
from torchnf.targets import GaussianMixture, NealFunnel, RezendePotential, Target

from .peers.adapter import Built
from .peers.environment import all_cores, footer
from .peers.libraries import LIBRARIES, Library, builder, probe
from .peers.spec import ModelSpec

__all__ = ["TARGETS", "main", "plain_fit"]

TARGETS: dict[str, Callable[[], Target]] = {
    "U1": lambda: RezendePotential("U1"),
    "mixture": lambda: GaussianMixture.two_modes(dim=2, separation=8),
    "funnel": lambda: NealFunnel(dim=10),
}
DEFAULT_TARGETS = ("U1", "funnel")
MODELS = ("RealNVP", "CouplingRQNSF")
PEERS = tuple(name for name in LIBRARIES if name not in ("torchnf", "torchnf-compiled"))
OURS = ("fit_variational", "torchnf loop")  # torchnf's rows
ROWS = (*OURS, *PEERS)
LR = 1e-3
MAX_GRAD_NORM = 10.0  # fit_variational's default, applied in the plain loops too
WARMUP_STEPS = 10  # steps left out of the median step time
IS_DRAWS = 10_000
LOG_Q_TOLERANCE = 1e-2  # float32 densities of a sampler and of log_prob agree far closer than this

SampleAndLogProb = Callable[[int], tuple[Tensor, Tensor]]


def differentiable_sampler(library: str, module: nn.Module) -> SampleAndLogProb:
    """``n -> (x, log q(x))`` through the library's own reparameterized sampler, differentiable in the parameters."""
    if library == "torchnf":
        return lambda n: module.rsample_and_log_prob(n)
    if library == "zuko":
        return lambda n: module().rsample_and_log_prob((n,))
    if library == "nflows":
        return lambda n: module.sample_and_log_prob(n)
    if library == "normflows":
        return lambda n: module.sample(n)
    if library == "torchflows":
        # its sample(return_log_prob=True) adds log|det dx/dz| where it must subtract it (torchflows 1.2.1), so the
        # density comes from a second pass through log_prob, which is right
        def sample_and_log_prob(n: int) -> tuple[Tensor, Tensor]:
            x = module.sample((n,))
            return x, module.log_prob(x)

        return sample_and_log_prob
    raise ValueError(f"no differentiable sampler known for {library!r}")


@dataclass(frozen=True)
class Fit:
    """What a fit took and gave.

    Attributes:
        step_ms: the median step time after warm-up, in milliseconds.
        seconds: the wall time of the whole fit.
        skipped: the steps skipped for a non-finite loss (the plain loops) or by the divergence guard.
    """

    step_ms: float
    seconds: float
    skipped: int


def _median_ms(times: Sequence[float]) -> float:
    kept = times[WARMUP_STEPS:] if len(times) > WARMUP_STEPS else times
    return 1e3 * statistics.median(kept) if kept else math.nan


def plain_fit(
    sample_and_log_prob: SampleAndLogProb,
    module: nn.Module,
    adam: Callable[[list[Tensor], float], torch.optim.Optimizer],
    log_target: Callable[[Tensor], Tensor],
    steps: int,
    samples: int,
) -> Fit:
    """The hand-written reverse-KL loop: ``steps`` Adam steps on the mean of ``log q - log p`` over ``samples``
    reparameterized draws, the gradient norm clipped at :data:`MAX_GRAD_NORM`; each step is timed."""
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = adam(params, LR)
    module.train()
    times, skipped = [], 0
    started = time.perf_counter()
    for _ in range(steps):
        start = time.perf_counter()
        x, log_q = sample_and_log_prob(samples)
        loss = (log_q - log_target(x)).mean()
        optimizer.zero_grad(set_to_none=True)
        if bool(torch.isfinite(loss)):
            loss.backward()
            nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            optimizer.step()
        else:
            skipped += 1
        times.append(time.perf_counter() - start)
    return Fit(_median_ms(times), time.perf_counter() - started, skipped)


def torchnf_fit(flow: nn.Module, log_target: Callable[[Tensor], Tensor], steps: int, samples: int) -> Fit:
    """``Flow.fit_variational``, each step timed by the calls of the target (one per step)."""
    calls: list[float] = []

    def timed_target(x: Tensor) -> Tensor:
        calls.append(time.perf_counter())
        return log_target(x)

    started = time.perf_counter()
    history = flow.fit_variational(
        timed_target,
        steps=steps,
        samples=samples,
        lr=LR,
        patience=None,
        eval_every=min(100, steps),
        seed=0,
        progress=False,
    )
    seconds = time.perf_counter() - started
    return Fit(_median_ms([b - a for a, b in itertools.pairwise(calls)]), seconds, history.skipped_steps)


def score(built: Built, sample_and_log_prob: SampleAndLogProb, log_target: Callable[[Tensor], Tensor]) -> str:
    """The importance-sampling diagnostics of a fitted model as table cells.

    The log-weights use the library's density ``log_prob`` of the draws; where the sampler's own log-density of
    them differs by more than :data:`LOG_Q_TOLERANCE` (so that the training signal was wrong), the cells say so.
    """
    built.module.eval()
    torch.manual_seed(1)
    with torch.no_grad():
        x, log_q_sampler = sample_and_log_prob(IS_DRAWS)
        log_q = built.log_prob(x)
        log_w = (log_target(x) - log_q).double()
    gap = float((log_q_sampler - log_q).abs().nan_to_num(math.inf).max())
    warning = f" (sampler's log q off by up to {gap:.3g})" if gap > LOG_Q_TOLERANCE else ""
    if not bool((torch.isfinite(log_w) | (log_w == -math.inf)).all()):
        return " | ".join([f"NaN or +inf log-weights{warning}", "-", "-", "-"])
    report = ImportanceDiagnostics.from_log_weights(log_w)
    return " | ".join(
        [
            f"{report.elbo:.3f} ± {report.elbo_se:.3f}{warning}",
            f"{report.log_normalizer:.3f} ± {report.log_normalizer_se:.3f}",
            f"{report.ess_fraction:.3f}",
            f"{report.pareto_k:.2f}",
        ]
    )


def run_row(row: str, model: str, target: Target, spec: ModelSpec, steps: int, samples: int) -> str:
    """One table row: build, fit and score ``model`` in the library of ``row``."""
    library = "torchnf" if row in OURS else row
    torch.manual_seed(0)
    built = builder(library)(model, target.dim, spec)
    params = sum(p.numel() for p in built.module.parameters() if p.requires_grad)
    sampler = differentiable_sampler(library, built.module)
    try:
        torch.manual_seed(0)
        if row == "fit_variational":
            fit = torchnf_fit(built.module, target, steps, samples)
        else:
            fit = plain_fit(sampler, built.module, built.adam, target, steps, samples)
        cells = score(built, sampler, target)
    except Exception as error:  # a library that fails is reported, not hidden
        message = " ".join(f"{type(error).__name__}: {error}".split()).replace("|", "/")
        return f"| {model} | {row} | {params:,} | failed: {message} | - | - | - | - | - | - |"
    return f"| {model} | {row} | {params:,} | {fit.step_ms:.2f} | {fit.seconds:.1f} | {fit.skipped} | {cells} |"


HEADER = (
    "| model | library | parameters | step ms (median) | fit s | skipped steps | ELBO | IS log Z | reverse ESS "
    "| k-hat |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(prog="python -m benchmarks.peers_variational", description=__doc__.split("\n")[0])
    top.add_argument("--steps", type=int, default=2000, help="optimizer steps per fit (default 2000)")
    top.add_argument("--samples", type=int, default=256, help="draws per step (default 256)")
    top.add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(DEFAULT_TARGETS), metavar="TARGET")
    top.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), metavar="MODEL")
    top.add_argument(
        "--libraries", nargs="*", choices=PEERS, default=list(PEERS), metavar="LIB", help="peers (none: torchnf alone)"
    )
    top.add_argument("--layers", type=int, default=5, help="coupling layers (default 5)")
    top.add_argument("--hidden", type=int, nargs="+", default=[128, 128], help="hidden widths (default 128 128)")
    top.add_argument("--bins", type=int, default=8, help="spline bins (default 8)")
    top.add_argument("--bound", type=float, default=5.0, help="splines on [-B, B] (default 5)")
    top.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print its Markdown report; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = ModelSpec(args.layers, tuple(args.hidden), args.bins, args.bound)
    libraries: list[Library] = [probe("torchnf"), *(probe(name) for name in args.libraries)]
    available = {lib.name for lib in libraries if lib.available}
    rows = [row for row in ROWS if ("torchnf" if row in OURS else row) in available]
    lines = [
        f"- command: `{shlex.join(['.venv/bin/python', '-m', 'benchmarks.peers_variational', *argv])}`",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- torch {torch.__version__}, Python {platform.python_version()}; torch.set_num_threads({args.threads}) of "
        f"{all_cores()} cores; float32",
        f"- models: layers={spec.layers}, hidden={list(spec.hidden)}, bins={spec.bins}, bound={spec.bound:g}; "
        f"{args.steps} steps of {args.samples} draws, Adam lr {LR:g}, gradient norm clipped at {MAX_GRAD_NORM:g}",
        f"- load average at start (1 / 5 / 15 min): {_load()}",
        "- libraries: " + ", ".join(f"{lib.name} {lib.version}" for lib in libraries if lib.available),
    ]
    lines += [f"- skipped {lib.name}: {lib.error}" for lib in libraries if not lib.available]
    if "torchflows" in available:
        lines.append(
            "- torchflows: `Flow.sample(n, return_log_prob=True)` returns log p(z) + log|det dx/dz| instead of "
            "log p(z) - log|det dx/dz|, so its rows draw with `Flow.sample` and evaluate `Flow.log_prob` (a second "
            "pass)"
        )
    for lib in libraries:
        if not lib.available:
            print(f"skipping {lib.name}: {lib.error}", file=sys.stderr)
    print("\n".join(lines), flush=True)
    # torch imports its compiler (1-2 s) when a process makes its first optimizer: not a cost of the first fit
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    with warnings.catch_warnings():
        # torchflows indexes with lists, which torch deprecates at every call; nothing to act on here
        warnings.filterwarnings("ignore", "Using a non-tuple sequence for multidimensional indexing", UserWarning)
        for name in args.targets:
            target = TARGETS[name]()
            truth = "unknown" if target.log_normalizer is None else f"{target.log_normalizer:.4f}"
            print(f"\n### {name}: {target!r}, true log Z {truth}\n\n{HEADER}", flush=True)
            for model in args.models:
                for row in rows:
                    print(run_row(row, model, target, spec, args.steps, args.samples), flush=True)
    print(f"\n{footer()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
