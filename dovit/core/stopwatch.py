"""The one clock every hand-written timing reads: wall time since a start (``time.perf_counter``)."""
from __future__ import annotations

import time


class Stopwatch:
    """Started when made; ``seconds()`` / ``ms()`` since then, ``lap_ms()`` since the last lap (and
    restarts)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000.0

    def lap_ms(self) -> float:
        now = time.perf_counter()
        elapsed, self.start = (now - self.start) * 1000.0, now
        return elapsed
