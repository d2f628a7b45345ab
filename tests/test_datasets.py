"""The built-in data sets: shapes, determinism, disjoint splits, argument errors, and points where the density is."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import sklearn.datasets

from torchnf import datasets
from torchnf.datasets import (
    DEFAULT_N,
    Dataset,
    checkerboard,
    circles,
    digits,
    eight_gaussians,
    load,
    names,
    pinwheel,
    rings,
    split,
    two_moons,
    two_spirals,
)

TOY = ["two_moons", "circles", "eight_gaussians", "pinwheel", "two_spirals", "checkerboard", "rings"]
TABLE_SHAPES = {
    "digits": (1797, 64),
    "iris": (150, 4),
    "wine": (178, 13),
    "breast_cancer": (569, 30),
    "diabetes": (442, 10),
}


def source(name: str, seed: int = 0) -> np.ndarray:
    """The full array that ``load(name, seed)`` splits."""
    if name in TOY:
        return getattr(datasets, name)(n=DEFAULT_N, seed=seed)
    return digits(seed) if name == "digits" else getattr(datasets, name)()


def sorted_rows(x: np.ndarray) -> np.ndarray:
    return x[np.lexsort(x.T[::-1])]


def radius(x: np.ndarray) -> np.ndarray:
    return np.hypot(x[:, 0], x[:, 1])


def wrapped(angle: np.ndarray, period: float) -> np.ndarray:
    """``angle`` reduced to ``[-period / 2, period / 2)``."""
    return (angle + period / 2) % period - period / 2


# -- the front door ----------------------------------------------------------------------------------------------


def test_names_lists_every_generator_and_table() -> None:
    assert names() == TOY + list(TABLE_SHAPES)
    assert set(names()) <= set(datasets.__all__)


@pytest.mark.parametrize("name", names())
def test_load_splits_80_10_10_into_float64_parts_that_cover_the_data(name: str) -> None:
    data = load(name, seed=3)
    full = source(name, seed=3)
    n, dim = full.shape
    assert full.dtype == np.float64
    assert name in TOY or (n, dim) == TABLE_SHAPES[name]
    assert isinstance(data, Dataset) and data.name == name and data.event_shape == (dim,)
    held = max(1, round(n / 10))
    for part, rows in (("train", n - 2 * held), ("val", held), ("test", held)):
        array = getattr(data, part)
        assert array.shape == (rows, dim), part
        assert array.dtype == np.float64 and array.flags.c_contiguous
    # as multisets of rows the three parts are exactly the source: nothing lost, nothing shared or repeated
    together = np.concatenate([data.train, data.val, data.test])
    assert np.array_equal(sorted_rows(together), sorted_rows(full))
    assert data.description and "``" not in data.description and ":func:" not in data.description


def test_generators_give_10000_points_by_default_and_n_otherwise() -> None:
    data = load("rings")
    assert len(data.train) + len(data.val) + len(data.test) == DEFAULT_N == 10_000
    data = load("rings", n=3)
    assert (len(data.train), len(data.val), len(data.test)) == (1, 1, 1)
    data = load("pinwheel", n=25)
    assert (len(data.train), len(data.val), len(data.test)) == (21, 2, 2)


def test_n_takes_a_random_subset_of_a_table() -> None:
    data = load("wine", n=50, seed=1)
    assert (len(data.train), len(data.val), len(data.test)) == (40, 5, 5)
    together = np.concatenate([data.train, data.val, data.test])
    assert len(np.unique(together, axis=0)) == 50
    full = {tuple(row) for row in source("wine")}
    assert all(tuple(row) in full for row in together)
    assert not np.array_equal(load("wine", n=50, seed=2).train, data.train)


@pytest.mark.parametrize("name", ["checkerboard", "two_moons", "digits", "iris"])
def test_load_is_deterministic_for_a_seed_and_changes_with_it(name: str) -> None:
    a, b, c = load(name, seed=5), load(name, seed=5), load(name, seed=6)
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(a, part), getattr(b, part))
    assert not np.array_equal(a.train, c.train)
    assert not np.array_equal(a.test, c.test)


def test_the_split_is_not_the_generators_own_draws() -> None:
    """The split permutation comes from its own stream: the test rows are not simply the last points drawn."""
    data = load("eight_gaussians", seed=0)
    assert not np.array_equal(data.test, eight_gaussians(DEFAULT_N, seed=0)[-len(data.test) :])


def test_dataset_is_frozen_and_prints_its_sizes() -> None:
    data = load("iris")
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.train = data.test  # type: ignore[misc]
    assert repr(data) == "Dataset(name='iris', event_shape=(4,), train=120, val=15, test=15)"


@pytest.mark.parametrize("name", ["moons", "Two_Moons", "", 3, None])
def test_an_unknown_name_lists_the_valid_ones(name: object) -> None:
    with pytest.raises(ValueError, match=r"unknown data set .*expected one of: two_moons, circles, .*, diabetes$"):
        load(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [2, 1, 0, -5, 2.5, 100.0, "100", True, [10]])
def test_a_bad_n_is_refused(n: object) -> None:
    with pytest.raises(ValueError, match=r"n must be an integer >= 3 \(the total number of rows"):
        load("circles", n=n)  # type: ignore[arg-type]


def test_n_beyond_a_tables_rows_is_refused_and_numpy_integers_are_fine() -> None:
    with pytest.raises(ValueError, match=r"n must be at most 150, the number of rows of 'iris', or None; got 151"):
        load("iris", n=151)
    assert len(load("iris", n=np.int64(150)).train) == 120


@pytest.mark.parametrize("seed", [-1, 1.5, "0", None])
def test_a_bad_seed_is_refused(seed: object) -> None:
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        load("checkerboard", seed=seed)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        two_spirals(10, seed=seed)  # type: ignore[arg-type]


def test_split_divides_any_array_and_checks_it() -> None:
    images = np.arange(20 * 3 * 2, dtype=np.float32).reshape(20, 3, 2)
    data = split(images, seed=1, name="images")
    assert data.event_shape == (3, 2) and data.train.dtype == np.float64
    assert (len(data.train), len(data.val), len(data.test)) == (16, 2, 2)
    assert np.array_equal(np.sort(np.concatenate([data.train, data.val, data.test])[:, 0, 0]), images[:, 0, 0])
    with pytest.raises(ValueError, match=r"data must have shape \(n, \*event_shape\) with n >= 3 rows"):
        split(np.zeros(10))
    with pytest.raises(ValueError, match=r"n >= 3 rows .*got \(2, 4\)"):
        split(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="data contains 1 NaN or infinite value"):
        split(np.array([[0.0], [1.0], [np.inf]]))
    with pytest.raises(ValueError, match="data must be a numeric array"):
        split([["a"], ["b"], ["c"]])


# -- the 2-D generators ------------------------------------------------------------------------------------------

GENERATORS: list[Callable[..., np.ndarray]] = [
    two_moons,
    circles,
    eight_gaussians,
    pinwheel,
    two_spirals,
    checkerboard,
    rings,
]


@pytest.mark.parametrize("generator", GENERATORS, ids=lambda g: g.__name__)
def test_generators_are_deterministic_2d_float64(generator: Callable[..., np.ndarray]) -> None:
    x = generator(n=500, seed=1)
    assert x.shape == (500, 2) and x.dtype == np.float64 and np.isfinite(x).all()
    assert np.array_equal(x, generator(n=500, seed=1))
    assert not np.array_equal(x, generator(n=500, seed=2))
    assert generator(n=1, seed=0).shape == (1, 2)
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match=r"n must be an integer >= 1 \(the number of points\)"):
            generator(n=bad)


def test_two_moons_is_scikit_learns_make_moons() -> None:
    expected, _ = sklearn.datasets.make_moons(n_samples=5000, noise=0.05, random_state=0)
    assert np.array_equal(two_moons(), expected)
    assert np.array_equal(two_moons(300, 0.1, 7), sklearn.datasets.make_moons(300, noise=0.1, random_state=7)[0])


def test_circles_lie_at_the_two_radii_in_equal_shares() -> None:
    x = circles(4000, seed=0, noise=0.05, factor=0.3)
    r = radius(x)
    inner = r < 0.65
    assert np.all(np.minimum(abs(r - 0.3), abs(r - 1.0)) < 6 * 0.05)
    assert abs(inner.mean() - 0.5) < 0.03
    assert np.allclose(np.sort(radius(circles(100, noise=0.0, factor=0.5)))[[0, -1]], [0.5, 1.0])
    with pytest.raises(ValueError, match=r"factor must be in \(0, 1\)"):
        circles(factor=1.0)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        circles(noise=-0.1)


def test_eight_gaussians_sit_near_their_centres_in_equal_shares() -> None:
    x = eight_gaussians(8000, seed=0, radius=2.0, std=0.1)
    centres = 2.0 * np.stack([np.cos(np.pi / 4 * np.arange(8)), np.sin(np.pi / 4 * np.arange(8))], axis=1)
    distance = np.linalg.norm(x[:, None, :] - centres[None], axis=-1)
    nearest = distance.min(axis=1)
    assert nearest.max() < 6 * 0.1
    assert abs(np.sqrt(np.mean(nearest**2)) - np.sqrt(2) * 0.1) < 0.01  # E|eps|^2 = 2 std^2
    assert np.all(abs(np.bincount(distance.argmin(axis=1), minlength=8) / 8000 - 1 / 8) < 0.02)
    with pytest.raises(ValueError, match="std must be > 0"):
        eight_gaussians(std=0.0)


def test_pinwheel_points_follow_their_sheared_arms() -> None:
    # with no tangential spread each point is exactly its radial coordinate turned by phi = 2 pi k / arms + rate e^r
    x = pinwheel(2000, seed=0, arms=5, radial_std=0.2, tangential_std=0.0, rate=0.25)
    r, angle = radius(x), np.arctan2(x[:, 1], x[:, 0])
    offset = angle - 0.25 * np.exp(r)
    assert np.allclose(wrapped(offset, 2 * np.pi / 5), 0.0, atol=1e-9)
    assert np.all(np.bincount(np.round(offset / (2 * np.pi / 5)).astype(int) % 5, minlength=5) > 300)
    # with the default spreads the points stay close to the arms' centre lines
    x = pinwheel(5000, seed=0)
    residual = wrapped(np.arctan2(x[:, 1], x[:, 0]) - 0.25 * np.exp(radius(x)), 2 * np.pi / 5)
    assert np.quantile(abs(residual), 0.99) < 0.45
    with pytest.raises(ValueError, match="arms must be an integer >= 1"):
        pinwheel(arms=0)


def test_two_spirals_points_follow_the_two_arms() -> None:
    x = two_spirals(2000, seed=0, turns=2.0, radius=4.0, noise=0.0)
    r, angle = radius(x), np.arctan2(x[:, 1], x[:, 0])
    assert r.max() <= 4.0
    offset = angle - 2 * np.pi * 2.0 * r / 4.0  # the angle of arm 0 at radius r; arm 1 is pi further on
    assert np.allclose(wrapped(offset, np.pi), 0.0, atol=1e-9)
    arm = np.round(wrapped(offset, 2 * np.pi) / np.pi).astype(int) % 2
    assert abs(arm.mean() - 0.5) < 0.05
    assert abs(np.mean(r <= 2.0) - 0.25) < 0.03  # t = r / radius has density 2t
    x = two_spirals(5000, seed=0)
    r = radius(x)
    residual = wrapped(np.arctan2(x[:, 1], x[:, 0]) - np.pi * r, np.pi)[r > 1.0]
    assert np.quantile(abs(residual), 0.99) < 1.0


def test_checkerboard_points_lie_uniformly_on_black_squares_only() -> None:
    x = checkerboard(8000, seed=0)
    assert np.all((x >= -4.0) & (x < 4.0))
    cell = np.floor((x + 4.0) / 2.0).astype(int)
    assert np.all((cell[:, 0] + cell[:, 1]) % 2 == 0)
    counts = np.bincount(cell[:, 0] * 4 + cell[:, 1], minlength=16).reshape(4, 4)
    black = (np.add.outer(np.arange(4), np.arange(4)) % 2) == 0
    assert np.all(abs(counts[black] / 8000 - 1 / 8) < 0.02) and np.all(counts[~black] == 0)
    x = checkerboard(1000, seed=0, squares=3, half_width=1.5)
    cell = np.floor(x + 1.5).astype(int)
    assert np.all((cell[:, 0] + cell[:, 1]) % 2 == 0) and len(np.unique(cell, axis=0)) == 5
    with pytest.raises(ValueError, match="squares must be an integer >= 1"):
        checkerboard(squares=0)
    with pytest.raises(ValueError, match="half_width must be > 0"):
        checkerboard(half_width=-1.0)


def test_rings_lie_at_their_radii_with_mass_proportional_to_length() -> None:
    x = rings(10_000, seed=0, radii=(1.0, 2.0, 3.0, 4.0), noise=0.08)
    r = radius(x)
    ring = np.round(r).astype(int)
    assert np.all(abs(r - ring) < 6 * 0.08)
    assert np.allclose(np.bincount(ring, minlength=5)[1:] / 10_000, [0.1, 0.2, 0.3, 0.4], atol=0.02)
    assert np.allclose(radius(rings(50, radii=[2.5], noise=0.0)), 2.5)
    with pytest.raises(ValueError, match="radii must hold at least one radius"):
        rings(radii=())
    with pytest.raises(ValueError, match=r"each of radii must be > 0, got -1\.0"):
        rings(radii=(1.0, -1.0))
    with pytest.raises(ValueError, match="noise must be finite"):
        rings(noise=float("nan"))


# -- the tables --------------------------------------------------------------------------------------------------


def test_digits_are_dequantized_pixels_in_0_to_17() -> None:
    x = digits(seed=0)
    pixels = sklearn.datasets.load_digits().data
    assert x.shape == (1797, 64) and x.dtype == np.float64
    assert np.all((x >= 0.0) & (x < 17.0))
    assert np.all(x != np.floor(x))  # no value is still an integer
    assert np.array_equal(np.floor(x), pixels)
    assert abs((x - pixels).mean() - 0.5) < 0.01
    assert not np.array_equal(x, digits(seed=1))


@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "diabetes"])
def test_tables_are_scikit_learns_raw_features(name: str) -> None:
    x = getattr(datasets, name)()
    kwargs = {"scaled": False} if name == "diabetes" else {}
    expected = getattr(sklearn.datasets, f"load_{name}")(**kwargs).data
    assert x.shape == TABLE_SHAPES[name] and x.dtype == np.float64
    assert np.array_equal(x, expected)
