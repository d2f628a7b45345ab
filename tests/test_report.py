"""Model reports (``torchnf.report.write_report``): files, figure sizes, metrics, escaping, input checks and
random-state hygiene.

The flows are tiny: one RealNVP fitted for 50 steps (for a real history) and untrained flows with perturbed
weights, so a report's figures are not trivially Gaussian.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.image import imread

import torchnf.report.evaluation
from torchnf import MAF, Flow, Glow, History, RealNVP
from torchnf.baselines import GaussianBaseline, IndependentCategoricalBaseline
from torchnf.bijections import ElementwiseAffine
from torchnf.datasets import two_moons
from torchnf.dequantization import UniformDequantization
from torchnf.images import bits_per_dim
from torchnf.report import ReportFiles, write_report

NUMBER = r"-?\d+\.\d{4}"


def perturbed_flow(d: int, seed: int = 0, preset: Any = RealNVP) -> Flow:
    """An untrained tiny flow whose weights are randomly perturbed away from the identity."""
    torch.manual_seed(seed)
    flow = Flow(preset(d, layers=2, hidden=(8,)))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return flow


@pytest.fixture(scope="module")
def moons() -> np.ndarray:
    return two_moons(500, noise=0.1, seed=1)


@pytest.fixture(scope="module")
def fitted(moons: np.ndarray) -> tuple[Flow, History]:
    """A tiny RealNVP fitted to two moons for 50 steps, with a validation curve."""
    torch.manual_seed(0)
    flow = Flow(RealNVP(2, layers=2, hidden=(16,)))
    history = flow.fit(moons, steps=50, eval_every=10, seed=0, progress=False)
    return flow, history


def gaussian_data(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.5 + rng.standard_normal(d)


def check_png(path: Path | None, height: int, width: int) -> None:
    """The PNG exists, has the expected pixel size, and is not blank."""
    assert path is not None and path.is_file()
    image = imread(path)
    assert image.shape[:2] == (height, width)
    assert image[..., :3].var() > 0


def links(summary: str) -> list[str]:
    """The image files a Markdown or HTML summary refers to."""
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", summary) + re.findall(r'<img src="([^"]+)"', summary)


def test_2d_report_writes_summary_training_and_density(
    tmp_path: Path, fitted: tuple[Flow, History], moons: np.ndarray
) -> None:
    """A 2-D report with a history: summary, training curves and density map, metrics that match the flow."""
    flow, history = fitted
    files = write_report(flow, moons, tmp_path / "out", history=history, extra={"model": "moons.pt"})
    assert isinstance(files, ReportFiles)
    assert files.summary == tmp_path / "out" / "report.md"
    assert files.figures == (files.training, files.density)
    assert files.pairs is None and files.marginals is None
    check_png(files.training, 400, 600)
    check_png(files.density, 500, 600)

    text = files.summary.read_text()
    assert text.startswith("# torchnf report\n")
    assert links(text) == ["training.png", "density.png"]
    assert re.search(r"\| points \| 500 \|", text)
    assert re.search(r"\| dimension \| 2 \|", text)
    flow_ll = re.search(rf"\| flow mean log-likelihood \(nats per point\) \| ({NUMBER}) ± ({NUMBER})", text)
    gauss_ll = re.search(rf"\| Gaussian mean log-likelihood \(nats per point\) \| ({NUMBER}) \(", text)
    difference = re.search(r"\| flow minus Gaussian \(nats per point\) \| ([+-]\d+\.\d{4}) \|", text)
    assert flow_ll and gauss_ll and difference
    with torch.no_grad():
        expected = flow.log_prob(moons).double()
    assert float(flow_ll[1]) == pytest.approx(float(expected.mean()), abs=1e-3)
    assert float(flow_ll[2]) == pytest.approx(float(expected.std() / np.sqrt(500)), abs=1e-3)
    gaussian = float(GaussianBaseline().fit(moons).log_prob(moons).mean())
    assert float(gauss_ll[1]) == pytest.approx(gaussian, abs=1e-3)
    assert float(difference[1]) == pytest.approx(float(flow_ll[1]) - float(gauss_ll[1]), abs=2e-4)
    assert "full-covariance baseline fit to these data" in text
    assert f"| flow parameters | {sum(p.numel() for p in flow.parameters())} |" in text
    assert "| points with non-finite flow log-likelihood (left out of the mean) | 0 |" in text
    assert f"| stop reason | {history.stop_reason} |" in text
    assert f"| best step | {history.best_step} |" in text
    assert re.search(rf"\| best validation loss \(nats per point\) \| {NUMBER} \|", text)
    assert "| skipped steps | 0 |" in text and "| rollbacks | 0 |" in text
    assert "| model | moons.pt |" in text


def test_1d_report_draws_a_histogram_with_the_density(tmp_path: Path) -> None:
    """One dimension: ``density.png`` (histogram plus curve), no training curves without a history."""
    data = np.concatenate([gaussian_data(300, 1, seed=1) - 2, gaussian_data(300, 1, seed=2) + 2])
    files = write_report(perturbed_flow(1), data, tmp_path)
    assert files.figures == (files.density,)
    check_png(files.density, 400, 600)
    assert not (tmp_path / "training.png").exists()
    text = files.summary.read_text()
    assert links(text) == ["density.png"]
    assert "| dimension | 1 |" in text and "stop reason" not in text


def test_5d_report_writes_pairs_and_marginals_on_chosen_dims(tmp_path: Path) -> None:
    """More than two dimensions: pair plot on ``dims`` (1.5 in per panel plus 1 in) and a 4-column marginal grid."""
    files = write_report(perturbed_flow(5, preset=MAF), gaussian_data(400, 5), tmp_path, dims=[0, 2, 4], n_samples=500)
    assert files.figures == (files.pairs, files.marginals)
    assert files.density is None and files.training is None
    check_png(files.pairs, 550, 550)
    check_png(files.marginals, 450, 1000)
    text = files.summary.read_text()
    assert links(text) == ["pairs.png", "marginals.png"]
    assert "| dimension | 5 |" in text and "first 16" not in text


def test_default_dims_and_the_marginal_cap(tmp_path: Path) -> None:
    """Twenty dimensions: the pair plot shows the first four and the summary says only 16 marginals are shown."""
    files = write_report(perturbed_flow(20), gaussian_data(300, 20), tmp_path, n_samples=300)
    check_png(files.pairs, 700, 700)
    check_png(files.marginals, 850, 1000)
    assert "The marginals show the first 16 of 20 dimensions." in files.summary.read_text()


def test_html_report_is_self_contained_and_escaped(tmp_path: Path, fitted: tuple[Flow, History]) -> None:
    """The HTML page escapes every text (title, extra), links images relatively and loads nothing external."""
    flow, history = fitted
    title = '<script>alert("x")</script> & co'
    data = two_moons(200, seed=3)
    files = write_report(flow, data, tmp_path, history=history, title=title, fmt="html", extra={"a<b": "c|d>"})
    assert files.summary.name == "report.html"
    text = files.summary.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<script" not in text and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in text
    assert text.count("<title>") == 1 and "<h1>&lt;script&gt;" in text
    assert "<td>a&lt;b</td><td>c|d&gt;</td>" in text
    assert links(text) == ["training.png", "density.png"]
    assert not re.search(r"<link|https?://|<script", text)
    for tag in ("html", "head", "body", "table", "style"):
        assert text.count(f"<{tag}") == text.count(f"</{tag}>") == 1


def test_markdown_cells_are_escaped(tmp_path: Path) -> None:
    """Pipes and line breaks in ``extra`` cannot break the Markdown table."""
    files = write_report(perturbed_flow(2), gaussian_data(100, 2), tmp_path, extra={"config": "a|b\nc"})
    assert "| config | a\\|b c |" in files.summary.read_text()


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ([0], "at least 2"),
        ([], "at least 2"),
        ([0, 0], "unique"),
        ([0, 5], r"dims \[5\] out of range for 5-dimensional data"),
        ([-1, 2], "out of range"),
        ([0, 1.5], "must be ints"),
        ([True, 2], "must be ints"),
    ],
)
def test_bad_dims_are_refused(tmp_path: Path, dims: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_report(perturbed_flow(5), gaussian_data(50, 5), tmp_path, dims=dims)
    assert not list(tmp_path.iterdir())


def test_flows_over_other_shapes_are_refused(tmp_path: Path) -> None:
    """Vectors and images (C, H, W) only: a flow over matrices has no report."""
    flow = Flow(ElementwiseAffine((4, 4)))
    message = "report supports vector data and images (C, H, W); got event_shape (4, 4)"
    with pytest.raises(ValueError, match=re.escape(message)):
        write_report(flow, torch.randn(10, 4, 4), tmp_path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"data": np.zeros((10, 3))}, "data must have shape"),
        ({"data": np.zeros((0, 2))}, "empty"),
        ({"data": np.full((4, 2), np.nan)}, "NaN"),
        ({"fmt": "pdf"}, "fmt must be 'md' or 'html'"),
        ({"n_samples": 0}, "n_samples must be a positive int"),
    ],
)
def test_bad_inputs_are_refused(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    arguments = {"flow": perturbed_flow(2), "data": gaussian_data(10, 2), "out_dir": tmp_path, **options}
    with pytest.raises(ValueError, match=message):
        write_report(**arguments)


def test_conditional_flow_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unconditional"):
        write_report(Flow(RealNVP(2, context_shape=3, layers=1)), gaussian_data(10, 2), tmp_path)


@pytest.mark.parametrize("history", [None, History()])
def test_no_history_entries_no_training_plot(tmp_path: Path, history: History | None) -> None:
    files = write_report(perturbed_flow(2), gaussian_data(100, 2), tmp_path, history=history)
    assert files.training is None and not (tmp_path / "training.png").exists()
    assert "training.png" not in files.summary.read_text()


def test_history_events_are_reported_and_drawn(tmp_path: Path) -> None:
    """A history without validation but with skipped steps and rollbacks (a single evaluation is enough)."""
    history = History(step=[50], train_loss=[1.5], lr=[1e-3], best_step=40, skipped_steps=12, rollbacks=[30])
    history.stop_reason = "non-finite losses persisted"
    files = write_report(perturbed_flow(2), gaussian_data(100, 2), tmp_path, history=history)
    check_png(files.training, 400, 600)
    text = files.summary.read_text()
    assert "| skipped steps | 12 |" in text and "| rollbacks | 1 (at steps [30]) |" in text
    assert "| best step | 40 |" in text and "non-finite losses persisted" in text
    assert "best validation loss" not in text


def test_random_state_mode_and_weights_are_untouched(tmp_path: Path) -> None:
    """The caller's torch and NumPy random states, the flow's mode and its weights are the same afterwards."""
    flow = perturbed_flow(3)
    flow.train()
    state = {k: v.clone() for k, v in flow.state_dict().items()}
    torch.manual_seed(123)
    np.random.seed(7)
    torch_before, numpy_before = torch.get_rng_state(), np.random.get_state()[1].copy()
    write_report(flow, gaussian_data(200, 3), tmp_path, n_samples=200)
    assert torch.equal(torch.get_rng_state(), torch_before)
    assert np.array_equal(np.random.get_state()[1], numpy_before)
    assert flow.training
    assert all(torch.equal(v, state[k]) for k, v in flow.state_dict().items())


def test_the_seed_makes_figures_reproducible(tmp_path: Path) -> None:
    flow, data = perturbed_flow(3), gaussian_data(200, 3)
    first = write_report(flow, data, tmp_path / "a", n_samples=200, seed=5)
    again = write_report(flow, data, tmp_path / "b", n_samples=200, seed=5)
    other = write_report(flow, data, tmp_path / "c", n_samples=200, seed=6)
    assert first.pairs.read_bytes() == again.pairs.read_bytes() != other.pairs.read_bytes()


def test_chunked_evaluation_and_non_finite_log_probs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluation in chunks gives the unchunked mean; non-finite log-densities are counted and left out."""
    flow, data = perturbed_flow(2), gaussian_data(2500, 2)
    monkeypatch.setattr(torchnf.report.evaluation, "CHUNK", 1000)  # three chunks of data, 40 of the density grid
    with torch.no_grad():
        expected = float(flow.log_prob(data).double().mean())
    text = write_report(flow, data, tmp_path / "a").summary.read_text()
    assert f"| {expected:.4f} ±" in text

    original = flow.unchecked_log_prob

    def broken(x: torch.Tensor, context: Any = None) -> torch.Tensor:
        out = original(x, context)
        return torch.where(x[:, 0] > 1.0, torch.full_like(out, -torch.inf), out)

    monkeypatch.setattr(flow, "unchecked_log_prob", broken)
    files = write_report(flow, data, tmp_path / "b")
    bad = int((torch.as_tensor(data)[:, 0] > 1.0).sum())
    assert bad > 0
    assert f"| points with non-finite flow log-likelihood (left out of the mean) | {bad} |" in files.summary.read_text()
    check_png(files.density, 500, 600)


# -- image reports -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """60 8x8 digits of levels 0 to 16, shaped (n, 1, 8, 8)."""
    from sklearn.datasets import load_digits

    return load_digits().images[:60, None].copy()


def image_flow(levels: int | None = 17, seed: int = 0) -> Flow:
    """An untrained tiny Glow over (1, 8, 8), perturbed, uniformly dequantized with ``levels`` (or continuous)."""
    torch.manual_seed(seed)
    dequantization = None if levels is None else UniformDequantization((1, 8, 8), levels)
    flow = Flow(Glow((1, 8, 8), levels=1, steps=1, hidden_channels=4), dequantization=dequantization)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return flow


IMAGE_FIGURES = ("samples.png", "samples_cold.png", "data.png", "interpolation.png")


def test_image_report_draws_grids_interpolations_and_bits_per_dim(tmp_path: Path, digits: np.ndarray) -> None:
    """Samples at two temperatures, data and interpolation grids (8 images a row, enlarged 7 times), bits per
    dimension against the categorical baseline; no vector figures; the caller's random state untouched."""
    flow = image_flow()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    files = write_report(flow, digits, tmp_path, temperature=0.5, extra={"model": "glow.tnf"})
    assert torch.equal(torch.get_rng_state(), before)
    assert files.figures == (files.samples, files.cold_samples, files.data_images, files.interpolation)
    assert [p.name for p in files.figures] == list(IMAGE_FIGURES)
    assert files.pairs is None and files.density is None and files.marginals is None
    side = (8 * 9 + 1) * 7  # 64 samples (or the 60 data images): 8 columns and 8 rows of 8x8 images, padded
    for path in (files.samples, files.cold_samples, files.data_images):
        check_png(path, side, side)
    check_png(files.interpolation, (4 * 9 + 1) * 7, side)  # four pairs, a row of 8 steps each
    text = files.summary.read_text()
    assert links(text) == list(IMAGE_FIGURES)
    assert "## Samples at temperature 0.5" in text and "| images | 60 |" in text and "| dimension | 64 |" in text
    assert "| image shape (C, H, W) | (1, 8, 8) |" in text and "UniformDequantization, 17 levels" in text
    bits = re.search(rf"\| flow bits per dimension \(lower is better\) \| ({NUMBER}) \(an upper bound", text)
    baseline = re.search(rf"\| independent categorical bits per dimension \| ({NUMBER}) ", text)
    difference = re.search(r"\| flow minus categorical \(bits per dimension\) \| ([+-]\d+\.\d{4}) \|", text)
    assert bits and baseline and difference
    assert float(bits[1]) == pytest.approx(bits_per_dim(flow, digits, samples=4), rel=0.02)
    expected = IndependentCategoricalBaseline(17).fit(digits).bits_per_dim(digits)
    assert float(baseline[1]) == pytest.approx(expected, abs=1e-4)
    assert float(difference[1]) == pytest.approx(float(bits[1]) - float(baseline[1]), abs=2e-4)
    assert "| model | glow.tnf |" in text


def test_image_report_of_a_vector_flow_over_flattened_images(tmp_path: Path, digits: np.ndarray) -> None:
    """A vector flow with ``image_shape`` takes images (or their rows) and draws them as images, in HTML too."""
    torch.manual_seed(0)
    flow = Flow(RealNVP(64, layers=2, hidden=(8,)), dequantization=UniformDequantization(64, 17))
    files = write_report(flow, digits, tmp_path / "a", image_shape=(1, 8, 8), fmt="html")
    assert [p.name for p in files.figures] == list(IMAGE_FIGURES)
    text = files.summary.read_text()
    assert links(text) == list(IMAGE_FIGURES) and "modelled flattened, as vectors of 64 values" in text
    rows = write_report(flow, digits.reshape(60, 64), tmp_path / "b", image_shape=(1, 8, 8))
    assert rows.data_images.read_bytes() == files.data_images.read_bytes()


def test_continuous_image_report_has_no_categorical_baseline(tmp_path: Path, digits: np.ndarray) -> None:
    flow = image_flow(levels=None)
    files = write_report(flow, digits / 16, tmp_path, history=History(step=[5], train_loss=[3.0], lr=[1e-3]))
    text = files.summary.read_text()
    assert "none: a continuous density" in text and "categorical" not in text
    assert links(text) == ["training.png", *IMAGE_FIGURES]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_shape": (1, 4, 16)}, "does not fit the flow's event_shape"),
        ({"image_shape": (1, 8)}, "three positive ints"),
        ({"dims": [0, 1]}, "which an image report does not draw"),
        ({"temperature": 0}, "temperature must be a positive number"),
        ({"data": np.full((3, 1, 8, 8), 0.5)}, "integer levels"),
        ({"data": np.zeros((3, 1, 4, 4))}, "data must have shape"),
    ],
)
def test_bad_image_report_inputs_are_refused(
    tmp_path: Path, digits: np.ndarray, options: dict[str, Any], message: str
) -> None:
    arguments = {"flow": image_flow(), "data": digits[:10], "out_dir": tmp_path / "out", **options}
    with pytest.raises(ValueError, match=message):
        write_report(**arguments)
    assert not (tmp_path / "out").exists()
