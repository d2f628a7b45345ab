"""The parent's side of a worker process: a :class:`RemoteSession` runs one case in a fresh process.

A fresh process per case means that neither memory nor allocator state carries over from another case (the peak
memory figures depend on that), and a call that hangs can be killed. Several sessions are kept alive at once so
that :mod:`benchmarks.peers.speed` can time their calls in turn (round robin): every library of a comparison then
sees the same background load, which on a shared machine changes from second to second.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .case import Case, Result
from .worker import MARKER

__all__ = ["RemoteSession"]

_ROOT = Path(__file__).resolve().parents[2]  # the repository root, where ``benchmarks`` is importable


class RemoteSession:
    """A :class:`~benchmarks.peers.worker.Session` in a worker process (Linux and macOS: it waits with ``select``).

    The process starts (and imports torch) at construction; :meth:`wait_ready` waits for that, so that no
    measurement overlaps another worker's start. A worker that does not answer within ``kill_after_s`` seconds is
    killed and its case reported as a timeout.
    """

    def __init__(self, case: Case, kill_after_s: float) -> None:
        self.case, self.kill_after_s, self.error, self.is_done = case, kill_after_s, "", False
        path = os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the worker; closed in finish
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.peers.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=_ROOT,
            env={**os.environ, "PYTHONPATH": path},
        )

    def _fail(self, error: str) -> None:
        self.error, self.is_done = error, True
        self._process.kill()
        self._process.wait()

    def _answer(self) -> dict[str, Any] | None:
        deadline = time.monotonic() + self.kill_after_s
        stdout = self._process.stdout
        assert stdout is not None
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([stdout], [], [], left)[0]:
                self._fail(f"timeout: no answer in {self.kill_after_s:g} s, worker killed")
                return None
            line = stdout.readline()
            if not line:
                self._stderr.seek(0)
                last = (self._stderr.read().strip().splitlines() or [f"exit status {self._process.wait()}"])[-1]
                self._fail(f"worker failed: {last[:200]}")
                return None
            if line.startswith(MARKER):
                return json.loads(line[len(MARKER) :])

    def _ask(self, command: dict[str, Any]) -> dict[str, Any] | None:
        if self.error:
            return None
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        return self._answer()

    def wait_ready(self) -> None:
        """Wait until the worker has started."""
        self._answer()

    def warm_up(self) -> None:
        """Build and warm up in the worker."""
        answer = self._ask({"cmd": "setup", "case": json.loads(self.case.to_json())})
        self.is_done = self.is_done or bool(answer and answer.get("done"))

    @property
    def done(self) -> bool:
        """Whether no more timed calls are wanted."""
        return self.is_done

    def time_one(self) -> None:
        """Time one more call in the worker."""
        answer = self._ask({"cmd": "time"})
        self.is_done = self.is_done or bool(answer and answer.get("done"))

    def finish(self) -> Result:
        """The worker's result (it then exits), or the failure."""
        answer = self._ask({"cmd": "finish"})
        if answer is not None and "result" in answer:
            self._process.wait()
            self._stderr.close()
            return Result.from_json(json.dumps(answer["result"]))
        self._stderr.close()
        return Result(self.case, error=self.error or f"worker answered {answer!r}")
