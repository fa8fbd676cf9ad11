"""dovit.core.stopwatch: seconds, milliseconds and laps from one start."""
import time

from dovit.core.stopwatch import Stopwatch


def test_seconds_ms_and_laps_read_the_same_clock(monkeypatch):
    now = [10.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    watch = Stopwatch()
    now[0] = 10.5
    assert watch.seconds() == 0.5 and watch.ms() == 500.0
    assert watch.lap_ms() == 500.0
    now[0] = 10.75
    assert watch.ms() == 250.0
