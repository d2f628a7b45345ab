"""The report of a flow over vectors: a density map (``D <= 2``) or a pair plot and marginals of data and flow
samples (``D > 2``), and log-likelihoods next to a full-covariance Gaussian baseline."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

from ..baselines import GaussianBaseline
from ..flow import Flow
from ..optimization import History
from .evaluation import _log_prob, _seeded
from .figures import DATA_COLOR, DPI, FLOW_COLOR, _plot_training, _save
from .summary import ReportFiles, _history_rows, _num, _write_summary

GRID = 200  # grid points per axis of the 2-D density map
MAX_SCATTER = 5000  # data points drawn in a scatter plot (a random subset beyond that)
MAX_MARGINALS = 16


def _vector_report(
    flow: Flow,
    x: Tensor,
    out: Path,
    shown: list[int],
    history: History | None,
    title: str,
    fmt: str,
    seed: int,
    extra: Mapping[str, str] | None,
    n_samples: int,
) -> ReportFiles:
    """The vector report of :func:`~torchnf.report.write_report`, on validated points ``x`` of shape ``(n, D)``,
    with the pair plot on dimensions ``shown``."""
    n, d = x.shape
    out.mkdir(parents=True, exist_ok=True)
    points = x.cpu().double().numpy()
    rng = np.random.default_rng(seed)
    files: dict[str, Path] = {}
    notes: list[str] = []
    was_training = flow.training
    flow.eval()
    try:
        with torch.no_grad(), _seeded(flow.device, seed):
            log_prob = _log_prob(flow, x).cpu().double().numpy()
            if history is not None and history.step:
                files["training"] = _plot_training(history, out / "training.png")
            if d <= 2:
                files["density"] = (_plot_density_2d if d == 2 else _plot_density_1d)(flow, points, out, rng)
            else:
                files.update(_sample_figures(flow, points, shown, n_samples, out, rng, notes))
    finally:
        flow.train(was_training)
    if n > MAX_SCATTER:
        notes.append(f"Scatter plots show a random subset of {MAX_SCATTER} of the {n} data points.")
    rows = _metrics(flow, points, log_prob, history) + [(str(k), str(v)) for k, v in (extra or {}).items()]
    return _write_summary(out, fmt, title, rows, notes, files)


def _metrics(flow: Flow, points: np.ndarray, log_prob: np.ndarray, history: History | None) -> list[tuple[str, str]]:
    """The summary's (name, value) rows."""
    n, d = points.shape
    ok = np.isfinite(log_prob)
    flow_ll = float(log_prob[ok].mean()) if ok.any() else math.nan
    se = float(log_prob[ok].std(ddof=1) / math.sqrt(ok.sum())) if ok.sum() > 1 else math.nan
    gauss = float(GaussianBaseline().fit(points).log_prob(points).mean()) if n > 1 else math.nan
    gauss_text = f"{_num(gauss)} (full-covariance baseline fit to these data)"
    rows = [
        ("points", str(n)),
        ("dimension", str(d)),
        ("flow mean log-likelihood (nats per point)", f"{_num(flow_ll)} ± {_num(se)} (standard error)"),
        ("points with non-finite flow log-likelihood (left out of the mean)", str(int((~ok).sum()))),
        ("Gaussian mean log-likelihood (nats per point)", gauss_text),
        ("flow minus Gaussian (nats per point)", _num(flow_ll - gauss, "+.4f")),
        ("flow parameters", str(sum(p.numel() for p in flow.parameters()))),
    ]
    return rows + _history_rows(history, "point")


def _bounds(points: np.ndarray, margin: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension plot limits: the data's range widened by ``margin`` of it on each side."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    width = np.where(hi > lo, hi - lo, np.maximum(np.abs(lo), 1.0))
    return lo - margin * width, hi + margin * width


def _subset(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``k`` rows, a random subset when there are more."""
    return points if len(points) <= k else points[rng.choice(len(points), k, replace=False)]


def _histograms(ax: Any, lo: float, hi: float, data: np.ndarray, samples: np.ndarray | None = None) -> None:
    """Filled density histograms on shared bins over ``[lo, hi]``, each normalized by all its values (so values
    outside the range lower the bars rather than being silently renormalized away)."""
    edges = np.linspace(lo, hi, min(100, max(10, int(math.sqrt(len(data))))) + 1)
    for values, color in ((data, DATA_COLOR), (samples, FLOW_COLOR)):
        if values is not None:
            counts, _ = np.histogram(values, edges)
            ax.stairs(counts / max(len(values), 1) / np.diff(edges), edges, fill=True, alpha=0.45, color=color)
    ax.set_xlim(lo, hi)


def _sample_figures(
    flow: Flow, points: np.ndarray, dims: list[int], n: int, out: Path, rng: np.random.Generator, notes: list[str]
) -> dict[str, Path]:
    """Draw ``n`` flow samples and plot them against the data: the pair plot and the marginals."""
    samples = flow.sample(n).cpu().double().numpy()
    finite = np.isfinite(samples).all(axis=1)
    if not finite.all():
        notes.append(f"{int((~finite).sum())} flow samples with non-finite values are not drawn.")
    samples = samples[finite]
    lo, hi = _bounds(points)
    if (outside := ((samples < lo) | (samples > hi)).any(axis=1).mean() if len(samples) else 0.0) > 0:
        notes.append(f"{100 * outside:.1f}% of flow samples lie outside the plotted ranges in some dimension.")
    if points.shape[1] > MAX_MARGINALS:
        notes.append(f"The marginals show the first {MAX_MARGINALS} of {points.shape[1]} dimensions.")
    pairs = _plot_pairs(points, samples, dims, (lo, hi), out / "pairs.png", rng)
    return {"pairs": pairs, "marginals": _plot_marginals(points, samples, (lo, hi), out / "marginals.png")}


def _plot_density_2d(flow: Flow, points: np.ndarray, out: Path, rng: np.random.Generator) -> Path:
    """A heat map of the flow's density on a grid over the data, with the data scattered over it."""
    lo, hi = _bounds(points)
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], GRID), np.linspace(lo[1], hi[1], GRID))
    grid = torch.as_tensor(np.stack([xx.ravel(), yy.ravel()], axis=1), dtype=flow.dtype, device=flow.device)
    density = np.exp(_log_prob(flow, grid).cpu().double().numpy()).reshape(GRID, GRID)
    density[~np.isfinite(density)] = np.nan
    fig = Figure(figsize=(6, 5), dpi=DPI)
    ax = fig.add_subplot()
    extent = (lo[0], hi[0], lo[1], hi[1])
    image = ax.imshow(density, origin="lower", extent=extent, aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="flow density p(x)")
    shown = _subset(points, MAX_SCATTER, rng)
    ax.scatter(shown[:, 0], shown[:, 1], s=3, color="white", alpha=0.4, linewidths=0, label="data")
    ax.set(title="Flow density with the data", xlabel="x[0]", ylabel="x[1]", xlim=extent[:2], ylim=extent[2:])
    ax.legend(loc="upper right", markerscale=3, fontsize=8, facecolor="lightgray")
    return _save(fig, out / "density.png")


def _plot_density_1d(flow: Flow, points: np.ndarray, out: Path, rng: np.random.Generator) -> Path:
    """A histogram of 1-D data with the flow's density curve over it (``rng`` unused: one signature for both)."""
    lo, hi = _bounds(points)
    grid = np.linspace(lo[0], hi[0], 400)
    log_prob = _log_prob(flow, torch.as_tensor(grid[:, None], dtype=flow.dtype, device=flow.device))
    fig = Figure(figsize=(6, 4), dpi=DPI)
    ax = fig.add_subplot()
    _histograms(ax, lo[0], hi[0], points[:, 0])
    ax.plot(grid, np.exp(log_prob.cpu().double().numpy()), color=FLOW_COLOR, linewidth=2, label="flow density p(x)")
    ax.legend(handles=[Patch(color=DATA_COLOR, alpha=0.45, label="data histogram"), *ax.get_lines()])
    ax.set(title="Data histogram and flow density", xlabel="x[0]", ylabel="density", xlim=(lo[0], hi[0]))
    return _save(fig, out / "density.png")


def _plot_pairs(points: np.ndarray, samples: np.ndarray, dims: list[int], bounds: Any, path: Path, rng: Any) -> Path:
    """Data and samples on ``dims``: scatter plots off the diagonal, histograms on it."""
    (lo, hi), k = bounds, len(dims)
    side = 1.5 * k + 1
    fig = Figure(figsize=(side, side), dpi=DPI)
    axes = fig.subplots(k, k, squeeze=False)
    data, drawn = _subset(points, MAX_SCATTER, rng), _subset(samples, MAX_SCATTER, rng)
    for (r, i), (c, j) in ((a, b) for a in enumerate(dims) for b in enumerate(dims)):
        ax = axes[r][c]
        if r == c:
            _histograms(ax, lo[i], hi[i], points[:, i], samples[:, i])
        else:
            ax.scatter(data[:, j], data[:, i], s=2, color=DATA_COLOR, alpha=0.3, linewidths=0)
            ax.scatter(drawn[:, j], drawn[:, i], s=2, color=FLOW_COLOR, alpha=0.3, linewidths=0)
            ax.set(xlim=(lo[j], hi[j]), ylim=(lo[i], hi[i]))
        ax.tick_params(labelsize=7)
        ax.set_xlabel(f"x[{j}]" if r == k - 1 else "")
        ax.set_ylabel(f"x[{i}]" if c == 0 and r != c else ("density" if c == 0 else ""))
    return _save(fig, path, legend=True)


def _plot_marginals(points: np.ndarray, samples: np.ndarray, bounds: Any, path: Path) -> Path:
    """Histograms of data and samples for each of the first ``MAX_MARGINALS`` dimensions, four panels a row."""
    (lo, hi), m = bounds, min(points.shape[1], MAX_MARGINALS)
    ncols = min(4, m)
    nrows = math.ceil(m / ncols)
    fig = Figure(figsize=(2.5 * ncols, 2 * nrows + 0.5), dpi=DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i >= m:
            ax.set_axis_off()
            continue  # an empty panel in the last row
        _histograms(ax, lo[i], hi[i], points[:, i], samples[:, i])
        ax.set_title(f"x[{i}]", fontsize=9)
        ax.tick_params(labelsize=7)
    return _save(fig, path, legend=True)
