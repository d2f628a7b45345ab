r"""Working with image flows: bits per dimension, latent interpolation and image grids.

Bits per dimension is the negative log-likelihood in base 2 per coordinate, :math:`-\log_2 P(x) / D`. For a flow
with a :mod:`~torchnf.dequantization` it is the bound on the discrete data's probability, which already accounts for
every pre-transform: the dequantization's scaling to the unit cube (its :math:`D \log K`), and the log-dets of the
bijection's own pre-transforms (:class:`~torchnf.bijections.Logit`) and of the data standardization, all inside
:meth:`~torchnf.Flow.log_prob`. For a continuous flow it is the density's, in the units of the data.

Interpolation encodes two images, moves along a path in the latent space and decodes (Kingma and Dhariwal 2018,
*Glow*, section 5.4): linearly, or along the great circle (White 2016, *Sampling generative networks*), which keeps
the norm typical of Gaussian latents,

.. math::

    \mathrm{slerp}(z_0, z_1; t) = \frac{\sin((1 - t)\theta)}{\sin\theta} z_0 + \frac{\sin(t\theta)}{\sin\theta} z_1,
    \qquad \cos\theta = \frac{z_0 \cdot z_1}{\lVert z_0 \rVert \lVert z_1 \rVert}.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from ._validation import as_tensor

if TYPE_CHECKING:
    from .flow import Flow

__all__ = ["Interpolation", "bits_per_dim", "image_grid", "interpolate", "save_image", "slerp"]

Interpolation = Literal["linear", "spherical"]


@torch.no_grad()
def bits_per_dim(flow: Flow, x: Any, context: Any = None, *, samples: int = 1, batch_size: int = 256) -> float:
    """The mean negative log-likelihood of ``x`` in bits per dimension, :math:`-\\log_2 P(x) / D`.

    Args:
        flow: the flow, evaluated in evaluation mode.
        x: data of shape ``(n, *event_shape)`` (discrete levels for a dequantized flow).
        context: contexts of shape ``(n, *context_shape)`` for a conditional flow.
        samples: dequantization draws per point (the importance-weighted bound; a dequantized flow only).
        batch_size: points per evaluation pass.
    """
    x, context = flow.check_data(x, context, allow_empty=False)
    if x.dim() != len(flow.event_shape) + 1:
        raise ValueError(f"x must have shape (n, {', '.join(map(str, flow.event_shape))}), got {tuple(x.shape)}")
    was_training = flow.training
    flow.eval()
    total = 0.0
    for start in range(0, x.shape[0], batch_size):
        stop = start + batch_size
        c = None if context is None else context[start:stop]
        total += float(flow.log_prob(x[start:stop], c, samples=samples).sum())
    flow.train(was_training)
    return -total / (x.shape[0] * flow.event_shape.numel() * math.log(2))


def slerp(z0: Tensor, z1: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between latent vectors ``z0`` and ``z1`` (flattened) at the fractions ``t``.

    Returns shape ``(len(t), *z0.shape)``; parallel vectors (angle below 1e-6) interpolate linearly. Opposite
    vectors have no unique great circle between them and are refused.
    """
    a, b = z0.flatten(), z1.flatten()
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(torch.finfo(a.dtype).tiny)
    theta = torch.arccos(cos.clamp(-1, 1))
    angle = float(theta.detach())
    if math.pi - angle < 1e-6:
        raise ValueError("the latent vectors are opposite: no unique great circle joins them; interpolate linearly")
    t = t[:, None]
    if angle < 1e-6:
        path = (1 - t) * a + t * b
    else:
        path = (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / torch.sin(theta)
    return path.reshape(len(t), *z0.shape)


@torch.no_grad()
def interpolate(
    flow: Flow,
    start: Any,
    end: Any,
    steps: int = 8,
    method: Interpolation = "spherical",
    context: Any = None,
) -> Tensor:
    """Decode ``steps`` points on a latent path from ``start`` to ``end``, two data points of ``event_shape``.

    The ends decode to the inputs themselves (up to the dequantization's levels, or floating-point rounding). A
    conditional flow takes one ``context`` for the whole path. Returns ``(steps, *event_shape)``.

    Example:
        >>> import torch
        >>> from torchnf import Flow, Glow
        >>> flow = Flow(Glow((1, 4, 4), levels=1, steps=1, hidden_channels=4))
        >>> a, b = torch.rand(2, 1, 4, 4)
        >>> path = interpolate(flow, a, b, steps=5)
        >>> path.shape, bool(torch.allclose(path[0], a, atol=1e-5))
        (torch.Size([5, 1, 4, 4]), True)
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int of at least 2, got {steps!r}")
    if method not in ("linear", "spherical"):
        raise ValueError(f"unknown interpolation {method!r}; expected 'linear' or 'spherical'")
    was_training = flow.training
    flow.eval()
    ends = [flow.check_data(point, context, name)[0] for point, name in ((start, "start"), (end, "end"))]
    for point, name in zip(ends, ("start", "end"), strict=True):
        if point.shape != flow.event_shape:
            raise ValueError(f"{name} must be one point of shape {tuple(flow.event_shape)}, got {tuple(point.shape)}")
    z0, z1 = (flow.encode(point, context) for point in ends)
    t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device)
    path = slerp(z0, z1, t) if method == "spherical" else (1 - t[:, None]) * z0.flatten() + t[:, None] * z1.flatten()
    decoded = flow.decode(path.reshape(steps, *z0.shape), context)
    flow.train(was_training)
    return decoded


def image_grid(
    images: Any, columns: int | None = None, value_range: tuple[float, float] | None = None, padding: int = 1
) -> np.ndarray:
    """Tile images into one picture with values in ``[0, 1]``.

    Args:
        images: ``(n, H, W)`` grey, or ``(n, C, H, W)`` with ``C`` 1 (grey) or 3 (RGB) channels.
        columns: images per row (default: about the square root of ``n``).
        value_range: the values shown as black and white (default: the images' minimum and maximum).
        padding: pixels of white between images.

    Returns:
        ``(rows, cols)`` for grey images, ``(rows, cols, 3)`` for RGB.
    """
    array = as_tensor(images, "images").detach().cpu().double().numpy()
    if array.ndim == 4 and array.shape[1] in (1, 3):
        array = array[:, 0] if array.shape[1] == 1 else array.transpose(0, 2, 3, 1)
    elif array.ndim != 3:
        raise ValueError(f"images must have shape (n, H, W) or (n, C, H, W) with C 1 or 3, got {array.shape}")
    n = array.shape[0]
    if n == 0:
        raise ValueError("images is empty")
    if columns is not None and (isinstance(columns, bool) or not isinstance(columns, int) or columns < 1):
        raise ValueError(f"columns must be a positive int or None, got {columns!r}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, got {padding!r}")
    low, high = value_range if value_range is not None else (float(array.min()), float(array.max()))
    array = np.clip((array - low) / (high - low if high > low else 1.0), 0, 1)
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    height, width = array.shape[1:3]
    grid = np.ones((rows * (height + padding) + padding, columns * (width + padding) + padding, *array.shape[3:]))
    for i, image in enumerate(array):
        top, left = padding + (i // columns) * (height + padding), padding + (i % columns) * (width + padding)
        grid[top : top + height, left : left + width] = image
    return grid


def save_image(grid: np.ndarray, path: str | Path, scale: int = 1) -> None:
    """Write a picture from :func:`image_grid` as a PNG, each pixel enlarged to ``scale`` by ``scale``."""
    from matplotlib import image as mpimg

    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: the folder {path.parent} does not exist")
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    mpimg.imsave(path, grid, cmap="gray" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0, format="png")
