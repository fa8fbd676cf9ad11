"""dovit.evaluation.runtimes (--runtime int8): three runtimes, dense and DoViT; spreads, ideal, eta, fps,
agreement."""

import torch

from dovit import benchmark
from dovit.evaluation.runtimes import (
    RUNTIMES,
    Int8Comparison,
    Spread,
    format_comparison,
    measure,
    time_runtimes,
)


def test_every_runtime_gets_its_times_ratios_and_agreement(tiny_model):
    torch.manual_seed(0)
    frames = torch.randn(2, 3, 64, 96)
    models = dict.fromkeys(RUNTIMES, tiny_model)  # the same model thrice: the bookkeeping, not the runtimes
    times = time_runtimes(models, frames, xi=0.5, warmup=0, repeats=3)
    assert set(times) == {f"{r} {v}" for r in RUNTIMES for v in ("dense", "dovit")}
    assert all(len(values) == 3 for values in times.values())
    rows = measure(models, frames, 0.5, times)
    assert [row.runtime for row in rows] == list(RUNTIMES)
    for row in rows:
        assert row.agreement == 1.0 and row.ideal >= 1.0 and 0.0 <= row.kept <= 1.0
        assert row.dense_ms.low <= row.dense_ms.median <= row.dense_ms.high
        assert row.efficiency == row.speedup.median / row.ideal and row.fps == 1000.0 / row.dovit_ms.median
    assert rows[0].over_pytorch.median == 1.0
    result = Int8Comparison("cpu", 1, "tiny", 2, (64, 96), 0.5, 3, rows)
    table = format_comparison(result)
    assert "| ORT int8 |" in table and "η" in table and "fps" in table
    assert result.to_json()["timings"][2]["efficiency"] == rows[2].efficiency


def test_spread_and_the_flag():
    assert str(Spread.of([3.0, 1.0, 2.0])) == "2.00 (1.00–3.00)"
    args = benchmark.build_parser().parse_args(["--runtime", "int8", "--int8-export", "x"])
    assert args.runtime == "int8" and args.int8_export == "x"
