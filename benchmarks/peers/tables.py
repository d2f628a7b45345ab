"""Markdown tables of speed results (time, memory, parameters) and of quality-at-equal-time fits."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from .case import Result
from .libraries import OURS, PEERS
from .operations import TITLES
from .quality import Fit

__all__ = ["quality_tables", "ratio", "speed_tables"]


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], right_from: int) -> str:
    align = ["---" if i < right_from else "---:" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(value: float) -> str:
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def ratio(
    results: Sequence[Result],
    key: Callable[[Result], float | None] = lambda r: r.median_ms,
    ours: str = "torchnf",
) -> str:
    """The speed-up of library ``ours`` over the fastest peer: the peer's time over ours (medians by default), e.g.
    ``"2.50x (zuko)"`` when ours takes 40% of the time; ``"-"`` when either is missing."""
    mine = [key(r) for r in results if r.case.library == ours and key(r) is not None]
    peers = [(key(r), r.case.library) for r in results if r.case.library in PEERS and key(r) is not None]
    if not mine or not peers:
        return "-"
    fastest, name = min(peers)
    return f"{fastest / mine[0]:.2f}x ({name})"


def _rows(
    results: Sequence[Result],
    operation: str,
    libraries: Sequence[str],
    cell: Callable[[Result], str],
    key: Callable[[Result], float | None] | None = None,
) -> list[list[str]]:
    """One row per (model, D) of ``operation``: a cell per library, then the speed-up by ``key`` of each of our
    variants in ``libraries``, if given."""
    keys = list(dict.fromkeys((r.case.model, r.case.dim) for r in results if r.case.operation == operation))
    rows = []
    for model, dim in keys:
        group = [r for r in results if (r.case.model, r.case.dim, r.case.operation) == (model, dim, operation)]
        by_library = {r.case.library: r for r in group}
        row = [model, str(dim)] + [cell(by_library[lib]) if lib in by_library else "" for lib in libraries]
        ours = [name for name in OURS if name in libraries]
        rows.append(row if key is None else [*row, *(ratio(group, key, name) for name in ours)])
    return rows


def _time_cell(result: Result) -> str:
    if result.error:
        return "timeout" if result.error.startswith("timeout") else "error"
    return _ms(result.median_ms or math.nan) + ("*" if result.once else "")


def _min_cell(result: Result) -> str:
    if result.error:
        return "timeout" if result.error.startswith("timeout") else "error"
    return _ms(result.min_ms or math.nan) + ("*" if result.once else "")


def _memory_cell(result: Result) -> str:
    return "" if result.error or result.peak_mib is None else f"{result.peak_mib:,.1f}"


def _parameters(results: Sequence[Result], libraries: Sequence[str]) -> str:
    rows = []
    for model, dim in dict.fromkeys((r.case.model, r.case.dim) for r in results):
        counts = {r.case.library: r.parameters for r in results if (r.case.model, r.case.dim) == (model, dim)}
        rows.append([model, str(dim)] + [f"{counts[lib]:,}" if counts.get(lib) else "" for lib in libraries])
    return _table(["model", "D", *libraries], rows, 2)


def _notes(results: Sequence[Result]) -> list[str]:
    notes = []
    budgets = sorted({r.case.budget_s for r in results if r.once})
    if budgets:
        notes.append(
            f"\\* measured once: the first call took longer than the {', '.join(f'{b:g}' for b in budgets)} s budget, "
            "so it is the only measurement (it includes first-call costs)."
        )
    notes += [
        f"- {r.case.library} {r.case.model} D={r.case.dim} {r.case.operation}: {r.error}" for r in results if r.error
    ]
    return notes


def speed_tables(results: Sequence[Result], libraries: Sequence[str]) -> str:
    """Per operation, a table of median milliseconds with torchnf's speed-up over the fastest peer, the same for the
    fastest timed call (the figure least disturbed by other processes), then tables of peak memory growth and of
    parameter counts (equal counts are a check that the builders are equivalent)."""
    parts = []
    operations = list(dict.fromkeys(r.case.operation for r in results))
    head = ["model", "D", *libraries, *(f"{name} speed-up" for name in OURS if name in libraries)]
    for operation in operations:
        rows = _rows(results, operation, libraries, _time_cell, lambda r: r.median_ms)
        parts.append(f"### {TITLES[operation]}: median ms\n\n{_table(head, rows, 2)}")
    for operation in operations:
        rows = _rows(results, operation, libraries, _min_cell, lambda r: r.min_ms)
        parts.append(f"### {TITLES[operation]}: fastest timed call, ms\n\n{_table(head, rows, 2)}")
    for operation in operations:
        table = _table(["model", "D", *libraries], _rows(results, operation, libraries, _memory_cell), 2)
        parts.append(f"### {TITLES[operation]}: peak memory growth, MiB\n\n{table}")
    parts.append(f"### Trainable parameters\n\n{_parameters(results, libraries)}")
    notes = _notes(results)
    if notes:
        parts.append("\n".join(notes))
    return "\n\n".join(parts)


def _ll_cell(fit: Fit) -> str:
    if fit.error:
        return "diverged" if fit.error.startswith("FloatingPointError") else "error"
    return f"{fit.test_ll:.3f}" if fit.test_ll is not None else ""


def quality_tables(fits: Sequence[Fit], libraries: Sequence[str], seconds: float) -> str:
    """Test log-likelihood per (data set, model) and library, then the steps each fit managed in the budget."""
    keys = list(dict.fromkeys((f.dataset, f.model) for f in fits))

    def rows(cell: Callable[[Fit], str]) -> list[list[str]]:
        out = []
        for dataset, model in keys:
            by_library = {f.library: f for f in fits if (f.dataset, f.model) == (dataset, model)}
            dim = next(iter(by_library.values())).dim
            cells = [cell(by_library[lib]) if lib in by_library else "" for lib in libraries]
            out.append([dataset, str(dim), model, *cells])
        return out

    head = ["data", "D", "model", *libraries]
    parts = [
        f"### Test log-likelihood after {seconds:g} s of training (nats per point, higher is better)\n\n"
        + _table(head, rows(_ll_cell), 3),
        f"### Adam steps in {seconds:g} s (in brackets: the step of the best validation weights)\n\n"
        + _table(head, rows(lambda f: f"{f.steps:,} ({f.best_step:,})" + ("†" if f.stopped_early else "")), 3),
    ]
    notes = [f"- {f.library} {f.model} on {f.dataset}: {f.error}" for f in fits if f.error]
    if any(f.stopped_early for f in fits):
        notes.append("† stopped before the budget at a non-finite loss; the best validation weights before it count.")
    if notes:
        parts.append("\n".join(notes))
    return "\n\n".join(parts)
