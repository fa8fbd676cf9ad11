import ast
import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import dovit
from dovit.evaluation import benchmark_cases


def test_run_case_reports_consistent_measured_ratios_per_batch_size():
    rows = benchmark_cases.run_case("vit_tiny_patch16_224", (64, 96), fractions=(0.75, 0.25), batch_sizes=(1,
                                                                                                           2),
                              warmup=0, repeats=2)
    assert [(r["batch"], r["kept_fraction"]) for r in rows] == [(1, 0.75), (1, 0.25), (2, 0.75), (2, 0.25)]
    assert rows[0]["dynamic_gflops"] > rows[1]["dynamic_gflops"]
    for row in rows:
        same_fraction = next(r for r in rows if r["batch"] == 1 and r["kept_fraction"]
                             == row["kept_fraction"])
        assert row["dynamic_gflops"] == pytest.approx(same_fraction["dynamic_gflops"])  # per image
        assert row["dense_ms"] > 0 and row["dynamic_ms"] > 0
        assert row["dense_img_s"] == pytest.approx(1000 * row["batch"] / row["dense_ms"])
        assert row["dynamic_img_s"] == pytest.approx(1000 * row["batch"] / row["dynamic_ms"])
        assert row["ideal_speedup"] == pytest.approx(row["dense_gflops"] / row["dynamic_gflops"])
        assert row["speedup_min"] <= row["speedup"] <= row["speedup_max"]
        assert row["efficiency"] == pytest.approx(row["speedup"] / row["ideal_speedup"])
    table = benchmark_cases.format_table(rows)
    assert ("| vit_tiny_patch16_224 | 64x96 | 1 | 75% |" in table
            and "| vit_tiny_patch16_224 | 64x96 | 2 | 25% |" in table)


def test_checkpoint_case_compares_batch_sizes_and_packings(tiny_model):
    frames = torch.randn(4, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    before = tiny_model.pack_overhead_tokens
    result = benchmark_cases.run_checkpoint_case(tiny_model, frames, batch=2, xi=0.3, warmup=0, repeats=2)
    assert tiny_model.pack_overhead_tokens == before  # the packing plans are restored
    assert result["xi"] == 0.3 and result["batch"] == 2 and result["images"] == 4
    assert set(result["img_s"]) == {"dense_b1", "dovit_b1", "dense_b2", "dovit_b2 planned",
                                    "dovit_b2 one padded forward", "dovit_b2 image by image"}
    assert all(value > 0 for value in result["img_s"].values())
    assert result["ideal_speedup"] == pytest.approx(result["dense_gflops"] / result["dynamic_gflops"])
    for name in ("speedup_b1", "speedup_b2", "dovit_b2_over_b1", "dense_b2_over_b1"):
        ratio = result["ratios"][name]
        assert ratio["min"] <= ratio["median"] <= ratio["max"]
    assert (result["efficiency_b2"]
            == pytest.approx(result["ratios"]["speedup_b2"]["median"] / result["ideal_speedup"]))
    assert "ξ = 0.3, batch 2" in benchmark_cases.format_checkpoint(result)


def test_checkpoint_case_under_bfloat16_records_the_dtype(tiny_model):
    frames = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    result = benchmark_cases.run_checkpoint_case(tiny_model, frames, batch=2, xi=0.3, warmup=0, repeats=1,
                                           packings={"planned": None}, dtype="bfloat16")
    assert result["dtype"] == "bfloat16" and set(result["img_s"]) == {"dense_b1", "dovit_b1", "dense_b2",
                                                                      "dovit_b2 planned"}
    assert all(math.isfinite(value) and value > 0 for value in result["img_s"].values())
    assert 0 < result["dynamic_gflops"] <= result["dense_gflops"]
    assert "ξ = 0.3, batch 2, bfloat16:" in benchmark_cases.format_checkpoint(result)


def test_bfloat16_case_times_its_forwards_under_autocast_with_the_float32_flops(monkeypatch):
    timed_under = []
    interleaved = benchmark_cases.interleaved_times

    def spy(variants, warmup, rounds, device):
        timed_under.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return interleaved(variants, warmup, rounds, device)

    monkeypatch.setattr(benchmark_cases, "interleaved_times", spy)
    options = dict(fractions=(0.5,), batch_sizes=(2,), warmup=0, repeats=2)
    bf16 = benchmark_cases.run_case("vit_tiny_patch16_224", (32, 48), dtype="bfloat16", **options)
    fp32 = benchmark_cases.run_case("vit_tiny_patch16_224", (32, 48), **options)
    assert timed_under == [torch.bfloat16, None]
    assert [(r["dtype"], r["batch"], r["kept_fraction"]) for r in bf16] == [("bfloat16", 2, 0.5)]
    assert fp32[0]["dtype"] == "float32"
    row = bf16[0]
    # analytic: the dtype does not change them
    for key in ("dense_gflops", "dynamic_gflops", "ideal_speedup"):
        assert row[key] == pytest.approx(fp32[0][key])
    for key in ("dense_img_s", "dynamic_img_s", "speedup", "efficiency"):
        assert math.isfinite(row[key]) and row[key] > 0
    assert row["dynamic_gflops"] < row["dense_gflops"]


def test_random_init_cases_pair_backbones_with_sizes():
    tiny, small = "vit_tiny_patch16_224", "vit_small_patch16_224"
    assert benchmark_cases.random_init_cases(None, None) == list(benchmark_cases.CASES)
    assert benchmark_cases.random_init_cases(None, None, quick=True) == list(benchmark_cases.CASES[:1])
    assert benchmark_cases.random_init_cases([tiny, small], [[64, 96]]) == [(tiny, (64, 96)), (small, (64,
                                                                                                       96))]
    assert benchmark_cases.random_init_cases([tiny, small], [[64, 96], [32, 48]]) == [(tiny, (64, 96)),
                                                                                      (small, (32, 48))]
    assert benchmark_cases.random_init_cases([tiny], None) == [(tiny, (360, 480))]  # the model's default size
    with pytest.raises(ValueError, match="one size for all or one per backbone"):
        benchmark_cases.random_init_cases([tiny, small, tiny], [[64, 96], [32, 48]])
    with pytest.raises(ValueError, match="name the backbone too"):
        benchmark_cases.random_init_cases(None, [[64, 96]])
    with pytest.raises(ValueError, match="--quick"):
        benchmark_cases.random_init_cases([tiny], None, quick=True)


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
STILL_EDITS_SYS_PATH: set[str] = set()  # none: every benchmark imports the packages


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name != "__init__.py"))
def test_benchmark_scripts_import_the_packages_without_editing_sys_path(script):
    """`python -m benchmarks.<name>` from the checkout root: every dovit / app / tests module they import
    (also inside functions) resolves as a package import, none is found by editing sys.path."""
    source = (BENCHMARKS / script).read_text()
    if script not in STILL_EDITS_SYS_PATH:
        assert "sys.path" not in source
    imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import)
                 for alias in node.names}
    ours = sorted(name for name in imported if name.split(".")[0] in ("dovit", "app", "tests"))
    assert ours, f"{script} imports nothing from dovit or app"
    for name in ours:
        assert importlib.util.find_spec(name) is not None, f"{script}: cannot import {name}"


def test_stage_profile_names_every_stage_of_both_forwards():
    profile = benchmark_cases.stage_profile("vit_tiny_patch16_224", (64, 96), fractions=(0.25,), warmup=0,
                                            repeats=2)
    assert list(profile) == ["dense", "25% kept"]
    assert {"embed", "group_1", "group_4", "decoder", "upsample"} <= set(profile["dense"])
    assert {"decision_1", "decision_3"} <= set(profile["25% kept"]) and "decision_1" not in profile["dense"]
    assert all(ms >= 0 for timings in profile.values() for ms in timings.values())
    table = benchmark_cases.format_profile(profile)
    assert "| decision_1 | – |" in table and table.splitlines()[-1].startswith("| total |")


def test_mask_resample_benchmark_compares_both_mask_paths_on_frames(tiny_model, tmp_path, capsys):
    """benchmarks.mask_resample on two frames: both mask paths timed in pairs, masks compared pixel by
    pixel."""
    from benchmarks import mask_resample

    checkpoint = dovit.save_checkpoint(tiny_model, tmp_path / "checkpoint")
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(2):
        cv2.imwrite(str(frames / f"f{index}.png"), np.random.default_rng(index).integers(0, 256, (64, 96, 3),
                                                                                         np.uint8))
    mask_resample.main(["--checkpoint", str(checkpoint), "--data-root", str(frames), "--frames", "2",
                        "--rounds", "1",
                        "--sizes", "128x192", "40x50"])
    out = capsys.readouterr().out
    assert "2 frames of" in out and "mixed 2x2 blocks per frame" in out
    assert "mask 128x192: upsample" in out and "2 pairs); pixels that differ: 0 of 49152" in out
    assert "mask 40x50: upsample" in out and "pixels that differ: 0 of 4000" in out
    assert "Predictor.predict on a 128x192 image (xi part)" in out
