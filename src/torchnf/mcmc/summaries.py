r"""Summaries of MCMC chains: a table of the usual statistics per coordinate, and export to ArviZ.

The columns are those recommended by Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021, "Rank-normalization,
folding, and localization: an improved :math:`\hat R` for assessing convergence of MCMC", *Bayesian Analysis*
16(2), §5), computed by :mod:`torchnf.mcmc.diagnostics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .._validation import as_tensor
from .diagnostics import _as_chains, _ess, _rhat, _sorted_quantile

__all__ = ["ChainSummary", "summary", "to_arviz"]


def _coordinate_names(names: str | Sequence[str] | None, event_shape: torch.Size) -> tuple[str, ...]:
    """One name per coordinate in C order: ``base[i, j]`` from a base name (``"x"`` by default), or ``names``."""
    count = event_shape.numel()
    if names is None or isinstance(names, str):
        base = "x" if names is None else names
        if len(event_shape) == 0:
            return (base,)
        return tuple(f"{base}[{', '.join(map(str, i))}]" for i in np.ndindex(*event_shape))
    names = tuple(names)
    if len(names) != count or not all(isinstance(n, str) for n in names):
        raise ValueError(
            f"names must be a string or {count} strings, one per coordinate of event shape {tuple(event_shape)}, "
            f"got {len(names)} item(s)"
        )
    return names


@dataclass(frozen=True)
class ChainSummary:
    """Per-coordinate statistics of MCMC chains, made by :func:`summary`; ``str()`` renders a Markdown table.

    Attributes:
        names: one name per coordinate, in C order of ``event_shape``.
        mean, sd: mean and standard deviation (divisor :math:`S - 1`) over all draws of all chains.
        q5, q95: the 5% and 95% quantiles over all draws (linear interpolation).
        ess_bulk, ess_tail: :func:`effective_sample_size` of kinds ``"bulk"`` and ``"tail"``.
        rhat: :func:`rhat` of kind ``"rank"``.

    Every statistic is a float64 tensor of shape ``event_shape``.
    """

    COLUMNS: ClassVar[tuple[str, ...]] = ("mean", "sd", "q5", "q95", "ess_bulk", "ess_tail", "rhat")

    names: tuple[str, ...]
    mean: Tensor
    sd: Tensor
    q5: Tensor
    q95: Tensor
    ess_bulk: Tensor
    ess_tail: Tensor
    rhat: Tensor

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One dict per coordinate: ``{"name": str, "mean": float, ..., "rhat": float}``."""
        columns = {c: getattr(self, c).reshape(-1).tolist() for c in self.COLUMNS}
        return [{"name": name, **{c: columns[c][i] for c in self.COLUMNS}} for i, name in enumerate(self.names)]

    def to_markdown(self, digits: int = 3) -> str:
        """A Markdown table, one row per coordinate: statistics to ``digits`` significant digits, ESS rounded to
        integers, R̂ to 3 decimals."""
        if digits < 1:
            raise ValueError(f"digits must be a positive integer, got {digits}")

        def cell(column: str, value: float) -> str:
            if math.isnan(value):
                return "nan"
            if column.startswith("ess"):
                return f"{value:.0f}"
            return f"{value:.3f}" if column == "rhat" else f"{value:#.{digits}g}"

        header = ["name", *self.COLUMNS]
        body = [[row["name"], *(cell(c, row[c]) for c in self.COLUMNS)] for row in self.rows]
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
        rule = [":" + "-" * (widths[0] - 1), *("-" * (w - 1) + ":" for w in widths[1:])]

        def line(cells: list[str]) -> str:
            padded = [cells[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))]
            return "| " + " | ".join(padded) + " |"

        return "\n".join([line(header), line(rule), *(line(r) for r in body)])

    def __str__(self) -> str:
        return self.to_markdown()


def summary(samples: Tensor | np.ndarray, names: str | Sequence[str] | None = None) -> ChainSummary:
    r"""Mean, standard deviation, 5% and 95% quantiles, bulk and tail ESS and rank-normalized :math:`\hat R` of
    each coordinate of MCMC chains (the columns recommended by Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021,
    *Bayesian Analysis* 16(2), §5: trust the estimates when :math:`\hat R < 1.01` and both ESS exceed about 400).

    Args:
        samples: draws of shape ``(draws, chains, *event_shape)``, at least 4 draws, finite.
        names: a base name (``"x"`` by default), giving ``x`` for a scalar and ``x[i, j]`` for coordinates, or one
            name per coordinate in C order.

    Returns:
        a :class:`ChainSummary`; ``.rows`` lists dicts, ``str()`` is a Markdown table.

    Example:
        >>> torch.manual_seed(0) and None
        >>> table = summary(torch.randn(500, 4, 2), names=["a", "b"])
        >>> [row["name"] for row in table.rows], table.ess_bulk.shape
        (['a', 'b'], torch.Size([2]))
        >>> str(table).splitlines()[0].replace(" ", "")  # a Markdown table
        '|name|mean|sd|q5|q95|ess_bulk|ess_tail|rhat|'
    """
    x, event_shape = _as_chains(samples)
    labels = _coordinate_names(names, event_shape)
    pooled = x.reshape(-1, x.shape[-1])
    ordered = pooled.sort(dim=0).values
    stats = {
        "mean": pooled.mean(0),
        "sd": pooled.std(dim=0, correction=1),
        "q5": _sorted_quantile(ordered, 0.05),
        "q95": _sorted_quantile(ordered, 0.95),
        "ess_bulk": _ess(x, "bulk"),
        "ess_tail": _ess(x, "tail"),
        "rhat": _rhat(x, "rank"),
    }
    return ChainSummary(names=labels, **{k: v.reshape(event_shape) for k, v in stats.items()})


def _chain_draw(value: Any, name: str, draws: int, chains: int) -> np.ndarray:
    """``value`` ``(draws, chains, ...)`` as a NumPy array in ArviZ's ``(chain, draw, ...)`` order."""
    array = as_tensor(value, name).detach().cpu().numpy()
    if array.ndim < 2 or array.shape[:2] != (draws, chains):
        raise ValueError(
            f"{name} must have shape ({draws}, {chains}, ...) (draws, chains, ...) like samples, got {array.shape}"
        )
    return np.swapaxes(array, 0, 1)


def to_arviz(
    samples: Tensor | np.ndarray,
    names: str | Sequence[str] | None = None,
    log_prob: Tensor | np.ndarray | None = None,
    sample_stats: dict[str, Tensor | np.ndarray] | None = None,
) -> Any:
    """An ``arviz.InferenceData`` of MCMC chains, for ArviZ's plots and diagnostics (requires ``pip install arviz``).

    The posterior group holds the draws with dimensions ``(chain, draw, ...)``, ArviZ's order, transposed from
    this module's ``(draws, chains, ...)``.

    Args:
        samples: draws of shape ``(draws, chains, *event_shape)``.
        names: one variable name (``"x"`` by default) holding the whole event, or one name per coordinate in C
            order, giving one scalar variable each.
        log_prob: optional log-density of each draw, shape ``(draws, chains)``, stored as ``sample_stats.lp``.
        sample_stats: optional further per-draw statistics (acceptance rates, step sizes, ...), each of shape
            ``(draws, chains, ...)``.

    Returns:
        ``arviz.InferenceData`` with a ``posterior`` group and, when given, a ``sample_stats`` group.

    Raises:
        ImportError: ArviZ is not installed.
    """
    try:
        import arviz
    except ImportError:
        raise ImportError("to_arviz needs ArviZ; install it with `pip install arviz`") from None
    t = as_tensor(samples, "samples")
    _as_chains(t)  # shape and value checks
    draws, chains, event_shape = t.shape[0], t.shape[1], t.shape[2:]
    array = np.swapaxes(t.detach().cpu().numpy(), 0, 1)
    if names is None or isinstance(names, str):
        posterior = {"x" if names is None else names: array}
    else:
        labels = _coordinate_names(names, event_shape)
        flat = array.reshape(chains, draws, -1)
        posterior = {label: flat[..., i] for i, label in enumerate(labels)}
    stats: dict[str, np.ndarray] = {}
    if log_prob is not None:
        lp = as_tensor(log_prob, "log_prob")
        if lp.shape != (draws, chains):
            raise ValueError(f"log_prob must have shape ({draws}, {chains}) (draws, chains), got {tuple(lp.shape)}")
        stats["lp"] = _chain_draw(lp, "log_prob", draws, chains)
    for key, value in (sample_stats or {}).items():
        if not isinstance(key, str):
            raise TypeError(f"sample_stats keys must be strings, got {key!r}")
        stats[key] = _chain_draw(value, f"sample_stats[{key!r}]", draws, chains)
    return arviz.from_dict(posterior=posterior, sample_stats=stats or None)
