"""Statistical quality of FFJORD: fitted with the preset's defaults on two moons, it beats a Gaussian by a margin.

As in ``tests/test_quality.py``: 4,000 training and 1,000 test points, a seeded fit with a fixed step budget, and
the mean held-out log-likelihood (nats per point) compared with a full-covariance Gaussian's. Each step solves an
ODE (forward and backward), so the fit takes over a minute on two loaded CPU cores: a slow test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchnf import FFJORD, Flow

MARGIN = 1.0
"""Nats per point FFJORD must gain over the Gaussian on held-out data."""
STEPS = 300
LR = 5e-3
"""The step budget and learning rate. Measured gains at 300 steps and lr 5e-3 (fit times on two loaded CPU cores,
one torch thread): seed 0 1.39 nats (75 s), seed 1 1.42 (80-160 s), seed 2 1.41 (78 s). At 200 steps the gains
were 1.29, 1.21 and 1.01 (about 55 s each): too close to the margin. With the default lr 1e-3, seed 0 gained 0.79
nats after 300 steps and 1.35 after 600 (130 s); with softplus dynamics instead of tanh, 0.27 after 500."""


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_ffjord_beats_a_gaussian_on_two_moons(moons_split: tuple[np.ndarray, np.ndarray, float]) -> None:
    train, test, gaussian = moons_split
    torch.manual_seed(0)
    flow = Flow(FFJORD(2))
    flow.fit(train, steps=STEPS, lr=LR, seed=0, progress=False)
    with torch.no_grad():
        achieved = float(flow.log_prob(test).mean())
    assert achieved >= gaussian + MARGIN, (
        f"FFJORD after {STEPS} steps: test log-likelihood {achieved:.3f} nats per point, Gaussian {gaussian:.3f}; "
        f"gain {achieved - gaussian:.3f} < {MARGIN}"
    )
