"""Held-out log-likelihood of each 2-D-capable preset after the same number of training steps.

Usage: ``.venv/bin/python benchmarks/equal_steps_2d.py [DATASET] [STEPS]`` (defaults: checkerboard 500). Prints one
line per preset: mean test log-likelihood (nats per point, higher is better) and wall time. Data: 6,000 points of a
built-in 2-D set, split 80/10/10; every fit is seeded and uses the preset's defaults.
"""

from __future__ import annotations

import sys
import time

import torch

from torchnf import (
    UMNNMAF,
    CouplingLRS,
    CouplingNAF,
    CouplingRQNSF,
    Flow,
    MaskedAutoregressiveLRS,
    MaskedAutoregressiveRQNSF,
    RealNVP,
)
from torchnf.datasets import load

PRESETS = [
    RealNVP,
    CouplingRQNSF,
    MaskedAutoregressiveRQNSF,
    CouplingLRS,
    MaskedAutoregressiveLRS,
    CouplingNAF,
    UMNNMAF,
]


def main(name: str = "checkerboard", steps: int = 500) -> None:
    data = load(name, n=6000)
    for preset in PRESETS:
        torch.manual_seed(0)
        flow = Flow(preset(2))
        start = time.perf_counter()
        flow.fit(data.train, validation_data=data.val, steps=steps, seed=0, progress=False)
        with torch.no_grad():
            test = float(flow.log_prob(data.test).mean())
        print(f"{name} {preset.__name__:28s} test {test:.3f}  {time.perf_counter() - start:.1f}s", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)  # tiny tensors: threads only add synchronization
    main(*(sys.argv[1:2]), *(int(a) for a in sys.argv[2:3]))
