"""The facts a benchmark report starts with: command, date, versions, threads, device and machine load."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from .libraries import Library

__all__ = ["all_cores", "command_line", "footer", "header"]


def all_cores() -> int:
    """The number of CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def command_line(argv: list[str]) -> str:
    """The command that ran the harness with arguments ``argv``, the interpreter relative to here when inside."""
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):  # outside the working directory: keep it absolute
        python = python.relative_to(Path.cwd())
    return shlex.join([str(python), "-m", "benchmarks.peers", *argv])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({_cpu_name()}, {all_cores()} cores available)"


def _source() -> str:
    """The torchnf checkout's commit and how many files under ``src/torchnf`` differ from it (if it is a checkout)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "src/torchnf"], cwd=root, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    if commit.returncode:
        return "not a git checkout"
    changed = len(status.stdout.splitlines())
    return f"commit {commit.stdout.strip()}" + (
        f" with {changed} uncommitted file(s) under src/torchnf" if changed else ""
    )


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def header(argv: list[str], threads: int, device: torch.device, libraries: list[Library], memory: str) -> str:
    """Markdown lines describing the run: command, date, versions, threads, device, load and skipped libraries."""
    lines = [
        f"- command: `{command_line(argv)}`",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- torch {torch.__version__}, Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"- threads: torch.set_num_threads({threads}); device: {_device_name(device)}",
        f"- memory: {memory}",
        f"- load average at start (1 / 5 / 15 min): {_load()}",
        "- libraries: " + ", ".join(f"{lib.name} {lib.version}" for lib in libraries if lib.available),
        f"- torchnf source: {_source()}",
    ]
    lines += [f"- skipped {lib.name}: {lib.error}" for lib in libraries if not lib.available]
    return "\n".join(lines)


def footer() -> str:
    """The load average at the end of a run, a hint of whether something else competed for the cores."""
    return f"- load average at end (1 / 5 / 15 min): {_load()}"
