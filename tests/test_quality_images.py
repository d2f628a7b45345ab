"""Statistical quality of the image presets: fitted on the 8x8 digits, they beat independent pixels in bits/dim.

The data are the 1,797 scikit-learn digits as images ``(1, 8, 8)`` of 17 grey levels, split by
:func:`torchnf.datasets.split` with seed 0 into 1,437 training, 180 validation (early stopping) and 180 test images
(the rows of ``load("digits", seed=0)``, before its dequantization). The reference is
:class:`~torchnf.baselines.IndependentCategoricalBaseline` fitted to the training images, one smoothed categorical
per pixel: 2.415 bits per dimension on the test images, an exact probability. A flow's figure is
:func:`~torchnf.images.bits_per_dim` with 16 importance draws, an upper bound on its own exact bits/dim, so a flow
that clears the margin beats the baseline for certain (up to the Monte Carlo noise of the draws).

Each margin is the smallest gain over seeds 0-4 (``torch.manual_seed(s)`` and ``fit(seed=s)``) less a safety amount
of about 0.1 bits/dim; the tests run seed 0. ``benchmarks/digits_images.py`` fits the same models for longer.
"""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from torchnf import Flow, Glow, MultiscaleRealNVP
from torchnf.baselines import IndependentCategoricalBaseline
from torchnf.datasets import Dataset, split
from torchnf.dequantization import UniformDequantization, VariationalDequantization
from torchnf.images import bits_per_dim

pytestmark = pytest.mark.usefixtures("one_thread")  # convolutions this small gain nothing from a second thread

LEVELS = 17
SHAPE = (1, 8, 8)
SAMPLES = 16


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, float]:
    """The digit images split 80/10/10 and the independent categorical baseline's test bits/dim."""
    data = split(load_digits().images[:, None], seed=0, name="digits")
    return data, IndependentCategoricalBaseline(LEVELS).fit(data.train).bits_per_dim(data.test)


def test_baseline_is_the_recorded_one(digits: tuple[Dataset, float]) -> None:
    """The split and the baseline are the ones the margins below were measured against."""
    data, baseline = digits
    assert (len(data.train), len(data.val), len(data.test)) == (1437, 180, 180)
    assert baseline == pytest.approx(2.415, abs=1e-3)


def gain(flow: Flow, data: Dataset, baseline: float, steps: int) -> tuple[float, float]:
    """Fit ``flow`` with seed 0 and early stopping; return its test bits/dim and its gain over ``baseline``."""
    flow.fit(data.train, validation_data=data.val, steps=steps, seed=0, progress=False)
    torch.manual_seed(0)
    achieved = bits_per_dim(flow, data.test, samples=SAMPLES)
    return achieved, baseline - achieved


def test_multiscale_realnvp_beats_independent_pixels(digits: tuple[Dataset, float]) -> None:
    """A small multi-scale Real NVP (2 levels, 2 couplings per mask kind, 32 channels, 1 block; about 140,000
    parameters) with uniform dequantization, 200 steps: measured gains over the baseline, seeds 0-4, 0.259, 0.252,
    0.275, 0.277, 0.272 bits/dim (test 2.139-2.163), the fit taking 18-19 s on 1 thread of 2 loaded cores. Margin
    0.15 bits/dim."""
    data, baseline = digits
    torch.manual_seed(0)
    bijection = MultiscaleRealNVP(SHAPE, levels=2, steps=2, hidden_channels=32, blocks=1)
    flow = Flow(bijection, dequantization=UniformDequantization(SHAPE, LEVELS))
    achieved, gained = gain(flow, data, baseline, steps=200)
    assert gained >= 0.15, f"MultiscaleRealNVP: {achieved:.3f} bits/dim on test, baseline {baseline:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("coupling", "margin"),
    [
        # gains over seeds 0-4 after 500 steps; fits of 41-43 s (affine) and 71-73 s (spline) on 1 loaded thread
        pytest.param("affine", 0.35, id="affine"),  # 0.443, 0.459, 0.480, 0.451, 0.441 (test 1.935-1.974)
        pytest.param("spline", 0.4, id="spline"),  # 0.519, 0.549, 0.528, 0.511, 0.534 (test 1.867-1.904)
    ],
)
def test_glow_with_variational_dequantization_beats_independent_pixels(
    digits: tuple[Dataset, float], coupling: str, margin: float
) -> None:
    """Glow (2 levels of 4 steps, 32 channels, logit pre-transform) with a learned dequantization (2 couplings of 16
    channels), trained jointly for 500 steps."""
    data, baseline = digits
    torch.manual_seed(0)
    bijection = Glow(SHAPE, levels=2, steps=4, hidden_channels=32, coupling=coupling, pre_transform="logit")
    flow = Flow(bijection, dequantization=VariationalDequantization(SHAPE, LEVELS, layers=2, hidden=16))
    achieved, gained = gain(flow, data, baseline, steps=500)
    assert gained >= margin, f"Glow ({coupling}): {achieved:.3f} bits/dim on test, baseline {baseline:.3f}"
