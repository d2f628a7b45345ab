"""A report's summary page: :class:`ReportFiles`, the figures' captions, and the Markdown or HTML it is written as.

Also the formatting both reports' metric rows share: numbers (:func:`_num`) and the rows about training
(:func:`_history_rows`).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

from ..optimization import History


@dataclass(frozen=True)
class ReportFiles:
    """The files a report wrote: the summary and each figure (``None`` for figures not drawn)."""

    summary: Path
    training: Path | None = None
    density: Path | None = None
    pairs: Path | None = None
    marginals: Path | None = None
    samples: Path | None = None
    cold_samples: Path | None = None
    data_images: Path | None = None
    interpolation: Path | None = None

    @property
    def figures(self) -> tuple[Path, ...]:
        """The PNG files written, in the order they appear in the summary."""
        return tuple(getattr(self, key) for key in CAPTIONS if getattr(self, key) is not None)


def _write_summary(
    out: Path,
    fmt: str,
    title: str,
    rows: list[tuple[str, str]],
    notes: list[str],
    files: dict[str, Path],
    temperature: float = 1.0,
) -> ReportFiles:
    """Write ``report.md`` or ``report.html`` linking the figures, in the order of :data:`CAPTIONS`."""
    figures = [
        (heading.format(temperature=temperature), caption.format(temperature=temperature), files[key].name)
        for key, (heading, caption) in CAPTIONS.items()
        if key in files
    ]
    summary = out / f"report.{fmt}"
    writer = _markdown if fmt == "md" else _html
    summary.write_text(writer(title, rows, notes, figures), encoding="utf-8")
    return ReportFiles(summary=summary, **files)


def _num(value: float, spec: str = ".4f") -> str:
    """A number for the summary, or ``n/a`` when it is not finite."""
    return format(value, spec) if math.isfinite(value) else "n/a"


def _history_rows(history: History | None, unit: str) -> list[tuple[str, str]]:
    """The summary's rows about training: ``unit`` is what the loss is per (a point, an image)."""
    if history is None:
        return []
    rollbacks = f"{len(history.rollbacks)}" + (f" (at steps {history.rollbacks})" if history.rollbacks else "")
    best = [(f"best validation loss (nats per {unit})", f"{history.best_val_loss:.4f}")] if history.val_loss else []
    return [
        (f"{history.unit}s trained", str(history.step[-1]) if history.step else "0"),
        ("stop reason", history.stop_reason or "(none recorded)"),
        (f"best {history.unit}", str(history.best_step)),
        *best,
        ("skipped steps", str(history.skipped_steps)),
        ("rollbacks", rollbacks),
    ]


CAPTIONS = {
    "training": ("Training", "Training and validation loss; the dashed line marks the step whose weights were kept."),
    "density": ("Density", "The flow's density over the data (axes: the data's range plus a 10% margin)."),
    "pairs": ("Pair plot", "Data and flow samples: scatter plots off the diagonal, histograms on it."),
    "marginals": ("Marginals", "Per-dimension histograms of the data and of flow samples."),
    "samples": ("Samples", "Flow samples at temperature 1."),
    "cold_samples": (
        "Samples at temperature {temperature:g}",
        "Flow samples at temperature {temperature:g}: the latent spread scaled down, for cleaner, less varied images.",
    ),
    "data_images": ("Data", "Images of the evaluation data, for comparison."),
    "interpolation": (
        "Interpolation",
        "Spherical interpolation in the latent space between pairs of data images, one pair per row: the first and "
        "last image of a row are the data images themselves (decoded from their latent points).",
    ),
}

STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}table{border-collapse:collapse}"
    "th,td{border:1px solid #bbb;padding:.25em .6em;text-align:left}img{max-width:100%}"
)


def _markdown(title: str, rows: list[tuple[str, str]], notes: list[str], images: list[tuple[str, str, str]]) -> str:
    """The Markdown summary: title, metrics table, notes and image links (cells escaped for the table)."""

    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")

    lines = [f"# {cell(title)}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {cell(k)} | {cell(v)} |" for k, v in rows]
    lines += [""] + [f"- {cell(note)}" for note in notes] + ([""] if notes else [])
    for heading, caption, name in images:
        lines += [f"## {cell(heading)}", "", f"![{cell(caption)}]({name})", ""]
    return "\n".join(lines)


def _html(title: str, rows: list[tuple[str, str]], notes: list[str], images: list[tuple[str, str, str]]) -> str:
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
    for heading, caption, name in images:
        parts.append(f'<h2>{e(heading)}</h2>\n<figure><img src="{e(name)}" alt="{e(caption)}">')
        parts.append(f"<figcaption>{e(caption)}</figcaption></figure>")
    return "\n".join([*parts, "</body>\n</html>\n"])
