"""One measurement to make (:class:`Case`) and what it gave (:class:`Result`), both plain JSON-able records."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .spec import ModelSpec

__all__ = ["Case", "Result"]


@dataclass(frozen=True)
class Case:
    """One library, model, dimension and operation, with the measurement settings."""

    library: str
    model: str
    dim: int
    operation: str
    spec: ModelSpec = field(default_factory=ModelSpec)
    batch: int = 512
    warmup: int = 2
    repeats: int = 5
    budget_s: float = 60.0
    threads: int = 1
    device: str = "cpu"
    seed: int = 0

    def to_json(self) -> str:
        """The case as one JSON object."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Case:
        """The case written by :meth:`to_json`."""
        fields = json.loads(text)
        spec = fields.pop("spec")
        return cls(spec=ModelSpec(**{**spec, "hidden": tuple(spec["hidden"])}), **fields)


@dataclass(frozen=True)
class Result:
    """What one case gave.

    Attributes:
        case: the case measured.
        median_ms: median time of one operation in milliseconds, or ``None`` on error.
        min_ms: the fastest timed call, in milliseconds (the least disturbed by other processes).
        repeats: how many timed calls the median is over.
        once: the first call exceeded the budget and is the only measurement.
        peak_mib: peak memory growth in MiB (see :mod:`~benchmarks.peers.memory`), or ``None``.
        parameters: the model's number of trainable parameters, or ``None`` when it could not be built.
        error: why the case failed (an exception, a timeout, a crashed worker), or ``""``.
    """

    case: Case
    median_ms: float | None = None
    min_ms: float | None = None
    repeats: int = 0
    once: bool = False
    peak_mib: float | None = None
    parameters: int | None = None
    error: str = ""

    def to_json(self) -> str:
        """The result as one JSON object."""
        return json.dumps({**asdict(self), "case": json.loads(self.case.to_json())})

    @classmethod
    def from_json(cls, text: str) -> Result:
        """The result written by :meth:`to_json`."""
        fields = json.loads(text)
        case = Case.from_json(json.dumps(fields.pop("case")))
        return cls(case=case, **fields)
