"""The speed grid: for every (model, dimension, operation), the libraries' cases timed in turn.

By default each case runs in its own worker process (:class:`~benchmarks.peers.remote.RemoteSession`); the
libraries of one comparison are started together, warmed up one after the other, then given timed calls round
robin until each is done, so that background load on a shared machine falls on all of them alike. In-process
mode (:class:`~benchmarks.peers.worker.Session`) measures the cases one after the other instead, since memory
meters in one process would overlap.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from .case import Case, Result
from .remote import RemoteSession
from .spec import ModelSpec
from .worker import run_case

__all__ = ["SpeedSettings", "cases", "groups", "run_group", "run_speed"]


@dataclass(frozen=True)
class SpeedSettings:
    """What to time and how (the command-line options of ``speed``)."""

    libraries: tuple[str, ...]
    models: tuple[str, ...]
    dims: tuple[int, ...]
    operations: tuple[str, ...]
    spec: ModelSpec
    batch: int = 512
    warmup: int = 2
    repeats: int = 5
    sample_repeats: int = 3
    budget_s: float = 60.0
    kill_after_s: float = 600.0
    threads: int = 1
    device: str = "cpu"
    seed: int = 0
    isolate: bool = True


def cases(settings: SpeedSettings) -> list[Case]:
    """Every case of the grid, grouped by model, dimension and operation, libraries innermost."""
    return [
        Case(
            library,
            model,
            dim,
            op,
            settings.spec,
            settings.batch,
            settings.warmup,
            settings.sample_repeats if op == "sample" else settings.repeats,
            settings.budget_s,
            settings.threads,
            settings.device,
            settings.seed,
        )
        for model in settings.models
        for dim in settings.dims
        for op in settings.operations
        for library in settings.libraries
    ]


def groups(todo: list[Case]) -> Iterator[list[Case]]:
    """The cases split into comparisons: consecutive cases of the same model, dimension and operation."""
    group: list[Case] = []
    for case in todo:
        if group and (case.model, case.dim, case.operation) != (group[0].model, group[0].dim, group[0].operation):
            yield group
            group = []
        group.append(case)
    if group:
        yield group


def run_group(group: list[Case], kill_after_s: float) -> list[Result]:
    """Measure one comparison in worker processes, interleaving the libraries' timed calls."""
    sessions = [RemoteSession(case, kill_after_s) for case in group]
    for session in sessions:
        session.wait_ready()
    for session in sessions:
        session.warm_up()
    while active := [session for session in sessions if not session.done]:
        for session in active:
            session.time_one()
    return [session.finish() for session in sessions]


def _describe(result: Result) -> str:
    if result.error:
        return f"ERROR {result.error}"
    text = f"median {result.median_ms:.2f} ms, min {result.min_ms:.2f} ms ({result.repeats} timed"
    text += ", measured once: over budget)" if result.once else ")"
    if result.peak_mib is not None:
        text += f", peak +{result.peak_mib:.1f} MiB"
    return text


def run_speed(settings: SpeedSettings, progress: TextIO = sys.stderr) -> tuple[list[Result], list[float]]:
    """Measure every comparison in turn, reporting each case on ``progress``; returns the results and the
    1-minute load average after each comparison (a load above the thread count means competing processes)."""
    todo = cases(settings)
    results: list[Result] = []
    loads = []
    for group in groups(todo):
        done = run_group(group, settings.kill_after_s) if settings.isolate else [run_case(case) for case in group]
        loads.append(os.getloadavg()[0])
        for result in done:
            results.append(result)
            case = result.case
            name = f"{case.library} {case.model} D={case.dim} {case.operation}"
            print(f"[{len(results)}/{len(todo)}] {name}: {_describe(result)}; load {loads[-1]:.2f}", file=progress)
        progress.flush()
    return results, loads
