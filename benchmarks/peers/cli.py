"""Command line: ``python -m benchmarks.peers speed|quality|render [options]`` (run from the repository root)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import torch

from .case import Result
from .environment import all_cores, footer, header
from .libraries import LIBRARIES, probe
from .memory import meter
from .operations import OPERATIONS
from .quality import Fit, QualitySettings, run_quality
from .spec import MODELS, ModelSpec
from .speed import SpeedSettings, run_speed
from .tables import quality_tables, speed_tables

__all__ = ["main", "parser"]

DESCRIPTION = """Side-by-side speed and quality of torchnf and its peers (zuko, nflows, normflows, torchflows) on
equivalent models. `speed` times a training step, log_prob and sampling; `quality` fits every library for the same
wall-clock time and compares test log-likelihoods. Peers that are not installed or fail to import are skipped (and
named in the output). Markdown goes to standard output (and --output), progress to standard error."""


def _common(sub: argparse.ArgumentParser, libraries: tuple[str, ...] = LIBRARIES) -> None:
    sub.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=list(libraries), metavar="LIB")
    sub.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), metavar="MODEL")
    sub.add_argument("--layers", type=int, default=5, help="coupling or autoregressive layers (default 5)")
    sub.add_argument("--hidden", type=int, nargs="+", default=[128, 128], help="hidden widths (default 128 128)")
    sub.add_argument("--bins", type=int, default=8, help="spline bins (default 8)")
    sub.add_argument("--bound", type=float, default=5.0, help="spline bound B, splines on [-B, B] (default 5)")
    sub.add_argument("--batch", type=int, default=512, help="batch size (default 512)")
    sub.add_argument("--threads", type=int, default=all_cores(), help="torch.set_num_threads (default: all cores)")
    sub.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--output", type=Path, help="also write the Markdown report to this file")
    sub.add_argument("--json", type=Path, help="also write every raw result to this file, one JSON object a line")


def parser() -> argparse.ArgumentParser:
    """The argument parser, with the ``speed``, ``quality`` and ``render`` commands."""
    top = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=DESCRIPTION)
    commands = top.add_subparsers(dest="command", required=True)
    speed = commands.add_parser("speed", help="time training steps, log_prob and sampling")
    _common(speed)
    speed.add_argument("--dims", type=int, nargs="+", default=[2, 8, 64], help="dimensions (default 2 8 64)")
    speed.add_argument("--operations", nargs="+", choices=OPERATIONS, default=list(OPERATIONS), metavar="OP")
    speed.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    speed.add_argument("--repeats", type=int, default=5, help="timed train_step and log_prob calls (default 5)")
    speed.add_argument("--sample-repeats", type=int, default=3, help="timed sample calls (default 3)")
    speed.add_argument(
        "--budget", type=float, default=60.0, help="seconds: a first call over it is the only measurement (default 60)"
    )
    speed.add_argument("--kill-after", type=float, default=600.0, help="seconds before a worker is killed (600)")
    speed.add_argument(
        "--in-process", action="store_true", help="no worker processes (faster; memory figures then less reliable)"
    )
    quality = commands.add_parser("quality", help="equal-time fits and test log-likelihoods")
    # torchnf-compiled only on request: compiling costs 10-60 s of the budget, and pays only in fits much longer
    _common(quality, tuple(name for name in LIBRARIES if name != "torchnf-compiled"))
    quality.add_argument("--datasets", nargs="+", default=["digits", "checkerboard"], help="torchnf.datasets names")
    quality.add_argument("--seconds", type=float, default=60.0, help="training budget per fit (default 60)")
    quality.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    quality.add_argument(
        "--eval-every", type=float, default=1.0, help="seconds between validation checks (best weights kept; 1)"
    )
    render = commands.add_parser("render", help="print the tables of a --json file of either command again")
    render.add_argument("file", type=Path)
    return top


def render(path: Path) -> str:
    """The tables of the raw results in ``path`` (written by ``--json``), libraries in the usual order."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if records and "case" in records[0]:
        results = [Result.from_json(json.dumps(record)) for record in records]
        present = {r.case.library for r in results}
        return speed_tables(results, [name for name in LIBRARIES if name in present])
    fits = [Fit(**record) for record in records]
    present = {f.library for f in fits}
    seconds = max((f.seconds for f in fits), default=0.0)
    return quality_tables(fits, [name for name in LIBRARIES if name in present], round(seconds))


def _load_line(loads: list[float]) -> str:
    if not loads:
        return ""
    low, median, high = min(loads), statistics.median(loads), max(loads)
    return f"\n- 1-minute load average after each comparison: min {low:.2f}, median {median:.2f}, max {high:.2f}"


def _report(args: argparse.Namespace, spec: ModelSpec, libraries: list[str]) -> tuple[str, str]:
    """The extra header lines and the tables of the command in ``args``."""
    if args.command == "speed":
        settings = SpeedSettings(
            tuple(libraries), tuple(args.models), tuple(args.dims), tuple(args.operations), spec, args.batch,
            args.warmup, args.repeats, args.sample_repeats, args.budget, args.kill_after, args.threads,
            args.device, args.seed, not args.in_process,
        )  # fmt: skip
        results, loads = run_speed(settings)
        if args.json is not None:
            args.json.write_text("".join(result.to_json() + "\n" for result in results))
        timing = f"\n- timing: {args.warmup} warm-up call(s), then the median of {args.repeats} timed calls "
        timing += f"({args.sample_repeats} for sampling), batch {args.batch}, budget {args.budget:g} s per measurement"
        timing += ", one worker process per case, the libraries of a comparison timed in turn"
        timing = timing if not args.in_process else timing.split(", one worker")[0] + ", all in one process"
        return timing + _load_line(loads), speed_tables(results, libraries)
    settings_q = QualitySettings(
        tuple(libraries), tuple(args.models), tuple(args.datasets), spec, args.seconds, args.eval_every, args.batch,
        args.lr, args.threads, args.device, args.seed,
    )  # fmt: skip
    fits = f"\n- fits: {args.seconds:g} s each, batch {args.batch}, Adam lr {args.lr:g}, data standardized with "
    fits += f"training statistics, best validation weights (checked every {args.eval_every:g} s) evaluated; "
    fits += "log-likelihoods in the data's units"
    results_q = run_quality(settings_q)
    if args.json is not None:
        args.json.write_text("".join(json.dumps(dataclasses.asdict(fit)) + "\n" for fit in results_q))
    return fits, quality_tables(results_q, libraries, args.seconds)


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``), print the Markdown report and return 0."""
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.command == "render":
        print(render(args.file))
        return 0
    spec = ModelSpec(args.layers, tuple(args.hidden), args.bins, args.bound)
    torch.set_num_threads(args.threads)
    probed = [probe(name) for name in dict.fromkeys(args.libraries)]
    for library in probed:
        if not library.available:
            print(f"skipping {library.name}: {library.error}", file=sys.stderr, flush=True)
    libraries = [library.name for library in probed if library.available]
    device = torch.device(args.device)
    top = header(argv, torch.get_num_threads(), device, probed, meter(device).method)
    models = f"- models: layers={spec.layers}, hidden={list(spec.hidden)}, bins={spec.bins}, bound={spec.bound:g}"
    extra, body = _report(args, spec, libraries)
    report = f"{top}\n{models}{extra}\n{footer()}\n\n{body}\n"
    print(report, end="", flush=True)
    if args.output is not None:
        args.output.write_text(report)
    return 0
