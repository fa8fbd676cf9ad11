import pytest

from dovit import benchmark


def test_forced_masks_keep_the_requested_fraction():
    masks = benchmark.forced_masks(3, 200, 0.25)
    assert len(masks) == 3 and all(int(m.sum()) == 50 for m in masks)


def test_run_case_reports_consistent_measured_ratios():
    rows = benchmark.run_case("vit_tiny_patch16_224", (64, 96), fractions=(0.75, 0.25), warmup=0, repeats=1)
    assert [r["kept_fraction"] for r in rows] == [0.75, 0.25]
    assert rows[0]["dynamic_gflops"] > rows[1]["dynamic_gflops"]
    for row in rows:
        assert row["dense_ms"] > 0 and row["dynamic_ms"] > 0
        assert row["ideal_speedup"] == pytest.approx(row["dense_gflops"] / row["dynamic_gflops"])
        assert row["speedup"] == pytest.approx(row["dense_ms"] / row["dynamic_ms"])
        assert row["efficiency"] == pytest.approx(row["speedup"] / row["ideal_speedup"])
    assert "| vit_tiny_patch16_224 | 64x96 | 75% |" in benchmark.format_table(rows)
