"""What both reports draw alike: the figure resolution and colours, saving a figure, and the training curves."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..optimization import History

DPI = 100
DATA_COLOR, FLOW_COLOR = "tab:blue", "tab:orange"


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


def _plot_training(history: History, path: Path, unit: str = "point") -> Path:
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
    ax.set(title="Training curves", xlabel=history.unit, ylabel=f"negative log-likelihood (nats/{unit})")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)
