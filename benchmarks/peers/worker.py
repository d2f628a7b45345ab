"""One measurement as a :class:`Session`, in this process or, as a script, serving a parent process.

``python -m benchmarks.peers.worker`` reads one JSON command a line on standard input (``setup`` with a case,
``time``, ``finish``) and answers each with one line that starts with :data:`MARKER` followed by JSON; other output
(a library's prints) is ignored by the parent. See :mod:`benchmarks.peers.remote` for the other end.
"""

from __future__ import annotations

import json
import sys
import warnings

import torch

from .case import Case, Result
from .libraries import builder
from .memory import meter
from .operations import operation
from .timing import Stopwatch

__all__ = ["MARKER", "Session", "run_case", "serve"]

MARKER = "@@peers@@ "


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0][:200]


class Session:
    """One case measured in this process: building and warming up, timed calls one by one, then the result.

    Failures never raise: they end the session, and :meth:`finish` reports them as the result's ``error``.
    """

    def __init__(self, case: Case) -> None:
        self.case, self.error, self.parameters = case, "", None
        self.peak = meter(torch.device(case.device))
        self.watch: Stopwatch | None = None

    def warm_up(self) -> None:
        """Build the model and the operation, start the memory meter, and make the warm-up calls."""
        case = self.case
        torch.set_num_threads(case.threads)
        device = torch.device(case.device)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # peers' deprecation chatter; results are unaffected
                torch.manual_seed(case.seed)
                built = builder(case.library)(case.model, case.dim, case.spec)
                built.module.to(device)
                self.parameters = sum(p.numel() for p in built.module.parameters() if p.requires_grad)
                x = torch.randn(case.batch, case.dim, generator=torch.Generator().manual_seed(case.seed)).to(device)
                call = operation(case.operation, built, x)
                sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
                self.watch = Stopwatch(
                    call, warmup=case.warmup, repeats=case.repeats, budget_s=case.budget_s, sync=sync
                )
                self.peak.start()
                self.watch.warm_up()
        except Exception as error:  # one failing library or model must not stop the run
            self.error = _error(error)

    @property
    def done(self) -> bool:
        """Whether no more timed calls are wanted."""
        return bool(self.error) or self.watch is None or self.watch.done

    def time_one(self) -> None:
        """Time one more call."""
        if self.watch is None or self.error:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.watch.time_one()
        except Exception as error:
            self.error = _error(error)

    def finish(self) -> Result:
        """The result: times, peak memory since :meth:`warm_up` began, parameter count, or the error."""
        if self.error or self.watch is None or not self.watch.times:
            return Result(self.case, parameters=self.parameters, error=self.error or "no timed call")
        peak_bytes = self.peak.stop()
        timing = self.watch.timing()
        return Result(
            self.case,
            median_ms=timing.median_s * 1e3,
            min_ms=min(timing.times_s) * 1e3,
            repeats=len(timing.times_s),
            once=timing.once,
            peak_mib=None if peak_bytes is None else peak_bytes / 2**20,
            parameters=self.parameters,
        )


def run_case(case: Case) -> Result:
    """Measure ``case`` on its own in this process."""
    session = Session(case)
    session.warm_up()
    while not session.done:
        session.time_one()
    return session.finish()


def _reply(payload: dict) -> None:
    print(MARKER + json.dumps(payload), flush=True)


def serve() -> int:
    """Answer a parent's commands on standard input until ``finish`` (or end of input)."""
    session: Session | None = None
    _reply({"ready": True})
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "setup":
            session = Session(Case.from_json(json.dumps(command["case"])))
            session.warm_up()
        elif command["cmd"] == "time" and session is not None:
            session.time_one()
        elif command["cmd"] == "finish" and session is not None:
            _reply({"result": json.loads(session.finish().to_json())})
            return 0
        else:
            _reply({"error": f"unexpected command {command!r}"})
            return 1
        _reply({"done": session.done})
    return 1


if __name__ == "__main__":
    raise SystemExit(serve())
