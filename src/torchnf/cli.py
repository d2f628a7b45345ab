"""The ``torchnf`` command: fit, score, sample and inspect flows from the shell.

Every failure is reported as one line on standard error with a non-zero exit status, never a traceback
(set ``TORCHNF_DEBUG=1`` to see the traceback of an unexpected error).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from .architectures import Preset
from .flow import Flow
from .io import load, read_config
from .tables import read_table, write_table

__all__ = ["cli", "main"]

EXIT_INTERRUPTED = 130


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
@click.option("--arch", default="RealNVP", show_default=True, help=f"Preset: {', '.join(sorted(Preset.registry))}.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Model file.")
@click.option("--columns", help="Columns to model, by header name or 0-based index (comma-separated).")
@click.option("--key", help="Array name inside an NPZ file.")
@click.option("--drop-invalid", is_flag=True, help="Drop rows with missing or non-numeric values instead of failing.")
@click.option("--layers", type=click.IntRange(min=1), help="Number of layers of the preset.")
@click.option("--hidden", help="Hidden layer widths, e.g. 128,128.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any other preset argument (JSON value).")
@click.option(
    "--method",
    type=click.Choice(["auto", "greedy", "gradient"]),
    default="auto",
    show_default=True,
    help="Greedy layer-by-layer fitting (SINF), gradient descent, or auto: greedy where the preset supports it.",
)
@click.option("--steps", type=click.IntRange(min=1), help="Maximum optimizer steps [default: up to 5000].")
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
    arch: str,
    output: Path,
    columns: str | None,
    key: str | None,
    drop_invalid: bool,
    layers: int | None,
    hidden: str | None,
    settings: tuple[str, ...],
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
    """Fit a flow to the rows of DATA (CSV, TSV, NPY or NPZ) and save it to a model file."""
    names = {name.lower(): name for name in Preset.registry}
    if arch.lower() not in names:
        raise click.BadParameter(f"unknown preset {arch!r}; choose from {', '.join(sorted(names.values()))}")
    options = _preset_options(layers, hidden, settings)
    table = read_table(data, _columns(columns), drop_invalid, key)
    if table.dropped_rows:
        click.echo(f"dropped {len(table.dropped_rows)} invalid row(s) of {data}", err=True)
    torch.manual_seed(seed)
    preset = Preset.registry[names[arch.lower()]](table.values.shape[1:], **options)
    flow = Flow(preset).to(torch.float64 if float64 else torch.float32)
    history = flow.fit(
        table.values,
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
    flow.metadata = {"columns": table.columns, "data": data.name, "rows": int(table.values.shape[0])}
    flow.save(output)
    best = f"best validation loss {history.best_val_loss:.4f} nats per point" if history.val_loss else "no validation"
    click.echo(
        f"saved {output}: {type(preset).__name__} on {table.values.shape[0]} rows; {history.stop_reason}; {best}"
    )


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-n", "--n", "count", type=click.IntRange(min=1), required=True, help="Number of samples.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
def sample(model: Path, count: int, output: Path, seed: int) -> None:
    """Draw N samples from MODEL and write them to a CSV, TSV, NPY or NPZ file."""
    flow = load(model)
    torch.manual_seed(seed)
    values = flow.sample(count).cpu().numpy()
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
def score(
    model: Path, data: Path, output: Path, columns: str | None, key: str | None, drop_invalid: bool, outliers: float
) -> None:
    """Write the log-density of each row of DATA under MODEL; optionally flag the lowest-density fraction."""
    flow = load(model)
    table = read_table(data, _columns(columns) or flow.metadata.get("columns"), drop_invalid, key)
    with torch.no_grad():
        log_prob = flow.log_prob(table.values).double().cpu().numpy()
    result, names = log_prob[:, None], ["log_prob"]
    message = f"scored {len(log_prob)} rows: mean log-density {log_prob.mean():.4f} nats"
    if outliers is not None:
        threshold = float(np.quantile(log_prob, outliers))
        flags = (log_prob <= threshold).astype(np.float64)
        result, names = np.column_stack([log_prob, flags]), ["log_prob", "outlier"]
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
            lines.append(f"best validation loss: {h.best_val_loss:.4f} nats per point")
    click.echo("\n".join(lines))


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Data to evaluate on.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder.")
@click.option("--columns", help="Columns of DATA [default: the columns the model was fitted on].")
@click.option("--key", help="Array name inside an NPZ file.")
@click.option("--drop-invalid", is_flag=True)
@click.option("--dims", help="Dimensions for the pair plot, e.g. 0,1,2 [default: the first four].")
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
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
) -> None:
    """Write plots (PNG) and a summary of MODEL evaluated on DATA into a folder."""
    from .report import write_report

    flow = load(model)
    table = read_table(data, _columns(columns) or flow.metadata.get("columns"), drop_invalid, key)
    output.mkdir(parents=True, exist_ok=True)
    files = write_report(
        flow,
        table.values,
        output,
        history=flow.history,
        dims=_ints(dims, "--dims"),
        title=f"torchnf report: {model.name}",
        fmt=fmt,  # type: ignore[arg-type]
        seed=seed,
        extra={"model": str(model), "data": str(data)},
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
