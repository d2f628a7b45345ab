"""Wall-clock timing with warm-up, repeats, a median and a time budget."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Stopwatch", "Timing", "measure"]


@dataclass(frozen=True)
class Timing:
    """The times of one operation.

    Attributes:
        median_s: median of the timed repeats, in seconds (or the single time when :attr:`once`).
        times_s: every timed repeat.
        once: the first (warm-up) call alone took longer than the budget, so it is the only measurement: it
            includes first-call costs and is an upper bound on the steady-state time.
    """

    median_s: float
    times_s: tuple[float, ...]
    once: bool = False


class Stopwatch:
    """Budgeted timing of one call, a step at a time, so that several can be interleaved.

    :meth:`warm_up` makes ``warmup`` untimed calls (at least one), then :meth:`time_one` times one call each until
    :attr:`done`. The budget caps both phases, so a slow case costs about two budgets at most: when the first call
    takes more than ``budget_s`` seconds it is the only measurement (``once``); further warm-up calls are made only
    while the warm-up stays within half the budget; and timing is done after ``repeats`` calls, or as soon as the
    calls so far plus one more of the same length would exceed the budget (there is always at least one). ``sync``
    waits for queued device work before a clock is read.
    """

    def __init__(
        self,
        call: Callable[[], object],
        *,
        warmup: int,
        repeats: int,
        budget_s: float,
        sync: Callable[[], None] = lambda: None,
    ) -> None:
        self.call, self.warmup, self.repeats, self.budget_s, self.sync = call, warmup, repeats, budget_s, sync
        self.times: list[float] = []
        self.once = False
        self.warm = False

    def _timed(self) -> float:
        start = time.perf_counter()
        self.call()
        self.sync()
        return time.perf_counter() - start

    def warm_up(self) -> float:
        """Make the warm-up calls; returns the first one's time."""
        first = spent = self._timed()
        self.warm = True
        if first > self.budget_s:
            self.once, self.times = True, [first]
            return first
        for _ in range(self.warmup - 1):
            if spent + first > self.budget_s / 2:
                break
            spent += self._timed()
        return first

    @property
    def done(self) -> bool:
        """Whether the timing is complete."""
        if not self.warm:
            return False
        if self.once or len(self.times) >= self.repeats:
            return True
        return bool(self.times) and sum(self.times) + self.times[-1] > self.budget_s

    def time_one(self) -> float:
        """Time one more call."""
        if not self.warm:
            raise RuntimeError("warm up first")
        self.times.append(self._timed())
        return self.times[-1]

    def timing(self) -> Timing:
        """The result so far (at least one timed call is needed)."""
        return Timing(statistics.median(self.times), tuple(self.times), self.once)


def measure(
    call: Callable[[], object],
    *,
    warmup: int,
    repeats: int,
    budget_s: float,
    sync: Callable[[], None] = lambda: None,
) -> Timing:
    """Warm up and time ``call`` on its own, by the rules of :class:`Stopwatch`."""
    watch = Stopwatch(call, warmup=warmup, repeats=repeats, budget_s=budget_s, sync=sync)
    watch.warm_up()
    while not watch.done:
        watch.time_one()
    return watch.timing()
