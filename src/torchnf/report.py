"""Model reports: plots and a metrics summary of a flow on evaluation data (``torchnf report``).

:func:`write_report` writes PNG figures and a Markdown or self-contained HTML summary into a folder. Figures are
drawn on :class:`matplotlib.figure.Figure` objects directly, so no pyplot state or interactive backend is involved.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

from .baselines import GaussianBaseline
from .flow import Flow
from .optimization import History

__all__ = ["ReportFiles", "write_report"]

DPI = 100
CHUNK = 8192  # points per log_prob call
GRID = 200  # grid points per axis of the 2-D density map
MAX_SCATTER = 5000  # data points drawn in a scatter plot (a random subset beyond that)
MAX_MARGINALS = 16
DATA_COLOR, FLOW_COLOR = "tab:blue", "tab:orange"


@dataclass(frozen=True)
class ReportFiles:
    """The files a report wrote: the summary and each figure (``None`` for figures not drawn)."""

    summary: Path
    training: Path | None = None
    density: Path | None = None
    pairs: Path | None = None
    marginals: Path | None = None

    @property
    def figures(self) -> tuple[Path, ...]:
        """The PNG files written, in the order they appear in the summary."""
        return tuple(p for p in (self.training, self.density, self.pairs, self.marginals) if p is not None)


def write_report(
    flow: Flow,
    data: np.ndarray | Tensor,
    out_dir: str | Path,
    history: History | None = None,
    dims: Sequence[int] | None = None,
    title: str = "torchnf report",
    n_samples: int = 2000,
    fmt: Literal["md", "html"] = "md",
    seed: int = 0,
    extra: Mapping[str, str] | None = None,
) -> ReportFiles:
    """Evaluate ``flow`` on ``data`` and write PNG figures and a summary (``report.md`` or ``.html``) to ``out_dir``.

    Figures: ``training.png`` (when ``history`` has entries); ``density.png`` for ``D <= 2``; ``pairs.png`` and
    ``marginals.png`` (the first 16 dimensions) for ``D > 2``. The flow is evaluated without gradients in
    evaluation mode (and returned to its mode); the caller's random state is left as it was.

    Args:
        flow: an unconditional flow over vectors.
        data: evaluation data of shape ``(n, D)``.
        out_dir: the folder to write to (created if missing; files of the same names are replaced).
        history: the fit's :class:`~torchnf.optimization.History`, for training curves and events.
        dims: the dimensions of the pair plot when ``D > 2`` (default: the first four); checked whenever given.
        title: the summary's title.
        n_samples: flow samples drawn for the pair plot and the marginals.
        fmt: ``"md"`` (Markdown) or ``"html"`` (a self-contained page).
        seed: seed of the flow's samples and of the scatter plots' subsets of large data.
        extra: additional rows for the summary, e.g. the model file and its preset config.
    """
    x = _check_inputs(flow, data, n_samples, fmt)
    n, d = x.shape
    shown = _check_dims(dims, d)
    out = Path(out_dir)
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
    summary = out / f"report.{fmt}"
    writer = _markdown if fmt == "md" else _html
    summary.write_text(writer(title, rows, notes, {k: p.name for k, p in files.items()}), encoding="utf-8")
    return ReportFiles(summary=summary, **files)


def _check_inputs(flow: Flow, data: Any, n_samples: int, fmt: str) -> Tensor:
    """Refuse what a report cannot show; return the data as an ``(n, D)`` tensor of the flow's dtype and device."""
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a torchnf Flow, got {type(flow).__name__}")
    if len(flow.event_shape) != 1:
        raise ValueError(f"report supports vector data; got event_shape {tuple(flow.event_shape)}")
    if flow.context_shape is not None:
        raise ValueError(f"report supports unconditional flows; this one takes a context {tuple(flow.context_shape)}")
    if fmt not in ("md", "html"):
        raise ValueError(f"fmt must be 'md' or 'html', got {fmt!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    x, _ = flow.check_data(data, name="data", allow_empty=False)
    if x.dim() != 2:
        raise ValueError(f"data must have shape (n, {flow.event_shape[0]}), got {tuple(x.shape)}")
    return x


def _check_dims(dims: Sequence[int] | None, d: int) -> list[int]:
    """The pair-plot dimensions: ``dims`` checked (ints in range, unique, at least 2), or the first four."""
    if dims is None:
        return list(range(min(d, 4)))
    dims = list(dims)
    if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) for i in dims):
        raise ValueError(f"dims must be ints, got {dims!r}")
    if len(dims) < 2:
        raise ValueError(f"dims must name at least 2 dimensions for a pair plot, got {dims}")
    if bad := [int(i) for i in dims if not 0 <= i < d]:
        raise ValueError(f"dims {bad} out of range for {d}-dimensional data (valid: 0 to {d - 1})")
    if len(set(dims)) != len(dims):
        raise ValueError(f"dims must be unique, got {dims}")
    return [int(i) for i in dims]


@contextmanager
def _seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Seed the generators the flow samples from, restoring the caller's random state afterwards."""
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
    else:
        count = torch.get_device_module(device.type).device_count()
        with torch.random.fork_rng(devices=range(count), device_type=device.type):
            torch.manual_seed(seed)
            yield


def _log_prob(flow: Flow, x: Tensor) -> Tensor:
    """Log-densities of validated points, in chunks."""
    return torch.cat([flow.unchecked_log_prob(x[i : i + CHUNK]) for i in range(0, x.shape[0], CHUNK)])


def _num(value: float, spec: str = ".4f") -> str:
    """A number for the summary, or ``n/a`` when it is not finite."""
    return format(value, spec) if math.isfinite(value) else "n/a"


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
    if history is not None:
        rollbacks = f"{len(history.rollbacks)}" + (f" (at steps {history.rollbacks})" if history.rollbacks else "")
        rows += [
            (f"{history.unit}s trained", str(history.step[-1]) if history.step else "0"),
            ("stop reason", history.stop_reason or "(none recorded)"),
            (f"best {history.unit}", str(history.best_step)),
            *([("best validation loss (nats per point)", f"{history.best_val_loss:.4f}")] if history.val_loss else []),
            ("skipped steps", str(history.skipped_steps)),
            ("rollbacks", rollbacks),
        ]
    return rows


def _save(fig: Figure, path: Path, legend: bool = False) -> Path:
    """Lay out (with a data/samples legend above the panels), write and release a figure."""
    top = 1.0
    if legend:
        handles = [Patch(color=c, alpha=0.6, label=k) for c, k in ((DATA_COLOR, "data"), (FLOW_COLOR, "flow samples"))]
        fig.legend(handles=handles, loc="upper center", ncol=2, frameon=False)
        top = 1 - 0.4 / fig.get_figheight()
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(path, dpi=DPI)
    fig.clear()
    return path


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


def _plot_training(history: History, path: Path) -> Path:
    """Training and validation loss against the step, with the kept step and any rollbacks marked."""
    fig = Figure(figsize=(6, 4), dpi=DPI)
    ax = fig.add_subplot()
    style = {"marker": "o", "markersize": 3} if len(history.step) <= 30 else {}
    ax.plot(history.step, history.train_loss, label="training", **style)
    if history.val_loss:
        ax.plot(history.step[: len(history.val_loss)], history.val_loss, label="validation", **style)
    if history.best_step > 0:
        label = f"best {history.unit} {history.best_step}"
        ax.axvline(history.best_step, color="gray", linestyle="--", linewidth=1, label=label)
    for i, step in enumerate(history.rollbacks):
        ax.axvline(step, color="tab:red", linestyle=":", linewidth=1, label="rollback" if i == 0 else None)
    ax.set(title="Training curves", xlabel=history.unit, ylabel="negative log-likelihood (nats/point)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


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


CAPTIONS = {
    "training": ("Training", "Training and validation loss; the dashed line marks the step whose weights were kept."),
    "density": ("Density", "The flow's density over the data (axes: the data's range plus a 10% margin)."),
    "pairs": ("Pair plot", "Data and flow samples: scatter plots off the diagonal, histograms on it."),
    "marginals": ("Marginals", "Per-dimension histograms of the data and of flow samples."),
}

STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}table{border-collapse:collapse}"
    "th,td{border:1px solid #bbb;padding:.25em .6em;text-align:left}img{max-width:100%}"
)


def _markdown(title: str, rows: list[tuple[str, str]], notes: list[str], images: dict[str, str]) -> str:
    """The Markdown summary: title, metrics table, notes and image links (cells escaped for the table)."""

    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")

    lines = [f"# {cell(title)}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {cell(k)} | {cell(v)} |" for k, v in rows]
    lines += [""] + [f"- {cell(note)}" for note in notes] + ([""] if notes else [])
    for key, name in images.items():
        heading, caption = CAPTIONS[key]
        lines += [f"## {heading}", "", f"![{caption}]({name})", ""]
    return "\n".join(lines)


def _html(title: str, rows: list[tuple[str, str]], notes: list[str], images: dict[str, str]) -> str:
    """The HTML summary: one self-contained page, every text escaped."""
    e = html.escape
    parts = [
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{e(title)}</title>',
        f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{e(title)}</h1>",
        "<table>\n<tr><th>metric</th><th>value</th></tr>",
        *(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in rows),
        "</table>",
    ]
    if notes:
        parts += ["<ul>", *(f"<li>{e(note)}</li>" for note in notes), "</ul>"]
    for key, name in images.items():
        heading, caption = CAPTIONS[key]
        parts.append(f'<h2>{e(heading)}</h2>\n<figure><img src="{e(name)}" alt="{e(caption)}">')
        parts.append(f"<figcaption>{e(caption)}</figcaption></figure>")
    return "\n".join([*parts, "</body>\n</html>\n"])
