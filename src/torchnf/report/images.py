"""The report of a flow over images: grids of samples (at temperature 1 and lower) and of data images, latent
interpolation strips, and bits per dimension next to an independent per-pixel categorical baseline; and
:func:`write_image_grid`, which draws images as one PNG picture."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..baselines import IndependentCategoricalBaseline
from ..flow import Flow
from ..images import bits_per_dim, image_grid, interpolate, save_image
from ..optimization import History
from .evaluation import _log_prob, _seeded
from .figures import _plot_training
from .summary import ReportFiles, _history_rows, _num, _write_summary

IMAGE_CHUNK = 256  # images per log_prob call
MAX_GRID = 64  # images in a grid of samples or of data
INTERPOLATION_PAIRS, INTERPOLATION_STEPS = 4, 8
BITS_SAMPLES = 4  # dequantization draws per image for bits per dimension (the importance-weighted bound)
GRID_PIXELS = 512  # an image grid is enlarged by a whole factor to at most about this many pixels a side


def write_image_grid(
    images: Any,
    path: str | Path,
    image_shape: Sequence[int] | None = None,
    value_range: tuple[float, float] | None = None,
    columns: int | None = None,
) -> Path:
    """Tile images into one PNG picture (:func:`torchnf.images.image_grid`), enlarged to about 512 pixels a side.

    Args:
        images: ``(n, C, H, W)``, ``(n, H, W)``, or rows ``(n, C * H * W)`` with ``image_shape``.
        path: the PNG file to write; its folder must exist.
        image_shape: ``(C, H, W)`` to reshape rows of flattened images to.
        value_range: the values shown as black and white (default: the images' minimum and maximum).
        columns: images per row (default: about the square root of ``n``).

    Images of other than 1 or 3 channels show their first channel; values outside ``value_range`` are clipped, NaN
    and -inf show as black and +inf as white.
    """
    array = images.detach().cpu().double().numpy() if isinstance(images, Tensor) else np.asarray(images, np.float64)
    if image_shape is not None:
        array = array.reshape(array.shape[0], *image_shape)
    if array.ndim == 4 and array.shape[1] not in (1, 3):
        array = array[:, :1]
    low, high = value_range if value_range is not None else _finite_range(array)
    array = np.nan_to_num(array, nan=low, posinf=high, neginf=low)
    grid = image_grid(array, columns, (low, high))
    path = Path(path)
    save_image(grid, path, scale=max(1, GRID_PIXELS // max(grid.shape[:2])))
    return path


def _finite_range(array: np.ndarray) -> tuple[float, float]:
    """The minimum and maximum of the finite values (0 and 1 when there are none)."""
    finite = array[np.isfinite(array)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def _image_report(
    flow: Flow,
    x: Tensor,
    out: Path,
    shape: tuple[int, int, int],
    history: History | None,
    title: str,
    fmt: str,
    seed: int,
    extra: Mapping[str, str] | None,
    n_samples: int,
    temperature: float,
    value_range: tuple[float, float] | None,
) -> ReportFiles:
    """The image report of :func:`~torchnf.report.write_report`, on validated images ``x`` of shape
    ``(n, *event_shape)``."""
    out.mkdir(parents=True, exist_ok=True)
    n = x.shape[0]
    points = x.cpu().double().numpy()
    levels = None if flow.dequantization is None else flow.dequantization.levels
    if value_range is None:
        value_range = (0.0, float(levels - 1)) if levels is not None else _finite_range(points)
    rng = np.random.default_rng(seed)
    count = min(n_samples, MAX_GRID)
    files: dict[str, Path] = {}
    notes: list[str] = []
    if shape[0] not in (1, 3):
        notes.append(f"The images have {shape[0]} channels; the pictures show the first.")

    def grid(images: Any, name: str, columns: int | None = None) -> Path:
        array = images.cpu().double().numpy() if isinstance(images, Tensor) else images
        if not np.isfinite(array).all():
            bad = int((~np.isfinite(array.reshape(len(array), -1))).any(axis=1).sum())
            notes.append(f"{name}: {bad} image(s) with non-finite values (NaN and -inf drawn black, +inf white).")
        return write_image_grid(array, out / name, shape, value_range, columns)

    was_training = flow.training
    flow.eval()
    try:
        with torch.no_grad(), _seeded(flow.device, seed):
            log_prob = _log_prob(flow, x, IMAGE_CHUNK).cpu().double().numpy()
            bits = bits_per_dim(flow, x, samples=BITS_SAMPLES if levels is not None else 1, batch_size=IMAGE_CHUNK)
            if history is not None and history.step:
                files["training"] = _plot_training(history, out / "training.png", "image")
            files["samples"] = grid(flow.sample(count), "samples.png")
            files["cold_samples"] = grid(flow.sample(count, temperature=temperature), "samples_cold.png")
            shown = np.sort(rng.choice(n, min(n, count), replace=False))
            files["data_images"] = grid(points[shown], "data.png")
            pairs = min(INTERPOLATION_PAIRS, n // 2)
            if pairs:
                ends = rng.choice(n, 2 * pairs, replace=False).reshape(pairs, 2)
                strips = [interpolate(flow, x[a], x[b], INTERPOLATION_STEPS, "spherical") for a, b in ends]
                files["interpolation"] = grid(torch.cat(strips), "interpolation.png", INTERPOLATION_STEPS)
            else:
                notes.append("No interpolation: it takes at least two data images.")
    finally:
        flow.train(was_training)
    rows = _image_metrics(flow, points, shape, log_prob, bits, history)
    rows += [(str(k), str(v)) for k, v in (extra or {}).items()]
    return _write_summary(out, fmt, title, rows, notes, files, temperature)


def _image_metrics(
    flow: Flow,
    points: np.ndarray,
    shape: tuple[int, int, int],
    log_prob: np.ndarray,
    bits: float,
    history: History | None,
) -> list[tuple[str, str]]:
    """The image summary's (name, value) rows."""
    n, d = len(points), math.prod(shape)
    ok = np.isfinite(log_prob)
    flow_ll = float(log_prob[ok].mean()) if ok.any() else math.nan
    se = float(log_prob[ok].std(ddof=1) / math.sqrt(ok.sum())) if ok.sum() > 1 else math.nan
    dequantization = flow.dequantization
    flattened = f" (modelled flattened, as vectors of {d} values)" if len(flow.event_shape) == 1 else ""
    ll_text = f"{_num(flow_ll)} ± {_num(se)} (standard error)"
    if dequantization is None:
        quantization = "none: a continuous density"
        bits_text = f"{_num(bits)} (of the continuous density, in the data's units)"
    else:
        quantization = f"{type(dequantization).__name__}, {dequantization.levels} levels"
        ll_text += "; one dequantization draw each, a lower bound on log P(x)"
        bits_text = f"{_num(bits)} (an upper bound, with {BITS_SAMPLES} dequantization draws per image)"
    rows = [
        ("images", str(n)),
        ("image shape (C, H, W)", f"{shape}{flattened}"),
        ("dimension", str(d)),
        ("dequantization", quantization),
        ("flow mean log-likelihood (nats per image)", ll_text),
        ("images with non-finite flow log-likelihood (left out of the mean)", str(int((~ok).sum()))),
        ("flow bits per dimension (lower is better)", bits_text),
    ]
    if dequantization is not None:
        baseline = IndependentCategoricalBaseline(dequantization.levels).fit(points).bits_per_dim(points)
        rows += [
            (
                "independent categorical bits per dimension",
                f"{_num(baseline)} (one categorical per pixel, fit to these data)",
            ),
            ("flow minus categorical (bits per dimension)", _num(bits - baseline, "+.4f")),
        ]
    rows.append(("flow parameters", str(sum(p.numel() for p in flow.parameters()))))
    return rows + _history_rows(history, "image")
