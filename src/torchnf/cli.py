"""The ``torchnf`` command: fit, score, sample and inspect flows from the shell.

Data are tables of rows (CSV, TSV, TXT, or a 1- or 2-dimensional NPY/NPZ array), or images: an NPY/NPZ array of
3 dimensions ``(n, H, W)`` or 4 ``(n, C, H, W)`` (see :mod:`torchnf.image_data`). An image model records in its
metadata what ``sample``, ``score`` and ``report`` need: ``image_shape``, ``levels`` and ``dequantization``, and
``value_range`` (the values drawn black and white), besides whether the preset saw the images ``flattened``
(see :mod:`torchnf.cli_images`).

Every failure is reported as one line on standard error with a non-zero exit status, never a traceback
(set ``TORCHNF_DEBUG=1`` to see the traceback of an unexpected error).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from .architectures import Preset
from .cli_images import _image_setup, _image_shape, _model_images, _value_range
from .flow import Flow
from .image_data import ImageArray, read_data
from .io import load, read_config
from .tables import read_table, write_table

__all__ = ["cli", "main"]

EXIT_INTERRUPTED = 130
IMAGE_CHUNK = 256  # images per log_prob call of score
TEXT_FORMATS = (".csv", ".tsv", ".tab", ".txt")


def _columns(text: str | None) -> list[str | int] | None:
    """``"a,b"`` or ``"0,2"`` as a column selection (digits mean indices)."""
    if text is None:
        return None
    return [int(c) if c.strip().isdigit() else c.strip() for c in text.split(",") if c.strip()]


def _ints(text: str | None, name: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint=name) from None


def _preset_options(layers: int | None, hidden: str | None, settings: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if layers is not None:
        options["layers"] = layers
    if hidden is not None:
        options["hidden"] = _ints(hidden, "--hidden")
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {setting!r}", param_hint="--set")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value  # a bare word such as relu
    return options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="torchnf")
def cli() -> None:
    """Normalizing flows from the shell: fit a density to a data file, score, sample and report."""


@cli.command()
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--arch",
    help=f"Preset: {', '.join(sorted(Preset.registry))}. [default: RealNVP for tables, Glow for images]",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Model file.")
@click.option("--columns", help="Columns to model, by header name or 0-based index (comma-separated).")
@click.option("--key", help="Array name inside an NPZ file.")
@click.option("--drop-invalid", is_flag=True, help="Drop rows with missing or non-numeric values instead of failing.")
@click.option("--layers", type=click.IntRange(min=1), help="Number of layers of a vector preset.")
@click.option("--hidden", help="Hidden layer widths of a vector preset, e.g. 128,128.")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other preset argument (JSON value), e.g. hidden_channels=32, steps=2 or levels=3 for Glow.",
)
@click.option(
    "--dequantization",
    type=click.Choice(["uniform", "variational", "none"]),
    help="Images only: how discrete (integer-valued) images become continuous; none models them as continuous "
    "values. [default: uniform for integer-valued images, none otherwise; refused for non-integer images]",
)
@click.option(
    "--levels",
    type=click.IntRange(min=2),
    help="Images only: the number of levels K of dequantized images, which hold 0, 1, ..., K-1. "
    "[default: 256 for uint8 arrays, otherwise the largest value plus one]",
)
@click.option(
    "--channels-last/--channels-first",
    "channels_last",
    default=None,
    help="Images only: the layout of a 4-dimensional array, (n, H, W, C) or (n, C, H, W). [default: channels "
    "first, unless C is 1 or 3 while H and W exceed 4]",
)
@click.option(
    "--method",
    type=click.Choice(["auto", "greedy", "gradient"]),
    default="auto",
    show_default=True,
    help="Greedy layer-by-layer fitting (SINF), gradient descent, or auto: greedy where the preset supports it.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    help="Maximum optimizer steps [default: up to 5000] (a preset's own steps argument: --set steps=K).",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Maximum passes over the data.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--validation-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--float64", is_flag=True, help="Train in double precision.")
@click.option("--compile", "compile_", is_flag=True, help="Compile the training loss (torch.compile).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def fit(
    data: Path,
    arch: str | None,
    output: Path,
    columns: str | None,
    key: str | None,
    drop_invalid: bool,
    layers: int | None,
    hidden: str | None,
    settings: tuple[str, ...],
    dequantization: str | None,
    levels: int | None,
    channels_last: bool | None,
    method: str,
    steps: int | None,
    epochs: int | None,
    batch_size: int,
    lr: float,
    validation_fraction: float,
    patience: int,
    seed: int,
    float64: bool,
    compile_: bool,
    quiet: bool,
) -> None:
    """Fit a flow to the rows of DATA (CSV, TSV, NPY or NPZ) and save it to a model file.

    An NPY or NPZ array of 3 dimensions (n, H, W) or 4 (n, C, H, W) holds images (channels last, (n, H, W, C),
    is read when C is 1 or 3 while H and W exceed 4, or with --channels-last). Glow and MultiscaleRealNVP model
    them as images; every other preset models them flattened to vectors of C*H*W values (the image shape is
    recorded, so samples come back as images). Integer-valued images (an integer array, or floats that are all
    integers) are discrete: by default uniformly dequantized with K levels, K being 256 for uint8 arrays and
    otherwise the largest value plus one; their samples are levels 0 to K-1. Other images are continuous (for
    MultiscaleRealNVP, whose logit pre-transform needs them strictly between 0 and 1 unless --set
    pre_transform=null). An image preset's own sizes go through --set (Glow: levels, steps, hidden_channels).
    """
    names = {name.lower(): name for name in Preset.registry}
    if arch is not None and arch.lower() not in names:
        raise click.BadParameter(f"unknown preset {arch!r}; choose from {', '.join(sorted(names.values()))}")
    options = _preset_options(layers, hidden, settings)
    read = read_data(data, _columns(columns), drop_invalid, key, channels_last)
    if read.dropped_rows:
        noun = "image" if isinstance(read, ImageArray) else "row"
        click.echo(f"dropped {len(read.dropped_rows)} invalid {noun}(s) of {data}", err=True)
    if isinstance(read, ImageArray):
        preset_type = Preset.registry[names[(arch or "Glow").lower()]]
        image = _image_setup(read, preset_type, layers, hidden, dequantization, levels)
        torch.manual_seed(seed)
        preset = preset_type(image.event_shape, **options)
        flow = Flow(preset, dequantization=image.dequantizer())
        flow = flow.to(torch.float64 if float64 else torch.float32)
        values, unit = read.values.reshape(len(read.values), *image.event_shape), "image"
        described = f"{len(values)} images of shape {read.image_shape}{image.described}"
    else:
        if dequantization is not None or levels is not None or channels_last is not None:
            raise click.UsageError(
                "--dequantization, --levels and --channels-last/--channels-first apply to images (an NPY or NPZ "
                f"array of 3 or 4 dimensions); {data} holds a table of rows"
            )
        table = read
        torch.manual_seed(seed)
        preset = Preset.registry[names[(arch or "RealNVP").lower()]](table.values.shape[1:], **options)
        flow = Flow(preset).to(torch.float64 if float64 else torch.float32)
        values, unit = table.values, "point"
        described = f"{table.values.shape[0]} rows"
    history = flow.fit(
        values,
        method=method,
        compile=compile_,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        validation_fraction=validation_fraction,
        patience=patience,
        seed=seed,
        progress=None if not quiet else False,
    )
    if isinstance(read, ImageArray):
        flow.metadata = {"data": data.name, "rows": len(values), **image.metadata}
    else:
        flow.metadata = {"columns": table.columns, "data": data.name, "rows": int(table.values.shape[0])}
    flow.save(output)
    best = f"best validation loss {history.best_val_loss:.4f} nats per {unit}" if history.val_loss else "no validation"
    if history.val_loss and unit == "image":
        best += f" ({history.best_val_loss / (flow.event_shape.numel() * math.log(2)):.4f} bits/dim)"
    click.echo(f"saved {output}: {type(preset).__name__} on {described}; {history.stop_reason}; {best}")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-n", "--n", "count", type=click.IntRange(min=1), required=True, help="Number of samples.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="CSV, TSV, NPY or NPZ file; for an image model NPY, NPZ or PNG (a picture of the samples in a grid).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Scale of the latent spread: below 1 gives cleaner, less varied samples.",
)
def sample(model: Path, count: int, output: Path, seed: int, temperature: float) -> None:
    """Draw N samples from MODEL and write them to a CSV, TSV, NPY or NPZ file.

    An image model writes images of shape (N, C, H, W), channels first; a dequantized one writes their levels
    0 to K-1 as integers (uint8 when K is at most 256, else int64). A .png output draws them in one grid.
    """
    flow = load(model)
    image_shape = _image_shape(flow)
    extension = output.suffix.lower()
    if extension == ".png" and image_shape is None:
        raise click.UsageError(f"a PNG picture of the samples needs an image model; {model} models table rows")
    if image_shape is not None and extension in TEXT_FORMATS:
        raise click.UsageError(
            f"{model} is an image model, whose samples are images of shape {tuple(image_shape)}; write them to "
            f".npy, .npz or .png, not {output.name}"
        )
    torch.manual_seed(seed)
    samples = flow.sample(count, temperature=temperature).cpu()
    if image_shape is not None:
        samples = samples.reshape(count, *image_shape)
    if extension == ".png":
        from .report import write_image_grid

        write_image_grid(samples, output, value_range=_value_range(flow))
        click.echo(f"wrote a grid of {count} samples to {output}")
        return
    values = samples.numpy()
    if flow.dequantization is not None:
        values = values.astype(np.uint8 if flow.dequantization.levels <= 256 else np.int64)
    write_table(output, values, flow.metadata.get("columns") if values.ndim == 2 else None)
    click.echo(f"wrote {count} samples to {output}")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--columns", help="Columns of DATA to score [default: the columns the model was fitted on].")
@click.option("--key", help="Array name inside an NPZ file.")
@click.option("--drop-invalid", is_flag=True, help="Drop rows with missing or non-numeric values instead of failing.")
@click.option("--outliers", type=click.FloatRange(0, 1, min_open=True, max_open=True), help="Flag this fraction.")
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Dequantization draws per image (a dequantized model only): the importance-weighted bound, tighter as it "
    "grows.",
)
def score(
    model: Path,
    data: Path,
    output: Path,
    columns: str | None,
    key: str | None,
    drop_invalid: bool,
    outliers: float,
    samples: int,
) -> None:
    """Write the log-density of each row of DATA under MODEL; optionally flag the lowest-density fraction.

    For an image model, DATA holds images (each a row of the output), and a bits_per_dim column follows
    log_prob: -log_prob / (D ln 2), D = C*H*W. A dequantized model's log_prob is the dequantization lower bound on
    the log-probability of the discrete image (one noise draw, or --samples).
    """
    flow = load(model)
    image_shape = _image_shape(flow)
    if samples > 1 and flow.dequantization is None:
        raise click.UsageError(f"--samples applies to a dequantized model; {model}'s log-density is exact")
    if image_shape is None:
        table = read_table(data, _columns(columns) or flow.metadata.get("columns"), drop_invalid, key)
        with torch.no_grad():
            log_prob = flow.log_prob(table.values, samples=samples).double().cpu().numpy()
        result, names, noun = log_prob[:, None], ["log_prob"], "rows"
    else:
        values = _model_images(flow, image_shape, data, _columns(columns), key, drop_invalid)
        with torch.no_grad():
            log_prob = torch.cat(
                [
                    flow.log_prob(values[i : i + IMAGE_CHUNK], samples=samples).double().cpu()
                    for i in range(0, len(values), IMAGE_CHUNK)
                ]
            ).numpy()
        bits = -log_prob / (flow.event_shape.numel() * math.log(2))
        result, names, noun = np.column_stack([log_prob, bits]), ["log_prob", "bits_per_dim"], "images"
    message = f"scored {len(log_prob)} {noun}: mean log-density {log_prob.mean():.4f} nats"
    if image_shape is not None:
        message += f" ({result[:, 1].mean():.4f} bits/dim)"
    if outliers is not None:
        threshold = float(np.quantile(log_prob, outliers))
        flags = (log_prob <= threshold).astype(np.float64)
        result, names = np.column_stack([result, flags]), [*names, "outlier"]
        message += f"; {int(flags.sum())} outlier(s) at or below {threshold:.4f}"
    write_table(output, result, names)
    click.echo(message)


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the whole config as JSON.")
def info(model: Path, as_json: bool) -> None:
    """Describe MODEL: preset, base distribution, size, standardization and training."""
    config = read_config(model)
    if as_json:
        click.echo(json.dumps(config, indent=2))
        return
    flow = load(model)
    preset = config["preset"]
    lines = [
        f"model: {model} (format {config['format_version']}, torchnf {config['library_version']})",
        f"preset: {preset['name']}({', '.join(f'{k}={v!r}' for k, v in preset['kwargs'].items())})",
        f"base: {config['base']['name']}; dtype {config['dtype']}",
        f"parameters: {sum(p.numel() for p in flow.parameters()):,}",
        f"event shape: {tuple(flow.event_shape)}",
    ]
    if flow.standardization.fitted:
        loc, scale = flow.standardization.loc.flatten()[:8].tolist(), flow.standardization.scale.flatten()[:8].tolist()
        lines.append(f"standardization: mean {[round(v, 4) for v in loc]}, std {[round(v, 4) for v in scale]}")
    for key, value in flow.metadata.items():
        lines.append(f"{key}: {value}")
    if flow.history is not None and flow.history.step:
        h = flow.history
        lines.append(f"training: {h.step[-1]} {h.unit}s, {h.stop_reason}; kept {h.unit} {h.best_step}")
        if h.val_loss:
            unit = "image" if _image_shape(flow) else "point"
            lines.append(f"best validation loss: {h.best_val_loss:.4f} nats per {unit}")
    click.echo("\n".join(lines))


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Data to evaluate on.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder.")
@click.option("--columns", help="Columns of DATA [default: the columns the model was fitted on].")
@click.option("--key", help="Array name inside an NPZ file.")
@click.option("--drop-invalid", is_flag=True)
@click.option("--dims", help="Dimensions for the pair plot, e.g. 0,1,2 [default: the first four]; not for images.")
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0, min_open=True),
    default=0.7,
    show_default=True,
    help="The lower temperature of an image report's second grid of samples.",
)
def report(
    model: Path,
    data: Path,
    output: Path,
    columns: str | None,
    key: str | None,
    drop_invalid: bool,
    dims: str | None,
    fmt: str,
    seed: int,
    temperature: float,
) -> None:
    """Write plots (PNG) and a summary of MODEL evaluated on DATA into a folder.

    For an image model: grids of samples at temperature 1 and at --temperature, a grid of DATA's images,
    spherical interpolations between pairs of them, and bits per dimension next to a per-pixel categorical
    baseline.
    """
    from .report import write_report

    flow = load(model)
    image_shape = _image_shape(flow)
    value_range = None
    if image_shape is None:
        values = read_table(data, _columns(columns) or flow.metadata.get("columns"), drop_invalid, key).values
    else:
        if dims is not None:
            raise click.UsageError(f"--dims picks pair-plot dimensions, which the report of image model {model} lacks")
        values = _model_images(flow, image_shape, data, _columns(columns), key, drop_invalid)
        value_range = _value_range(flow)
    output.mkdir(parents=True, exist_ok=True)
    files = write_report(
        flow,
        values,
        output,
        history=flow.history,
        dims=_ints(dims, "--dims"),
        title=f"torchnf report: {model.name}",
        fmt=fmt,  # type: ignore[arg-type]
        seed=seed,
        extra={"model": str(model), "data": str(data)},
        image_shape=image_shape,
        temperature=temperature,
        value_range=value_range,
    )
    click.echo(f"wrote {files.summary} and {len(files.figures)} figure(s): {', '.join(p.name for p in files.figures)}")


@cli.command()
@click.argument("name", required=False)
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write.")
@click.option("-n", "--n", "count", type=click.IntRange(min=3), help="Rows in all splits together.")
@click.option("--seed", type=int, default=0, show_default=True)
def data(name: str | None, split: str, output: Path | None, count: int | None, seed: int) -> None:
    """Write a split of the built-in data set NAME to a file; without NAME, list the data sets."""
    from . import datasets

    if name is None:
        click.echo("\n".join(datasets.names()))
        return
    if output is None:
        raise click.UsageError("Missing option '-o' / '--output'.")
    values = getattr(datasets.load(name, seed=seed, n=count), split)
    columns = ["x", "y"] if values.shape[1] == 2 else [f"x{i}" for i in range(values.shape[1])]
    write_table(output, values, columns)
    click.echo(f"wrote {len(values)} {split} rows of {name} to {output}")


@cli.command()
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("torchnf-demo"))
@click.option("--steps", type=click.IntRange(min=1), default=2000, show_default=True, help="Maximum training steps.")
@click.option("--seed", type=int, default=0, show_default=True)
def demo(output: Path, steps: int, seed: int) -> None:
    """Fit RealNVP to two moons, compare it with a Gaussian and write a report (the README's main job)."""
    from .demo import run_demo

    result = run_demo(output, steps=steps, seed=seed)
    click.echo(result.table())
    click.echo(
        f"\n{result.steps} steps in {result.seconds:.1f} s; log-likelihoods in nats per point (higher is better)."
    )
    click.echo(f"model: {result.model}; report: {result.report}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status. Errors become one line on standard error."""
    try:
        cli.main(args=argv, prog_name="torchnf", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.exceptions.Abort:
        click.echo("torchnf: interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as error:
        click.echo(f"torchnf: error: {error.format_message()}", err=True)
        return error.exit_code
    except Exception as error:
        if os.environ.get("TORCHNF_DEBUG"):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        click.echo(f"torchnf: error: {message}", err=True)
        return 1
    return 0


def entry_point() -> None:
    """The console script: exit with :func:`main`'s status."""
    sys.exit(main())
