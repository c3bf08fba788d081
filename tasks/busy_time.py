"""Where a run's time went: wall-clock intervals during which something was busy.

The send flow says how much of its wall time was spent in HTTP requests, in the store, and in
neither (orchestration: Prefect's task runs, scheduling, waiting on each other). Intervals are
wall-clock (`time.time`) so the ones a Dask worker hands back line up with the flow's.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

# Busy periods closer than this are one: a sender that is never idle longer records a handful
# of intervals for a million requests, not a million.
MERGE_GAP = 0.001
KEPT = 100_000  # a long-lived process keeps its most recent intervals only


class BusyTime:
    """Counts nested or concurrent busy spans (one event loop, or callers holding a lock)."""

    def __init__(self) -> None:
        self.intervals: deque[list[float]] = deque(maxlen=KEPT)
        self._depth = 0

    def start(self) -> None:
        self._depth += 1
        if self._depth == 1:
            now = time.time()
            if self.intervals and now - self.intervals[-1][1] < MERGE_GAP:
                return  # the last span goes on
            self.intervals.append([now, now])

    def stop(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self.intervals:
            self.intervals[-1][1] = time.time()

    @contextmanager
    def timing(self) -> Iterator[None]:
        self.start()
        try:
            yield
        finally:
            self.stop()

    def since(self, start: float) -> list[tuple[float, float]]:
        """The spans from `start` on (clipped to it)."""
        return [(max(a, start), b) for a, b in self.intervals if b > start]


def union_seconds(*spans: Iterable[tuple[float, float]], start: float, end: float) -> float:
    """Seconds within [start, end] covered by at least one of the spans."""
    merged = sorted((max(a, start), min(b, end)) for group in spans for a, b in group)
    total, reach = 0.0, start
    for a, b in merged:
        if b <= reach:
            continue
        total += b - max(a, reach)
        reach = b
    return total
