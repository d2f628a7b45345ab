"""Held-out log-likelihood of every vector preset on the 64-D dequantized digits, after the same step budget.

Usage: ``.venv/bin/python benchmarks/digits_presets.py [STEPS] [PRESET ...]`` (default 2000 steps and every preset
in :attr:`torchnf.Preset.registry`, by name; naming presets restricts the run to them). Prints a first line with the
full-covariance Gaussian baseline, then one line per preset: mean test log-likelihood (nats per point, higher is
better), the optimizer steps actually taken (early stopping may end a fit before the budget) and the step whose
weights were kept, and the wall time of the fit and the test evaluation. A preset fitted greedily (one with a
``fit_greedy``, such as SINF) ignores STEPS, takes no gradient steps and reports the layers it grew and kept
instead. A preset that cannot be built for 64 dimensions is skipped, with a line saying why.

Data: ``load("digits", seed=0)``, the 1,797 scikit-learn 8x8 digits uniformly dequantized, split 80/10/10 into
1,437 training, 180 validation (early stopping) and 180 test rows. Every preset is built with its defaults after
``torch.manual_seed(0)`` and fitted with ``seed=0``.

Cost: the inverse-autoregressive presets take 64 sequential passes per log-density and UMNNMAF integrates by
quadrature, so these set the run time: on 2 shared cores one training step took about 17 s for
InverseAutoregressiveRQNSF, 1 s for IAF and 1.2 s for UMNNMAF, against 0.01-0.25 s for every other preset. Name
presets to leave the slow ones out.

Runs on one intra-op thread: on 2 shared CPU cores, 200 RealNVP steps took 4.6-7.0 s on one thread against
69-76 s on two, and 20 UMNNMAF steps 26-27 s against 48-74 s (two threads stall whenever other jobs hold a core).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import torch

from torchnf import Flow, Preset
from torchnf.baselines import GaussianBaseline
from torchnf.datasets import load

DIM = 64


def main(steps: int = 2000, presets: Sequence[str] = ()) -> None:
    registry = Preset.registry
    unknown = sorted(set(presets) - set(registry))
    if unknown:
        raise SystemExit(f"unknown preset(s) {', '.join(unknown)}; expected some of: {', '.join(sorted(registry))}")
    data = load("digits", seed=0)
    start = time.perf_counter()
    baseline = float(GaussianBaseline().fit(data.train).log_prob(data.test).mean())
    print(f"digits {'Gaussian baseline':28s} test {baseline:.3f}  {time.perf_counter() - start:.1f}s", flush=True)
    for name in sorted(presets or registry):
        torch.manual_seed(0)
        try:
            bijection = registry[name](DIM)
        except Exception as error:  # any failure to build for 64 dims means "not a vector preset"
            print(f"digits {name:28s} skipped: cannot build for {DIM} dims: {type(error).__name__}: {error}")
            continue
        flow = Flow(bijection)
        greedy = callable(getattr(bijection, "fit_greedy", None))  # fit() grows it layer by layer, without steps
        budget = {} if greedy else {"steps": steps}
        start = time.perf_counter()
        history = flow.fit(data.train, validation_data=data.val, seed=0, progress=False, **budget)
        with torch.no_grad():
            test = float(flow.log_prob(data.test).mean())
        elapsed = time.perf_counter() - start
        if greedy:
            layers = history.step[-1] if history.step else 0
            done = f"steps {0:5d} (greedy: {layers} layers, kept {history.best_step})"
        else:
            done = f"steps {history.step[-1] if history.step else 0:5d} (kept {history.best_step:5d})"
        print(f"digits {name:28s} test {test:.3f}  {done}  {elapsed:.1f}s", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)  # faster than two on this size (see the docstring)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000, sys.argv[2:])
