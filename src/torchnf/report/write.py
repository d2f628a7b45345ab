""":func:`write_report`: the checks on its arguments, and the choice of a vector or an image report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ..flow import Flow
from ..optimization import History
from .images import _image_report
from .summary import ReportFiles
from .vectors import _vector_report


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
    image_shape: Sequence[int] | None = None,
    temperature: float = 0.7,
    value_range: tuple[float, float] | None = None,
) -> ReportFiles:
    """Evaluate ``flow`` on ``data`` and write PNG figures and a summary (``report.md`` or ``.html``) to ``out_dir``.

    Figures: ``training.png`` (when ``history`` has entries); ``density.png`` for ``D <= 2``; ``pairs.png`` and
    ``marginals.png`` (the first 16 dimensions) for ``D > 2``. The flow is evaluated without gradients in
    evaluation mode (and returned to its mode); the caller's random state is left as it was.

    An image report (a flow over ``(C, H, W)``, or ``image_shape`` given) draws instead ``samples.png`` (flow
    samples at temperature 1), ``samples_cold.png`` (at ``temperature``), ``data.png`` (data images) and
    ``interpolation.png`` (spherical latent interpolations between pairs of data images, a pair per row), and
    reports bits per dimension (:func:`torchnf.images.bits_per_dim`, with 4 dequantization draws per image for a
    dequantized flow) next to an independent per-pixel categorical baseline fitted to the same data (dequantized
    flows only: it needs discrete levels).

    Args:
        flow: an unconditional flow over vectors or images.
        data: evaluation data of shape ``(n, D)``, or ``(n, *event_shape)``; a flow over flattened images also
            takes ``(n, *image_shape)``.
        out_dir: the folder to write to (created if missing; files of the same names are replaced).
        history: the fit's :class:`~torchnf.optimization.History`, for training curves and events.
        dims: the dimensions of the pair plot when ``D > 2`` (default: the first four); checked whenever given,
            and refused for an image report (which has no pair plot).
        title: the summary's title.
        n_samples: flow samples drawn for the pair plot and the marginals; an image report draws at most 64.
        fmt: ``"md"`` (Markdown) or ``"html"`` (a self-contained page).
        seed: seed of the flow's samples and of the scatter plots' subsets of large data (and of the images
            shown and paired, for an image report).
        extra: additional rows for the summary, e.g. the model file and its preset config.
        image_shape: ``(C, H, W)`` of the images a vector flow models flattened (C order); default: the flow's
            event shape when it has three dimensions, else a vector report.
        temperature: the lower sampling temperature of an image report's second grid.
        value_range: the values an image report's grids show as black and white (default: ``0`` and ``K - 1``
            for a dequantized flow of ``K`` levels, else the data's minimum and maximum).
    """
    shape = _check_image_shape(flow, image_shape)
    if shape is not None:
        x = _check_inputs(flow, data, n_samples, fmt, shape)
        if dims is not None:
            raise ValueError("dims selects the dimensions of a pair plot, which an image report does not draw")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        options = {"n_samples": n_samples, "temperature": float(temperature), "value_range": value_range}
        return _image_report(flow, x, Path(out_dir), shape, history, title, fmt, seed, extra, **options)
    x = _check_inputs(flow, data, n_samples, fmt)
    shown = _check_dims(dims, x.shape[1])
    return _vector_report(flow, x, Path(out_dir), shown, history, title, fmt, seed, extra, n_samples)


def _check_image_shape(flow: Flow, image_shape: Sequence[int] | None) -> tuple[int, int, int] | None:
    """The ``(C, H, W)`` of an image report, or ``None`` for a vector report."""
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a torchnf Flow, got {type(flow).__name__}")
    event_shape = tuple(flow.event_shape)
    if image_shape is None:
        return (event_shape[0], event_shape[1], event_shape[2]) if len(event_shape) == 3 else None
    shape = tuple(image_shape)
    if len(shape) != 3 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in shape):
        raise ValueError(f"image_shape must be three positive ints (C, H, W), got {image_shape!r}")
    channels, height, width = (int(v) for v in shape)
    if (len(event_shape) == 3 and event_shape != (channels, height, width)) or (
        len(event_shape) == 1 and event_shape[0] != channels * height * width
    ):
        raise ValueError(
            f"image_shape {(channels, height, width)} does not fit the flow's event_shape {event_shape} (a flow over "
            "images of that shape, or over vectors of their C * H * W values)"
        )
    return channels, height, width


def _check_inputs(
    flow: Flow, data: Any, n_samples: int, fmt: str, image_shape: tuple[int, int, int] | None = None
) -> Tensor:
    """Refuse what a report cannot show; return the data as an ``(n, *event_shape)`` tensor of the flow's dtype
    and device."""
    if not isinstance(flow, Flow):
        raise TypeError(f"flow must be a torchnf Flow, got {type(flow).__name__}")
    if len(flow.event_shape) != 1 and image_shape is None:
        raise ValueError(f"report supports vector data and images (C, H, W); got event_shape {tuple(flow.event_shape)}")
    if flow.context_shape is not None:
        raise ValueError(f"report supports unconditional flows; this one takes a context {tuple(flow.context_shape)}")
    if fmt not in ("md", "html"):
        raise ValueError(f"fmt must be 'md' or 'html', got {fmt!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    if image_shape is not None and len(flow.event_shape) == 1:
        array = torch.as_tensor(data) if isinstance(data, np.ndarray) else data
        if isinstance(array, Tensor) and array.dim() == 4 and tuple(array.shape[1:]) == image_shape:
            data = array.reshape(array.shape[0], -1)  # images for a flow over flattened images
    x, _ = flow.check_data(data, name="data", allow_empty=False)
    if x.dim() != len(flow.event_shape) + 1:
        raise ValueError(f"data must have shape (n, {', '.join(map(str, flow.event_shape))}), got {tuple(x.shape)}")
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
