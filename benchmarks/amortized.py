"""Amortized inference: conditional flows fitted to simulations, scored against exact posteriors.

Usage (from the repository root): ``.venv/bin/python -m benchmarks.amortized [--tasks TASK ...]
[--simulations N ...] [--seeds S ...] [--observations K] [--draws D] [--steps STEPS] [--threads T]``.

For each task of :data:`TASKS` (``torchnf.simulators``), simulation budget ``N`` (default 10,000 and 100,000) and
seed ``S`` (default 0, 1, 2), it draws ``N`` pairs from the joint (``sample_joint(N, seed=S)``), builds the task's
flow after ``torch.manual_seed(S)`` and fits it by maximum likelihood (``Flow.fit``: Adam at 2e-3 with a cosine
schedule over at most ``STEPS`` = 4,000 steps, batches of 512, 10% of the pairs held out, early stopping after 10
evaluations without a better validation loss, the best weights kept; on seed 0 these settings gave two moons a C2ST
of 0.546 at 10,000 simulations and 0.519 at 100,000, against 0.567 and 0.561 with ``Flow.fit``'s defaults, Adam at
1e-3 without a schedule on batches of 256). Then, for ``K`` = 5 observations shared by every fit (the data of
``sample_joint(K, seed=1000)``), it compares ``D`` = 2,000 draws of the flow with ``D`` exact posterior draws
(``reference_posterior_samples(x_obs, D, seed=2000)``):

- ``C2ST``: :func:`torchnf.c2st.c2st` (5 folds, seed 0), the mean over the observations and the range; 0.5 is a
  perfect posterior. The SBI benchmark (Lueckmann et al. 2021) uses 10,000 draws of each; 2,000 keep the run short
  and make the score a little noisier (about ±0.01) and a little lower (a classifier fitted to fewer points finds
  less).
- ``KL``: :math:`\\mathrm{KL}(p\\,\\|\\,q) = \\mathbb E_p[\\log p(\\theta \\mid x) - \\log q(\\theta \\mid x)]`, the
  mean over the ``D`` reference draws, averaged over the observations: exact for the Gaussian posterior; for two
  moons the posterior's normalizer :math:`p(x)` comes from a quadrature over a grid of 2 x 800 x 800 points (step
  5e-4 in the simulator's noise, an isometry of the parameters), accurate to about 1e-4.
- ``outside``: the share of the flow's draws outside the prior's support (two moons: the box); those are rejected
  before the C2ST, as the SBI benchmark does, and count against the flow in the KL.

Flows: ``MAF(10, context_shape=10, layers=5, hidden=(64, 64))`` for the Gaussian linear task (its posterior's mean
is linear in the data and its covariance constant, which affine layers represent exactly);
``CouplingRQNSF(2, context_shape=2, layers=5, hidden=(64, 64))`` for two moons. The second table averages the first
over the seeds (mean ± standard deviation over seeds of the per-fit means).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import math
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from torchnf import MAF, CouplingRQNSF, Flow
from torchnf.bijections import Bijection
from torchnf.c2st import c2st
from torchnf.simulators import GaussianLinear, Simulator, TwoMoons

from .peers.environment import _load, all_cores, footer
from .sampling import _table

OBSERVATION_SEED = 1000
REFERENCE_SEED = 2000
SAMPLE_SEED = 3000  # torch.manual_seed before the flow's draws, plus the fit's seed
GRID_STEP = 5e-4  # the two-moons quadrature's step
BATCH_SIZE = 512
LR = 2e-3


@dataclass(frozen=True)
class Task:
    """A simulator and the flow fitted to it."""

    simulator: Callable[[], Simulator]
    bijection: Callable[[], Bijection]
    flow_name: str


TASKS: dict[str, Task] = {
    "gaussian-linear": Task(
        GaussianLinear, lambda: MAF(10, context_shape=10, layers=5, hidden=(64, 64)), "MAF 5 x (64, 64)"
    ),
    "two-moons": Task(
        TwoMoons, lambda: CouplingRQNSF(2, context_shape=2, layers=5, hidden=(64, 64)), "CouplingRQNSF 5 x (64, 64)"
    ),
}


@dataclass(frozen=True)
class Score:
    """The scores of one fitted flow, each per observation."""

    c2st: list[float]
    kl: list[float]
    outside: list[float]


def two_moons_log_evidence(simulator: TwoMoons, x_obs: Tensor, step: float = GRID_STEP) -> float:
    r""":math:`\log p(x) = \log\int p(\theta)\,p(x \mid \theta)\,d\theta` by the midpoint rule on a grid of the
    simulator's noise :math:`p` within 0.2 of the moon's center (ten standard deviations of the radius), mapped to
    both branches :math:`\theta = R^\top(\pm(p_1 - x_1), x_2 - p_2)`, a rotation: a grid of :math:`\theta` with
    cells of area ``step ** 2``. ``simulator`` and ``x_obs`` in float64."""
    sim, x = simulator, x_obs
    axis = torch.arange(-0.2, 0.2, step, dtype=torch.float64) + step / 2
    p = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)
    p = p + torch.tensor([sim.offset, 0.0], dtype=torch.float64)
    p = p[p[:, 0] >= x[0]]
    z = torch.cat([torch.stack([sign * (p[:, 0] - x[0]), x[1] - p[:, 1]], dim=-1) for sign in (1.0, -1.0)])
    theta = torch.stack([z[:, 0] - z[:, 1], z[:, 0] + z[:, 1]], dim=-1) / math.sqrt(2)
    log_joint = sim.prior_log_prob(theta) + sim.log_likelihood(theta, x)
    return float(torch.logsumexp(log_joint, 0)) + 2 * math.log(step)


def exact_log_posterior(simulator: Simulator, theta: Tensor, x_obs: Tensor) -> Tensor:
    """:math:`\\log p(\\theta \\mid x)` of draws ``(n, d)`` for one observation ``(k,)``, in float64 (a float64
    copy of the simulator)."""
    simulator = copy.deepcopy(simulator).double()
    theta, x_obs = theta.double(), x_obs.double()
    if isinstance(simulator, GaussianLinear):
        return simulator.posterior(x_obs).log_prob(theta)
    if isinstance(simulator, TwoMoons):
        log_joint = simulator.prior_log_prob(theta) + simulator.log_likelihood(theta, x_obs)
        return log_joint - two_moons_log_evidence(simulator, x_obs)
    raise TypeError(f"no exact posterior density for {type(simulator).__name__}")


def flow_draws_inside(flow: Flow, simulator: Simulator, x_obs: Tensor, n: int) -> tuple[Tensor, float]:
    """``n`` draws of the flow for one observation inside the prior's support, and the share of its draws that fell
    outside."""
    kept: list[Tensor] = []
    drawn = inside = 0
    while inside < n:
        draws = flow.sample(max(n - inside, 256) * 11 // 10, context=x_obs)
        good = draws[torch.isfinite(simulator.prior_log_prob(draws))]
        kept.append(good)
        drawn += draws.shape[0]
        inside += good.shape[0]
        if drawn > 100 * n:
            raise RuntimeError(f"the flow puts {1 - inside / drawn:.1%} of its draws outside the prior")
    return torch.cat(kept)[:n], 1 - inside / drawn


def score(flow: Flow, simulator: Simulator, x_obs: Tensor, reference: Tensor, draws: int) -> Score:
    """C2ST, KL and leakage of ``flow`` for each observation ``x_obs[i]`` against ``reference[:, i]``."""
    result = Score([], [], [])
    for i in range(x_obs.shape[0]):
        q_draws, outside = flow_draws_inside(flow, simulator, x_obs[i], draws)
        result.c2st.append(c2st(reference[:, i], q_draws, seed=0))
        with torch.no_grad():
            log_q = flow.log_prob(reference[:, i], context=x_obs[i]).double()
        log_p = exact_log_posterior(simulator, reference[:, i], x_obs[i])
        result.kl.append(float((log_p - log_q).mean()))
        result.outside.append(outside)
    return result


def _range(values: Sequence[float], digits: int = 3) -> str:
    return f"{statistics.fmean(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def _spread(values: Sequence[float], digits: int = 3) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def run_task(
    name: str, simulations: Sequence[int], seeds: Sequence[int], observations: int, draws: int, steps: int
) -> tuple[list[list[str]], list[list[str]]]:
    """Fit and score the flows of one task; return its rows of the per-fit table and of the summary."""
    task = TASKS[name]
    simulator = task.simulator()
    x_obs = simulator.sample_joint(observations, seed=OBSERVATION_SEED)[1]
    reference = simulator.reference_posterior_samples(x_obs, draws, seed=REFERENCE_SEED)
    rows, summary = [], []
    for n in simulations:
        fits: list[tuple[Score, float]] = []
        for seed in seeds:
            theta, x = simulator.sample_joint(n, seed=seed)
            torch.manual_seed(seed)
            flow = Flow(task.bijection())
            start = time.perf_counter()
            history = flow.fit(
                theta,
                context=x,
                steps=steps,
                batch_size=BATCH_SIZE,
                lr=LR,
                lr_schedule="cosine",
                seed=seed,
                progress=False,
            )
            seconds = time.perf_counter() - start
            torch.manual_seed(SAMPLE_SEED + seed)
            result = score(flow, simulator, x_obs, reference, draws)
            fits.append((result, seconds))
            params = sum(p.numel() for p in flow.parameters() if p.requires_grad)
            row = [
                name,
                f"{n:,}",
                str(seed),
                f"{params:,}",
                f"{history.step[-1]:,} ({history.best_step:,})",
                f"{seconds:.1f}",
                _range(result.c2st),
                _range(result.kl),
                f"{statistics.fmean(result.outside):.2%}",
            ]
            print("| " + " | ".join(row) + " |", file=sys.stderr, flush=True)
            rows.append(row)
        summary.append(
            [
                name,
                f"{n:,}",
                str(len(seeds)),
                _spread([statistics.fmean(r.c2st) for r, _ in fits]),
                _spread([statistics.fmean(r.kl) for r, _ in fits]),
                f"{statistics.fmean(s for _, s in fits):.1f}",
            ]
        )
    return rows, summary


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(prog="python -m benchmarks.amortized", description=__doc__.split("\n")[0])
    top.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS), metavar="TASK")
    top.add_argument("--simulations", type=int, nargs="+", default=[10_000, 100_000], help="simulation budgets")
    top.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the simulations and the fits")
    top.add_argument("--observations", type=int, default=5, help="observations scored per fit (default 5)")
    top.add_argument("--draws", type=int, default=2000, help="draws of the flow and the reference (default 2000)")
    top.add_argument("--steps", type=int, default=4000, help="the most optimizer steps per fit (default 4000)")
    top.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its Markdown report; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(f"- command: `{shlex.join(['.venv/bin/python', '-m', 'benchmarks.amortized', *argv])}`")
    print(f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(
        f"- torch {torch.__version__}, Python {platform.python_version()}; torch.set_num_threads({args.threads}) of "
        f"{all_cores()} cores; float32; C2ST with one BLAS thread"
    )
    print(f"- load average at start (1 / 5 / 15 min): {_load()}")
    print(
        f"- {args.observations} observations per task, {args.draws:,} draws of the flow and of the exact posterior "
        f"each; fits of at most {args.steps:,} steps of {BATCH_SIZE} pairs, Adam at {LR:g}, cosine schedule"
    )
    print("- flows: " + "; ".join(f"{name}: {TASKS[name].flow_name}" for name in args.tasks) + "\n", flush=True)
    # torch imports its compiler (1-2 s) when a process makes its first optimizer: not a cost of the first fit
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    rows, summary = [], []
    for name in args.tasks:
        task_rows, task_summary = run_task(
            name, args.simulations, args.seeds, args.observations, args.draws, args.steps
        )
        rows += task_rows
        summary += task_summary
    header = ["task", "simulations", "seed", "parameters", "steps (best)", "fit s", "C2ST", "KL", "outside"]
    print(_table(header, rows) + "\n")
    header = ["task", "simulations", "seeds", "C2ST", "KL", "fit s"]
    print(_table(header, summary) + "\n")
    print(f"{footer()}\n- total time: {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
