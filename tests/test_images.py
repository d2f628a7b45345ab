"""Image flows: bits per dimension, latent interpolation, encoding and decoding, temperature, class-conditional
sampling, and image grids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from bijection_registry import perturb
from matplotlib import image as mpimg
from torch import Tensor

from torchnf import DiagonalNormal, Flow, Glow, MultiscaleRealNVP, RealNVP, StandardNormal
from torchnf.dequantization import UniformDequantization, VariationalDequantization
from torchnf.images import bits_per_dim, image_grid, interpolate, save_image, slerp

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads only add synchronization

IMAGE = (1, 4, 4)
PIXELS = 16
K = 4  # levels of the dequantized flows
CLASSES = 3


def image_flow(
    preset: type[Glow | MultiscaleRealNVP] = Glow,
    levels: int | None = None,
    context: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Flow:
    """A perturbed tiny image flow over 1 x 4 x 4 images, dequantized to ``levels`` levels when given, and
    class-conditional (a one-hot context of 3 classes) when ``context``."""
    torch.manual_seed(0)
    options = {"levels": 1, "steps": 1} if preset is Glow else {"levels": 2, "steps": 1}
    bijection = preset(IMAGE, (CLASSES,) if context else None, hidden_channels=4, blocks=1, **options)
    dequantization = None if levels is None else UniformDequantization(IMAGE, levels)
    flow = Flow(bijection, dequantization=dequantization).to(dtype)
    perturb(flow, seed=1)
    return flow.eval()


def pixels(n: int, levels: int | None = None, seed: int = 0) -> Tensor:
    """``n`` random images: in (0, 1) (continuous), or integer levels."""
    generator = torch.Generator().manual_seed(seed)
    if levels is None:
        return torch.rand(n, *IMAGE, generator=generator)
    return torch.randint(0, levels, (n, *IMAGE), generator=generator).float()


# -- bits per dimension --------------------------------------------------------------------------------------------


def test_bits_per_dim_of_a_continuous_flow() -> None:
    """For a continuous flow, bits per dimension is -mean(log p) / (D ln 2), whatever the chunk size, for images and
    vectors (D the number of coordinates); float64 rounding only."""
    flow = image_flow(dtype=torch.float64)
    x = pixels(7).double()
    expected = -float(flow.log_prob(x).detach().mean()) / (PIXELS * math.log(2))
    assert bits_per_dim(flow, x) == pytest.approx(expected, rel=1e-12)
    assert bits_per_dim(flow, x, batch_size=3) == pytest.approx(expected, rel=1e-12)
    vectors = Flow(RealNVP(3, layers=2, hidden=(8, 8))).double()
    points = torch.randn(5, 3, dtype=torch.float64)
    expected = -float(vectors.log_prob(points).detach().mean()) / (3 * math.log(2))
    assert bits_per_dim(vectors, points) == pytest.approx(expected, rel=1e-12)


def test_bits_per_dim_of_a_dequantized_flow() -> None:
    """For a dequantized flow, bits per dimension is the bound of ``log_prob`` in bits per pixel: the same value
    under the same seed, with one draw and with importance weighting; a flow in training mode is evaluated in
    evaluation mode and left in training mode."""
    flow = image_flow(levels=K, dtype=torch.float64)
    x = pixels(6, K).double()
    for samples in (1, 4):
        torch.manual_seed(3)
        expected = -float(flow.log_prob(x, samples=samples).detach().mean()) / (PIXELS * math.log(2))
        torch.manual_seed(3)
        flow.train()
        assert bits_per_dim(flow, x, samples=samples) == pytest.approx(expected, rel=1e-12)
        assert flow.training
    assert 0 < expected < 10, "a bound on a probability of 4 levels per pixel is positive"


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.zeros(0, *IMAGE), "empty"),
        (torch.zeros(IMAGE), r"shape \(n, 1, 4, 4\)"),
        (torch.zeros(2, 2, *IMAGE), r"shape \(n, 1, 4, 4\)"),
        (torch.zeros(3, 2, 4, 4), r"shape \(\.\.\., 1, 4, 4\)"),
        (torch.full((3, *IMAGE), 0.5), "integer levels"),
    ],
    ids=["empty", "one-image", "two-batch-dimensions", "wrong-channels", "not-levels"],
)
def test_bits_per_dim_refuses_bad_data(x: Tensor, message: str) -> None:
    """Empty data, a single image, extra batch dimensions, the wrong image shape and (for a dequantized flow)
    values that are not levels are refused."""
    with pytest.raises(ValueError, match=message):
        bits_per_dim(image_flow(levels=K), x)


# -- interpolation -------------------------------------------------------------------------------------------------


def test_slerp_ends_are_the_inputs() -> None:
    """The path starts at z0 and ends at z1, in the shape of the inputs; float64 rounding only."""
    generator = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(2, 2, 3, generator=generator, dtype=torch.float64)
    path = slerp(z0, z1, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert path.shape == (2, 2, 3)
    torch.testing.assert_close(path[0], z0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(path[1], z1, rtol=1e-12, atol=1e-12)


def test_slerp_keeps_the_norm_and_moves_at_constant_angular_speed() -> None:
    """Between two vectors of equal norm, every point of the path has that norm, and the angle from z0 grows
    linearly with t (the great circle, travelled at constant speed); float64 rounding only."""
    generator = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(2, 16, generator=generator, dtype=torch.float64)
    z1 = z1 * z0.norm() / z1.norm()
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    path = slerp(z0, z1, t)
    torch.testing.assert_close(path.norm(dim=1), z0.norm().expand(11), rtol=1e-12, atol=0)
    angle = torch.arccos((path @ z0 / (path.norm(dim=1) * z0.norm())).clamp(-1, 1))
    theta = torch.arccos(z0 @ z1 / z0.norm() ** 2)
    torch.testing.assert_close(angle, t * theta, rtol=0, atol=1e-7)  # arccos near 1 loses half the digits


@pytest.mark.parametrize("factor", [1.0, 3.0], ids=["equal", "parallel"])
def test_slerp_of_parallel_vectors_is_linear(factor: float) -> None:
    """Vectors pointing the same way (no great circle between them) interpolate linearly, without NaN."""
    z0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    path = slerp(z0, factor * z0, t)
    torch.testing.assert_close(path, (1 - t[:, None]) * z0 + t[:, None] * factor * z0, rtol=1e-12, atol=1e-12)


def test_slerp_refuses_opposite_vectors() -> None:
    """Opposite vectors are joined by infinitely many great circles: refused instead of an arbitrary path."""
    z0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    with pytest.raises(ValueError, match="opposite"):
        slerp(z0, -z0, torch.linspace(0, 1, 5, dtype=torch.float64))


def test_interpolation_of_a_continuous_flow() -> None:
    """A path of ``steps`` images starts and ends at the inputs (to 1e-5: float32 round trips through the flow);
    the linear and spherical paths share their ends and differ in between, and each is that path in the latent
    space: the encoded points are the linear or spherical interpolation of the encoded ends (to 1e-4, float32)."""
    flow = image_flow()
    start, end = pixels(2)
    paths = {method: interpolate(flow, start, end, steps=5, method=method) for method in ("linear", "spherical")}
    with torch.no_grad():  # slerp of latents that require grad warns when it reads the angle
        z0, z1 = flow.encode(start), flow.encode(end)
    t = torch.linspace(0, 1, 5)[:, None]
    expected = {"linear": (1 - t) * z0 + t * z1, "spherical": slerp(z0, z1, t[:, 0])}
    for method, path in paths.items():
        assert path.shape == (5, *IMAGE)
        torch.testing.assert_close(path[0], start, rtol=0, atol=1e-5)
        torch.testing.assert_close(path[-1], end, rtol=0, atol=1e-5)
        torch.testing.assert_close(flow.encode(path), expected[method], rtol=0, atol=1e-4)
    differences = (paths["linear"][1:-1] - paths["spherical"][1:-1]).flatten(1).abs().amax(1)
    assert bool((differences > 1e-3).all()), differences
    assert torch.equal(interpolate(flow, start, end), interpolate(flow, start, end, steps=8, method="spherical"))


def test_interpolation_of_a_dequantized_flow_ends_exactly_at_the_inputs() -> None:
    """A dequantized flow's path consists of levels and starts and ends exactly at the input images (encoded at the
    centers of their bins, decoded back into the same bins)."""
    flow = image_flow(levels=K)
    start, end = pixels(2, K)
    for method in ("linear", "spherical"):
        path = interpolate(flow, start, end, steps=6, method=method)
        assert path.shape == (6, *IMAGE)
        assert torch.equal(path[0], start) and torch.equal(path[-1], end)
        assert torch.equal(path, path.round()) and path.min() >= 0 and path.max() <= K - 1


def test_interpolation_with_a_class_context() -> None:
    """A class-conditional flow interpolates under one one-hot context shared by the whole path: the ends are the
    inputs under every class, and the classes give different paths in between."""
    flow = image_flow(context=True)
    start, end = pixels(2)
    paths = []
    for label in torch.eye(CLASSES):
        path = interpolate(flow, start, end, steps=4, context=label)
        assert path.shape == (4, *IMAGE)
        torch.testing.assert_close(path[0], start, rtol=0, atol=1e-5)
        torch.testing.assert_close(path[-1], end, rtol=0, atol=1e-5)
        paths.append(path)
    assert float((paths[0][1:-1] - paths[1][1:-1]).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="conditional"):
        interpolate(flow, start, end)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"steps": 1}, "steps must be an int of at least 2"),
        ({"steps": True}, "steps must be an int of at least 2"),
        ({"steps": 4.0}, "steps must be an int of at least 2"),
        ({"method": "cubic"}, "unknown interpolation 'cubic'"),
        ({"start": torch.zeros(2, *IMAGE)}, r"start must be one point of shape \(1, 4, 4\)"),
        ({"end": torch.zeros(1, 4, 5)}, r"end must have shape"),
    ],
    ids=["one-step", "bool-steps", "float-steps", "unknown-method", "batch-start", "wrong-end"],
)
def test_interpolation_refuses_bad_arguments(options: dict[str, object], message: str) -> None:
    """Fewer than two steps, non-int steps, an unknown method and start or end points of the wrong shape are
    refused."""
    flow = image_flow()
    arguments = {"start": torch.zeros(IMAGE), "end": torch.zeros(IMAGE), **options}
    with pytest.raises(ValueError, match=message):
        interpolate(flow, **arguments)  # type: ignore[arg-type]


# -- encoding and decoding -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", [Glow, MultiscaleRealNVP])
def test_encode_and_decode_are_inverse_for_continuous_flows(preset: type[Glow | MultiscaleRealNVP]) -> None:
    """``encode`` maps images to flat latent vectors of the bijection's ``latent_shape`` (C H W values), and
    ``decode`` maps them back (to 1e-5, float32 rounding)."""
    flow = image_flow(preset)
    x = pixels(5)
    z = flow.encode(x)
    assert flow.bijection.latent_shape == (PIXELS,) and z.shape == (5, PIXELS)
    torch.testing.assert_close(flow.decode(z), x, rtol=0, atol=1e-5)
    torch.testing.assert_close(flow.encode(x[0]), z[0])


@pytest.mark.parametrize("levels", [K, 256])
def test_encode_and_decode_are_exact_for_dequantized_flows(levels: int) -> None:
    """A dequantized flow encodes levels at the centers of their bins and decodes any latent point to levels:
    decoding an encoding gives the levels back exactly."""
    flow = image_flow(levels=levels)
    x = pixels(5, levels)
    z = flow.encode(x)
    assert z.shape == (5, PIXELS)
    torch.testing.assert_close(z, flow.bijection((x + 0.5) / levels)[0])
    assert torch.equal(flow.decode(z), x)
    decoded = flow.decode(3 * torch.randn(20, PIXELS))
    assert torch.equal(decoded, decoded.round()) and decoded.min() >= 0 and decoded.max() <= levels - 1
    with pytest.raises(ValueError, match="integer levels"):
        flow.encode(x + 0.5)


# -- temperature ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0, -1.0, True, float("nan"), "1"], ids=repr)
def test_temperature_must_be_positive(temperature: object) -> None:
    """A temperature of zero, a negative one, a bool, NaN or a string is refused by every sampling method."""
    flow = image_flow()
    for sample in (flow.sample, flow.rsample, flow.sample_and_log_prob, flow.rsample_and_log_prob):
        with pytest.raises(ValueError, match="temperature must be a positive number"):
            sample(2, temperature=temperature)  # type: ignore[operator]


@pytest.mark.parametrize("base", [StandardNormal(PIXELS), DiagonalNormal(PIXELS)], ids=["standard", "diagonal"])
def test_temperature_scales_the_base_spread(base: DiagonalNormal) -> None:
    """Under the same seed, a base draw at temperature T is the draw at temperature 1 moved T times as far from the
    mean (a learned diagonal normal is perturbed first); float32 rounding only."""
    perturb(base, seed=2)
    torch.manual_seed(0)
    cool = base.rsample(torch.Size([5]), 0.3)
    torch.manual_seed(0)
    draw = base.rsample(torch.Size([5]))
    torch.testing.assert_close(cool - base.loc, 0.3 * (draw - base.loc))


def test_temperature_scales_the_samples_of_a_fresh_flow() -> None:
    """A fresh Glow without its logit is linear (identity ActNorm, zero-initialized couplings, a rotation) and a
    fresh Real NVP is the identity, so under the same seed their samples at temperature T are T times those at 1."""
    torch.manual_seed(0)
    glow = Glow(IMAGE, levels=1, steps=1, hidden_channels=4, pre_transform=None)
    for flow in (Flow(glow), Flow(RealNVP(3, layers=2, hidden=(8, 8)))):
        torch.manual_seed(1)
        cool = flow.sample(50, temperature=0.5)
        torch.manual_seed(1)
        torch.testing.assert_close(cool, 0.5 * flow.sample(50))


def test_temperature_decodes_scaled_base_draws() -> None:
    """For any flow, a sample at temperature T decodes T times a base draw (same seed), and the log-densities that
    come with tempered samples are the flow's own (not of the tempered distribution); float64 rounding only."""
    flow = image_flow(dtype=torch.float64)
    torch.manual_seed(0)
    x, log_prob = flow.sample_and_log_prob(6, temperature=0.7)
    torch.manual_seed(0)
    z = flow.base.rsample(torch.Size([6]))
    torch.testing.assert_close(x, flow.decode(0.7 * z))
    torch.testing.assert_close(log_prob, flow.log_prob(x), rtol=1e-9, atol=1e-9)
    assert float(x.std()) < float(flow.sample(200).std()), "a cool sample is less spread"


# -- class-conditional image flows ---------------------------------------------------------------------------------


def test_class_conditional_sampling_and_densities() -> None:
    """A class-conditional Glow draws ``n`` images per one-hot label of a batch of labels, and (once perturbed)
    gives the same images different log-densities under different labels."""
    flow = image_flow(context=True)
    labels = torch.eye(CLASSES)
    assert flow.sample(2, context=labels).shape == (2, CLASSES, *IMAGE)
    assert flow.sample(4, context=labels[1]).shape == (4, *IMAGE)
    x = pixels(5)
    with torch.no_grad():
        log_probs = torch.stack([flow.log_prob(x, label) for label in labels])
    assert log_probs.shape == (CLASSES, 5)
    for i in range(CLASSES):
        for j in range(i):
            assert float((log_probs[i] - log_probs[j]).abs().min()) > 1e-4, (i, j)


@pytest.mark.parametrize("kind", ["uniform", "variational"])
def test_class_conditional_dequantized_flow(kind: str) -> None:
    """A dequantized class-conditional flow samples levels for every label with finite bounds, and its bits per
    dimension take one label per image."""
    torch.manual_seed(0)
    dequantization = UniformDequantization(IMAGE, K) if kind == "uniform" else VariationalDequantization(IMAGE, K, 1, 4)
    flow = Flow(Glow(IMAGE, (CLASSES,), levels=1, steps=1, hidden_channels=4), dequantization=dequantization)
    labels = torch.eye(CLASSES)
    x, bound = flow.sample_and_log_prob(2, context=labels)
    assert x.shape == (2, CLASSES, *IMAGE) and bound.shape == (2, CLASSES)
    assert torch.equal(x, x.round()) and x.min() >= 0 and x.max() <= K - 1
    assert bool(torch.isfinite(bound).all())
    assert bits_per_dim(flow, x[0], labels) > 0


# -- image grids ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "grid_shape"),
    [((5, 4, 3), (11, 13)), ((5, 1, 4, 3), (11, 13)), ((5, 3, 4, 3), (11, 13, 3))],
    ids=["grey", "one-channel", "rgb"],
)
def test_image_grid_shapes(shape: tuple[int, ...], grid_shape: tuple[int, ...]) -> None:
    """Five 4 x 3 images tile a 2 x 3 grid by default (about the square root of n columns) with a 1-pixel white
    border: (2 * 5 + 1) x (3 * 4 + 1) pixels, and a trailing 3 for RGB; values lie in [0, 1], spanning it."""
    images = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    grid = image_grid(images)
    assert grid.shape == grid_shape
    assert grid.min() == 0 and grid.max() == 1
    assert (grid[0] == 1).all() and (grid[:, 0] == 1).all(), "the border is white"


def test_image_grid_places_images_with_padding_and_columns() -> None:
    """Each image lands in its cell, row by row, after ``padding`` pixels; ``columns`` sets the images per row, and
    an incomplete last row is left white. ``value_range`` fixes black and white, clipping values outside it."""
    images = np.arange(3 * 2 * 2, dtype=float).reshape(3, 2, 2)
    grid = image_grid(images, columns=2, value_range=(0, 10), padding=2)
    assert grid.shape == (2 * 4 + 2, 2 * 4 + 2)
    np.testing.assert_allclose(grid[2:4, 2:4], images[0] / 10)
    np.testing.assert_allclose(grid[2:4, 6:8], images[1] / 10)
    np.testing.assert_allclose(grid[6:8, 2:4], np.clip(images[2] / 10, 0, 1))
    assert (grid[6:8, 6:8] == 1).all(), "the missing fourth image is white"
    assert image_grid(images, columns=3, padding=0).shape == (2, 6)
    constant = image_grid(np.full((2, 2, 2), 7.0))
    assert (constant[1:3, 1:3] == 0).all() and (constant[1:3, 4:6] == 0).all(), "constant images: black, not NaN"


@pytest.mark.parametrize("shape", [(4, 4), (2, 2, 4, 4), (2, 1, 1, 4, 4), (0, 4, 4), (0, 1, 4, 4)], ids=str)
def test_image_grid_refuses_bad_shapes_and_empty_input(shape: tuple[int, ...]) -> None:
    """One image without a batch dimension, two channels, five dimensions and no images are refused."""
    with pytest.raises(ValueError, match=r"images must have shape|images is empty"):
        image_grid(np.zeros(shape))


@pytest.mark.parametrize(
    ("options", "message"), [({"columns": 0}, "columns"), ({"columns": 2.5}, "columns"), ({"padding": -1}, "padding")]
)
def test_image_grid_refuses_bad_layouts(options: dict[str, object], message: str) -> None:
    """A non-positive or non-integer column count and a negative padding are refused by name."""
    with pytest.raises(ValueError, match=message):
        image_grid(np.zeros((4, 4, 4)), **options)


@pytest.mark.parametrize(("shape", "scale"), [((4, 1, 4, 3), 1), ((4, 3, 4, 3), 3)], ids=["grey", "rgb-scaled"])
def test_save_image_writes_a_png(tmp_path: Path, shape: tuple[int, ...], scale: int) -> None:
    """``save_image`` writes a PNG that matplotlib reads back at the grid's size times ``scale``, with the grid's
    values (to 2/255: the grey colormap's 256 entries, then 8 bits)."""
    grid = image_grid(torch.rand(shape, generator=torch.Generator().manual_seed(0)))
    path = tmp_path / "grid.png"
    save_image(grid, path, scale=scale)
    assert path.read_bytes().startswith(b"\x89PNG")
    picture = mpimg.imread(path)
    assert picture.shape[:2] == (grid.shape[0] * scale, grid.shape[1] * scale)
    expected = grid if grid.ndim == 3 else grid[..., None].repeat(3, axis=2)
    np.testing.assert_allclose(picture[::scale, ::scale, :3], expected, atol=2 / 255)


def test_save_image_refuses_a_missing_folder(tmp_path: Path) -> None:
    """Saving into a folder that does not exist raises FileNotFoundError naming it, and writes nothing."""
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_image(np.zeros((3, 3)), tmp_path / "missing" / "grid.png")
    assert not (tmp_path / "missing").exists()
