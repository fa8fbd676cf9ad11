"""--fit-minutes: the schedule's length is cut to the steps that fit the time budget, measured on the run
itself, so the learning rate still decays to --min-lr; a resumed run keeps the fitted length."""
import json
import time
from pathlib import Path

import pytest
from test_train_resume import SMALL, events

from dovit import train
from dovit.training import trainer


def step_rows(output: Path) -> list[dict]:
    return [r for r in map(json.loads, (output / "log.jsonl").read_text().splitlines()) if "lr" in r]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_schedule_fit_counts_the_budget_from_the_loop_start(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(time, "perf_counter", clock)  # the clock Stopwatch reads
    fit = trainer.ScheduleFit(minutes=1.0, start_step=0)
    clock.now += 5.0  # warm-up steps: slow, untimed, but paid from the budget
    for step in range(1, trainer.FIT_MEASURE_STEPS + 1):
        if step > trainer.FIT_SKIP_STEPS:
            clock.now += 0.5  # two steps per second once warm
        measured = fit.observe(step)
        assert measured == (step == trainer.FIT_MEASURE_STEPS)
    assert fit.rate == pytest.approx(2.0)
    # 60 s budget - 5 s warm-up - 15 s measured = 40 s left at 2 steps/s: 80 more steps after step 40.
    assert fit.total_steps(requested=10_000) == trainer.FIT_MEASURE_STEPS + 80
    assert fit.total_steps(requested=50) == 50  # never longer than --steps
    clock.now += 1000.0
    assert fit.total_steps(requested=10_000) == trainer.FIT_MEASURE_STEPS  # over budget: stop now


def test_a_fitted_run_ends_early_with_its_schedule_complete(tmp_path):
    output = tmp_path / "run"
    argv = [*SMALL, "--output", str(output), "--steps", "1000000", "--fit-minutes", "0.04", "--min-lr",
            "1e-6",
            "--lr", "1e-3", "--save-every", "100000"]
    assert train.main(argv) == 0
    fit = [e for e in events(output) if e["event"] == "fit"]
    assert len(fit) == 1 and fit[0]["step"] == trainer.FIT_MEASURE_STEPS and fit[0]["steps_per_s"] > 0
    fitted = fit[0]["steps"]
    assert trainer.FIT_MEASURE_STEPS <= fitted < 1_000_000
    done = [e for e in events(output) if e["event"] == "done"][0]
    assert done["step"] == fitted
    rows = step_rows(output)
    assert rows[-1]["step"] == fitted
    # the cosine reached its floor at the fitted end, not at step 1,000,000
    assert rows[-1]["lr"] == pytest.approx(1e-6, abs=1e-6 if fitted > 2 else 1e-3)


def test_resume_keeps_the_fitted_length(tmp_path):
    output = tmp_path / "run"
    common = [*SMALL, "--output", str(output), "--steps", "1000000", "--fit-minutes", "0.03", "--save-every",
              "1"]
    assert train.main(common) == 0
    fitted = [e for e in events(output) if e["event"] == "fit"][0]["steps"]
    # resuming the finished run with a longer --steps: the fitted length holds, no second fit
    assert train.main([*common, "--resume"]) == 0
    assert [e["event"] for e in events(output)].count("fit") == 1
    assert [e for e in events(output) if e["event"] == "done"][-1]["step"] == fitted
