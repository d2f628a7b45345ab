"""The ``torchnf`` command's image models: how ``fit`` models an image array, given its options, and what
``sample``, ``score`` and ``report`` read back from a saved image model.

``fit`` records in the model's metadata ``image_shape``, ``channels_last``, ``flattened`` (whether the preset sees
vectors of ``C * H * W`` values), ``dequantization``, ``levels`` and ``value_range`` (the values drawn black and
white). Bad options are refused as :class:`click.UsageError`; the image files themselves are read by
:mod:`torchnf.image_data`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from .architectures import Glow, MultiscaleRealNVP
from .dequantization import Dequantization, UniformDequantization, VariationalDequantization
from .flow import Flow
from .image_data import ImageArray, images_for_model, read_data

IMAGE_PRESETS: tuple[type, ...] = (Glow, MultiscaleRealNVP)
"""The presets that take images ``(C, H, W)``; the others model images flattened to vectors."""


@dataclass(frozen=True)
class _ImageSetup:
    """How ``fit`` models images: the preset's event shape, the dequantization, and what the model records."""

    event_shape: tuple[int, ...]
    kind: str  # "uniform", "variational" or "none"
    levels: int | None
    metadata: dict[str, Any]
    described: str  # for the closing message, after the image shape

    def dequantizer(self) -> Dequantization | None:
        """A new dequantization (random weights for a variational one: build it after seeding)."""
        if self.kind == "none" or self.levels is None:
            return None
        kinds = {"uniform": UniformDequantization, "variational": VariationalDequantization}
        return kinds[self.kind](self.event_shape, self.levels)


def _image_setup(
    images: ImageArray,
    preset_type: type,
    layers: int | None,
    hidden: str | None,
    dequantization: str | None,
    levels: int | None,
) -> _ImageSetup:
    """Check the options for images and decide the event shape, the dequantization and the metadata to record."""
    label = images.label
    channels, height, width = images.image_shape
    takes_images = issubclass(preset_type, IMAGE_PRESETS)
    if takes_images and (layers is not None or hidden is not None):
        raise click.UsageError(
            f"--layers and --hidden set vector presets; {preset_type.__name__} takes its sizes with --set, e.g. "
            "--set steps=4 --set hidden_channels=64 --set levels=2"
        )
    integer = images.integer_valued
    kind = dequantization or ("uniform" if integer else "none")
    if kind != "none" and not integer:
        value = float(images.values[images.values != np.round(images.values)].flat[0])
        raise click.UsageError(
            f"--dequantization {kind} needs discrete images of integer values, but {label} holds non-integer values "
            f"such as {value!r}; leave --dequantization out (or pass none) to model them as continuous"
        )
    if kind == "none" and levels is not None:
        what = "--dequantization none" if dequantization else f"{label} holds non-integer values"
        raise click.UsageError(f"--levels applies to dequantized images, but {what}")
    low, high = float(images.values.min()), float(images.values.max())
    if kind != "none":
        if low < 0:
            raise click.UsageError(
                f"dequantized images hold levels 0, 1, ..., K-1, but {label} holds negative values (minimum "
                f"{low:g}); shift the data, or pass --dequantization none to model them as continuous"
            )
        levels = levels or images.default_levels()
        if high > levels - 1:
            raise click.UsageError(
                f"--levels {levels} is too small: {label} holds the value {high:g}, and levels run from 0 to K-1, so "
                f"K must be at least {int(high) + 1}"
            )
        low, high = 0.0, float(levels - 1)
    event_shape = (channels, height, width) if takes_images else (channels * height * width,)
    metadata = {
        "image_shape": [channels, height, width],
        "channels_last": images.channels_last,
        "flattened": not takes_images,
        "dequantization": kind,
        "levels": levels if kind != "none" else None,
        "value_range": [low, high],
    }
    described = f" ({levels} levels, {kind} dequantization" if kind != "none" else " (continuous"
    described += ", flattened)" if not takes_images else ")"
    return _ImageSetup(event_shape, kind, levels if kind != "none" else None, metadata, described)


def _image_shape(flow: Flow) -> list[int] | None:
    """The ``(C, H, W)`` of an image model: recorded by ``fit``, or the event shape of a flow over images."""
    shape = flow.metadata.get("image_shape")
    if shape is None and len(flow.event_shape) == 3:
        shape = list(flow.event_shape)
    return None if shape is None else [int(v) for v in shape]


def _value_range(flow: Flow) -> tuple[float, float] | None:
    """The values an image model's pictures show as black and white: recorded by ``fit``, or the levels."""
    recorded = flow.metadata.get("value_range")
    if recorded is not None:
        return float(recorded[0]), float(recorded[1])
    if flow.dequantization is not None:
        return 0.0, float(flow.dequantization.levels - 1)
    return None


def _model_images(
    flow: Flow,
    image_shape: list[int],
    data: Path,
    columns: Sequence[str | int] | None,
    key: str | None,
    drop_invalid: bool,
) -> np.ndarray:
    """The images of DATA for an image model of ``image_shape``, shaped ``(n, *event_shape)`` and checked against
    its levels."""
    read = read_data(data, columns, drop_invalid, key)
    if read.dropped_rows:
        click.echo(f"dropped {len(read.dropped_rows)} invalid row(s) of {data}", err=True)
    images = images_for_model(read, image_shape, str(data))
    values = images.reshape(len(images), *flow.event_shape)
    if flow.dequantization is not None:
        flow.dequantization.check(torch.as_tensor(values), str(data))
    return values
