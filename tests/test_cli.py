"""The ``torchnf`` command end to end, through real subprocesses: fit, score, sample, info, report and demo, and
one clear line on standard error (never a traceback) for every failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

import torchnf
from torchnf.cli import main
from torchnf.datasets import load
from torchnf.dequantization import UniformDequantization, VariationalDequantization
from torchnf.tables import read_table, write_table

TINY = ["--layers", "2", "--hidden", "16,16", "--steps", "40", "--quiet"]


def torchnf_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``torchnf ARGS`` in a fresh interpreter, capturing its output."""
    command = [sys.executable, "-c", "from torchnf.cli import entry_point; entry_point()", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A failure: non-zero exit, one line on stderr naming the problem, no traceback."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("torchnf: error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with training and test CSVs (with a label column to ignore) and a model fitted on them."""
    folder = tmp_path_factory.mktemp("cli")
    data = load("eight_gaussians", n=1000)
    for name, rows in (("train", data.train), ("test", data.test)):
        labelled = [f"{float(a)!r},{float(b)!r},row{i}" for i, (a, b) in enumerate(rows)]
        (folder / f"{name}.csv").write_text("u,v,label\n" + "\n".join(labelled) + "\n")
    result = torchnf_cli(
        "fit", "train.csv", "--columns", "u,v", "--arch", "maf", *TINY, "-o", "m.safetensors", cwd=folder
    )
    assert result.returncode == 0, result.stderr
    assert "saved m.safetensors: MAF on 800 rows" in result.stdout
    return folder


def test_fitted_model_loads_in_python(workspace: Path) -> None:
    """The model file the command wrote is an ordinary model file: it loads and records its columns."""
    flow = torchnf.load(workspace / "m.safetensors")
    assert flow.metadata["columns"] == ["u", "v"] and flow.history is not None


def test_score_writes_one_log_density_per_row_and_flags_outliers(workspace: Path) -> None:
    """``score`` uses the model's columns by default; ``--outliers 0.1`` flags the lowest-density tenth."""
    result = torchnf_cli("score", "m.safetensors", "test.csv", "-o", "scores.csv", "--outliers", "0.1", cwd=workspace)
    assert result.returncode == 0, result.stderr
    scores = read_table(workspace / "scores.csv")
    assert scores.columns == ["log_prob", "outlier"] and scores.values.shape == (100, 2)
    flow = torchnf.load(workspace / "m.safetensors")
    expected = flow.log_prob(read_table(workspace / "test.csv", ["u", "v"]).values).detach().double().numpy()
    np.testing.assert_allclose(scores.values[:, 0], expected, rtol=1e-6)
    flagged = scores.values[:, 1] == 1
    assert flagged.sum() == 10 and scores.values[flagged, 0].max() < scores.values[~flagged, 0].min()


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_sample_writes_n_rows_with_the_training_columns(workspace: Path, suffix: str) -> None:
    """``sample -n`` writes that many rows; text files get the training data's column names."""
    result = torchnf_cli("sample", "m.safetensors", "-n", "25", "-o", f"samples{suffix}", "--seed", "1", cwd=workspace)
    assert result.returncode == 0, result.stderr
    table = read_table(workspace / f"samples{suffix}")
    assert table.values.shape == (25, 2)
    assert table.columns == (["u", "v"] if suffix == ".csv" else ["0", "1"])


def test_info_describes_the_model(workspace: Path) -> None:
    """``info`` names the preset, the columns and the training; ``--json`` prints the config."""
    result = torchnf_cli("info", "m.safetensors", cwd=workspace)
    assert result.returncode == 0, result.stderr
    for fragment in ("preset: MAF(", "columns: ['u', 'v']", "training: 40 steps", "parameters:"):
        assert fragment in result.stdout
    config = torchnf_cli("info", "m.safetensors", "--json", cwd=workspace)
    assert '"name": "MAF"' in config.stdout


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_report_writes_readable_plots_and_a_summary(workspace: Path, fmt: str) -> None:
    """``report`` writes the training curves and the 2-D density as PNGs, and a summary linking them."""
    result = torchnf_cli(
        "report", "m.safetensors", "--data", "test.csv", "-o", f"report-{fmt}", "--format", fmt, cwd=workspace
    )
    assert result.returncode == 0, result.stderr
    folder = workspace / f"report-{fmt}"
    summary = (folder / f"report.{fmt}").read_text()
    for name in ("training.png", "density.png"):
        image = imread(folder / name)
        assert image.shape[0] >= 300 and image.shape[1] >= 400 and image.std() > 0
        assert name in summary


def test_invalid_rows_are_refused_with_their_line_numbers_or_dropped(workspace: Path) -> None:
    """A row with a non-number is refused, naming its line; ``--drop-invalid`` drops it and says so."""
    lines = (workspace / "train.csv").read_text().splitlines()
    lines[3] = "1.0,oops,row2"
    lines[7] = "nan,2.0,row6"
    (workspace / "dirty.csv").write_text("\n".join(lines) + "\n")
    refused = torchnf_cli("fit", "dirty.csv", "--columns", "u,v", *TINY, "-o", "d.safetensors", cwd=workspace)
    assert_one_line_error(refused, "dirty.csv", "4", "8")
    dropped = torchnf_cli(
        "fit", "dirty.csv", "--columns", "u,v", "--drop-invalid", *TINY, "-o", "d.safetensors", cwd=workspace
    )
    assert dropped.returncode == 0, dropped.stderr
    assert "dropped 2 invalid row(s)" in dropped.stderr and "on 798 rows" in dropped.stdout


BAD_CSVS = {
    "non-numeric": ("a,b\n1,2\n3,x\n", "3"),
    "ragged": ("a,b\n1,2\n3,4,5\n", "3"),
    "empty": ("", "empty"),
    "header-only": ("a,b\n", "no data"),
}


@pytest.mark.parametrize(("content", "fragment"), BAD_CSVS.values(), ids=BAD_CSVS.keys())
def test_bad_csv_files_get_one_line_errors(tmp_path: Path, content: str, fragment: str) -> None:
    """Malformed data files fail with one line naming the file and the problem."""
    (tmp_path / "bad.csv").write_text(content)
    assert_one_line_error(
        torchnf_cli("fit", "bad.csv", *TINY, "-o", "m.safetensors", cwd=tmp_path), "bad.csv", fragment
    )


def test_command_errors_are_one_line(workspace: Path, tmp_path: Path) -> None:
    """Unknown presets, bad options, missing and damaged model files: one line each, no traceback."""
    assert_one_line_error(torchnf_cli("fit", "train.csv", "--arch", "glowish", "-o", "x", cwd=workspace), "glowish")
    assert_one_line_error(torchnf_cli("fit", "train.csv", "--set", "nonsense", "-o", "x", cwd=workspace), "KEY=VALUE")
    assert_one_line_error(
        torchnf_cli("fit", "train.csv", "--columns", "u,v", "--set", "bogus=1", *TINY, "-o", "x", cwd=workspace),
        "bogus",
    )
    assert_one_line_error(
        torchnf_cli("sample", "absent.safetensors", "-n", "3", "-o", "s.csv", cwd=workspace), "absent"
    )
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 64)
    assert_one_line_error(torchnf_cli("info", tmp_path / "broken.safetensors"), "not a readable model file")
    assert_one_line_error(torchnf_cli("score", "m.safetensors", "test.csv", "-o", "s.xyz", cwd=workspace), "s.xyz")
    assert_one_line_error(torchnf_cli("sample", "m.safetensors", "-n", "0", "-o", "s.csv", cwd=workspace), "0")
    assert_one_line_error(torchnf_cli("frobnicate"), "frobnicate")


def test_demo_fits_reports_and_compares(tmp_path: Path) -> None:
    """``torchnf demo`` prints the comparison table, saves the model and writes the report."""
    result = torchnf_cli("demo", "--steps", "60", "-o", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "| RealNVP |" in result.stdout and "| full-covariance Gaussian |" in result.stdout
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "report.md").is_file()
    assert torchnf.load(tmp_path / "out" / "model.safetensors").metadata["data"] == "two_moons"


def test_demo_flow_beats_the_gaussian(tmp_path: Path) -> None:
    """Even a short demo fit is far better than the Gaussian on held-out data."""
    from torchnf.demo import run_demo

    result = run_demo(tmp_path, steps=300, progress=False)
    assert result.flow_test > result.gaussian_test + 0.5, result


def test_help_and_version_exit_zero() -> None:
    """``--help`` and ``--version`` print and succeed."""
    assert "fit" in torchnf_cli("--help").stdout
    assert torchnf.__version__ in torchnf_cli("--version").stdout


def test_written_tables_round_trip(tmp_path: Path) -> None:
    """Samples written as CSV read back exactly (what ``sample`` writes, ``score`` can read)."""
    values = np.random.default_rng(0).normal(size=(5, 2))
    write_table(tmp_path / "v.csv", values, ["u", "v"])
    np.testing.assert_array_equal(read_table(tmp_path / "v.csv").values, values)


def test_data_lists_and_exports_the_built_in_data_sets(tmp_path: Path) -> None:
    """``data`` without a name lists the data sets; with one it writes the chosen split."""
    listing = torchnf_cli("data")
    assert "two_moons" in listing.stdout.split() and "digits" in listing.stdout.split()
    result = torchnf_cli("data", "pinwheel", "--split", "test", "-n", "1000", "-o", "p.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = read_table(tmp_path / "p.csv")
    np.testing.assert_array_equal(table.values, load("pinwheel", n=1000).test)
    assert table.columns == ["x", "y"]
    assert_one_line_error(torchnf_cli("data", "nope", "-o", "p.csv", cwd=tmp_path), "unknown data set 'nope'")


# -- image data: NPY arrays of images, run in this process (``main``) to keep them fast ---------------------------

IMAGE_TINY = ["--steps", "5", "--set", "hidden_channels=4", "--set", "steps=1", "--set", "levels=1", "--quiet"]


def run_main(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Run ``torchnf ARGS`` through :func:`torchnf.cli.main` in this process; return status, stdout and stderr."""
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_main_error(outcome: tuple[int, str, str], *fragments: str) -> None:
    """A failure of :func:`run_main`: non-zero status and one error line naming the problem."""
    status, _, err = outcome
    assert status != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchnf: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with 60 8x8 digits (levels 0 to 16) as float64 (n, H, W), int64 (n, C, H, W) and uint8 channels
    last (n, H, W, C), 30 continuous images, and a Glow fitted to the float64 digits."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("images")
    digits = load_digits().images[:60]
    np.save(folder / "digits.npy", digits)
    np.save(folder / "digits_int.npy", digits.astype(np.int64)[:, None])
    np.save(folder / "digits_last.npy", digits.astype(np.uint8)[..., None])
    np.save(folder / "noise.npy", np.random.default_rng(0).uniform(0.1, 0.9, (30, 8, 8)))
    status = main(["fit", str(folder / "digits.npy"), "--arch", "Glow", *IMAGE_TINY, "-o", str(folder / "glow.tnf")])
    assert status == 0
    return folder


def test_fit_on_images_records_the_image_shape_and_levels(images: Path) -> None:
    """An (n, H, W) array of integer-valued floats is one-channel discrete images: uniform dequantization with
    the largest value plus one levels, all recorded in the metadata."""
    flow = torchnf.load(images / "glow.tnf")
    assert tuple(flow.event_shape) == (1, 8, 8) and isinstance(flow.dequantization, UniformDequantization)
    assert flow.dequantization.levels == 17
    assert flow.metadata["image_shape"] == [1, 8, 8] and flow.metadata["levels"] == 17
    assert flow.metadata["dequantization"] == "uniform" and flow.metadata["value_range"] == [0.0, 16.0]
    assert flow.metadata["flattened"] is False and flow.metadata["rows"] == 60


def test_sample_writes_image_levels_and_png_grids(images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``sample`` writes (n, C, H, W) uint8 levels, and a PNG grid for a .png name, at any temperature."""
    status, out, _ = run_main(capsys, "sample", images / "glow.tnf", "-n", "12", "-o", images / "s.npy")
    assert status == 0 and "wrote 12 samples" in out
    samples = np.load(images / "s.npy")
    assert samples.shape == (12, 1, 8, 8) and samples.dtype == np.uint8 and samples.max() <= 16
    png = images / "s.png"
    status, out, _ = run_main(capsys, "sample", images / "glow.tnf", "-n", "12", "--temperature", "0.5", "-o", png)
    assert status == 0 and "grid of 12 samples" in out
    picture = imread(png)  # 4 columns and 3 rows of 8x8 images with 1-pixel borders, enlarged 13 times
    assert picture.shape[:2] == ((3 * 9 + 1) * 13, (4 * 9 + 1) * 13) and picture[..., :3].std() > 0
    assert_main_error(
        run_main(capsys, "sample", images / "glow.tnf", "-n", "3", "-o", images / "s.csv"), ".npy, .npz or .png"
    )


def test_score_writes_log_prob_and_bits_per_dim_per_image(images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One row per image with log_prob and bits_per_dim; channels-last data of the same images are matched."""
    status, out, _ = run_main(
        capsys, "score", images / "glow.tnf", images / "digits.npy", "-o", images / "scores.csv", "--outliers", "0.1"
    )
    assert status == 0 and "scored 60 images" in out and "bits/dim" in out
    scores = read_table(images / "scores.csv")
    assert scores.columns == ["log_prob", "bits_per_dim", "outlier"] and scores.values.shape == (60, 3)
    np.testing.assert_allclose(scores.values[:, 1], -scores.values[:, 0] / (64 * np.log(2)))
    assert scores.values[:, 2].sum() == 6
    status, _, _ = run_main(
        capsys, "score", images / "glow.tnf", images / "digits_last.npy", "-o", images / "last.npy", "--samples", "2"
    )
    assert status == 0 and np.load(images / "last.npy").shape == (60, 2)
    np.save(images / "small.npy", np.zeros((5, 4, 4)))
    assert_main_error(
        run_main(capsys, "score", images / "glow.tnf", images / "small.npy", "-o", images / "x.csv"),
        "small.npy holds items of shape (1, 4, 4)",
        "(1, 8, 8)",
    )


def test_report_on_images_draws_grids_and_interpolations(images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``report`` on an image model: sample, data and interpolation grids as PNGs linked from the summary."""
    folder = images / "report"
    status, out, _ = run_main(capsys, "report", images / "glow.tnf", "--data", images / "digits.npy", "-o", folder)
    assert status == 0, out
    summary = (folder / "report.md").read_text()
    for name in ("training.png", "samples.png", "samples_cold.png", "data.png", "interpolation.png"):
        assert f"]({name})" in summary
        picture = imread(folder / name)
        assert min(picture.shape[:2]) >= 200 and picture[..., :3].std() > 0
    assert "pairs.png" not in summary and "density.png" not in summary
    assert "| flow bits per dimension (lower is better) |" in summary and "independent categorical" in summary
    assert "Samples at temperature 0.7" in summary
    assert_main_error(
        run_main(capsys, "report", images / "glow.tnf", "--data", images / "digits.npy", "--dims", "0,1", "-o", folder),
        "--dims",
    )


def test_vector_presets_model_images_flattened(images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """RealNVP models (n, C, H, W) integer images as vectors of C*H*W levels; samples come back as images."""
    model = images / "flat.tnf"
    status, out, _ = run_main(
        capsys, "fit", images / "digits_int.npy", "--arch", "RealNVP", "--layers", "2", "--hidden", "8", "--steps",
        "5", "--quiet", "-o", model,
    )  # fmt: skip
    assert status == 0 and "(17 levels, uniform dequantization, flattened)" in out
    flow = torchnf.load(model)
    assert tuple(flow.event_shape) == (64,) and flow.metadata["flattened"] is True
    assert flow.metadata["image_shape"] == [1, 8, 8]
    assert run_main(capsys, "sample", model, "-n", "4", "-o", images / "flat.npz")[0] == 0
    with np.load(images / "flat.npz") as archive:
        assert archive["values"].shape == (4, 1, 8, 8) and archive["values"].dtype == np.uint8
    assert run_main(capsys, "score", model, images / "digits.npy", "-o", images / "flat.csv")[0] == 0
    assert read_table(images / "flat.csv").values.shape == (60, 2)


def test_channels_last_uint8_images_with_variational_dequantization(
    images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """(n, 8, 8, 1) uint8 is read channels last, with 256 levels; MultiscaleRealNVP with variational noise."""
    model = images / "msr.tnf"
    status, out, _ = run_main(
        capsys, "fit", images / "digits_last.npy", "--arch", "multiscalerealnvp", "--dequantization", "variational",
        *IMAGE_TINY, "-o", model,
    )  # fmt: skip
    assert status == 0 and "(256 levels, variational dequantization)" in out
    flow = torchnf.load(model)
    assert isinstance(flow.dequantization, VariationalDequantization) and flow.dequantization.levels == 256
    assert flow.metadata["channels_last"] is True and flow.metadata["image_shape"] == [1, 8, 8]


def test_non_integer_images_are_continuous(images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Non-integer images get no dequantization: float samples, drawn in the training data's value range."""
    model = images / "noise.tnf"
    status, out, _ = run_main(capsys, "fit", images / "noise.npy", *IMAGE_TINY, "-o", model)
    assert status == 0 and "Glow on 30 images of shape (1, 8, 8) (continuous)" in out
    flow = torchnf.load(model)
    assert flow.dequantization is None and flow.metadata["levels"] is None
    assert run_main(capsys, "sample", model, "-n", "3", "-o", images / "noise_s.npy")[0] == 0
    samples = np.load(images / "noise_s.npy")
    assert samples.shape == (3, 1, 8, 8) and samples.dtype == np.float32


def test_bad_image_options_are_refused(images: Path, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Dequantizing non-integer images, too few levels, negative levels, vector options for image presets, image
    options for tables and PNG samples of a table model: one error line each, before any fitting."""
    out = images / "never.tnf"
    np.save(images / "negative.npy", -np.ones((4, 8, 8), dtype=np.int64))
    cases = [
        (("noise.npy", "--dequantization", "uniform"), "needs discrete images of integer values"),
        (("noise.npy", "--levels", "4"), "--levels applies to dequantized images"),
        (("digits.npy", "--levels", "10"), "--levels 10 is too small"),
        (("digits.npy", "--dequantization", "none", "--levels", "20"), "--levels applies to dequantized images"),
        (("negative.npy",), "negative values"),
        (("digits.npy", "--arch", "Glow", "--layers", "3"), "--set"),
    ]
    for args, fragment in cases:
        assert_main_error(run_main(capsys, "fit", images / args[0], *args[1:], "-o", out), fragment)
    assert_main_error(
        run_main(capsys, "fit", workspace / "train.csv", "--columns", "u,v", "--levels", "4", "-o", out),
        "apply to images",
    )
    assert_main_error(
        run_main(capsys, "sample", workspace / "m.safetensors", "-n", "3", "-o", images / "t.png"), "image model"
    )
    assert not out.exists()
