"""Statistical quality of the planar, radial and Sylvester presets: fitted on two moons, they beat a Gaussian.

Planar-family layers are weak density estimators (each bends space along one hyperplane, or around one point,
per layer), so they need more steps than couplings and clear a smaller margin. Each preset is fitted with its
default number of layers and ``closed_form="density"`` (the formula maps data to latent, so maximum likelihood
needs no root finder), with the default optimizer settings, on the split of ``tests/test_quality.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchnf import Flow, Planar, Preset, Radial, Sylvester

STEPS = 1500


@pytest.mark.parametrize(
    ("preset", "margin"),
    [
        # gains in nats per point over the Gaussian after 1,500 steps, seeds 0-4; each margin is the smallest gain
        # less about 0.3. Fit times on 2 loaded cores: Planar 12-19 s, Radial 18-31 s and
        # Sylvester 29-42 s (slow tests).
        pytest.param(Planar, 0.9, id="Planar"),  # 16 layers: 1.43, 1.39, 1.21, 1.43, 1.50
        pytest.param(Radial, 0.5, id="Radial", marks=pytest.mark.slow),  # 32 layers: 0.91, 0.84, 0.88, 0.77, 0.83
        pytest.param(Sylvester, 1.0, id="Sylvester", marks=pytest.mark.slow),  # 16 layers: 1.43, 1.46, 1.38, 1.50, 1.48
    ],
)
def test_preset_beats_a_gaussian_on_two_moons(
    moons_split: tuple[np.ndarray, np.ndarray, float], preset: type[Preset], margin: float
) -> None:
    train, test, baseline = moons_split
    torch.manual_seed(0)
    flow = Flow(preset(2, closed_form="density"))
    flow.fit(train, steps=STEPS, seed=0, progress=False)
    with torch.no_grad():
        achieved = float(flow.log_prob(test).mean())
    assert achieved >= baseline + margin, (
        f"{preset.__name__} after {STEPS} steps: test log-likelihood {achieved:.3f} nats per point, Gaussian "
        f"{baseline:.3f}; gain {achieved - baseline:.3f} < {margin}"
    )
