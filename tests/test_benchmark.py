import ast
import importlib.util
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import dovit
from dovit import benchmark, speed


def test_run_case_reports_consistent_measured_ratios_per_batch_size():
    rows = speed.run_case("vit_tiny_patch16_224", (64, 96), fractions=(0.75, 0.25), batch_sizes=(1, 2),
                              warmup=0, repeats=2)
    assert [(r["batch"], r["kept_fraction"]) for r in rows] == [(1, 0.75), (1, 0.25), (2, 0.75), (2, 0.25)]
    assert rows[0]["dynamic_gflops"] > rows[1]["dynamic_gflops"]
    for row in rows:
        same_fraction = next(r for r in rows if r["batch"] == 1 and r["kept_fraction"] == row["kept_fraction"])
        assert row["dynamic_gflops"] == pytest.approx(same_fraction["dynamic_gflops"])  # per image
        assert row["dense_ms"] > 0 and row["dynamic_ms"] > 0
        assert row["dense_img_s"] == pytest.approx(1000 * row["batch"] / row["dense_ms"])
        assert row["dynamic_img_s"] == pytest.approx(1000 * row["batch"] / row["dynamic_ms"])
        assert row["ideal_speedup"] == pytest.approx(row["dense_gflops"] / row["dynamic_gflops"])
        assert row["speedup_min"] <= row["speedup"] <= row["speedup_max"]
        assert row["efficiency"] == pytest.approx(row["speedup"] / row["ideal_speedup"])
    table = speed.format_table(rows)
    assert "| vit_tiny_patch16_224 | 64x96 | 1 | 75% |" in table and "| vit_tiny_patch16_224 | 64x96 | 2 | 25% |" in table


def test_checkpoint_case_compares_batch_sizes_and_packings(tiny_model):
    frames = torch.randn(4, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    before = tiny_model.pack_overhead_tokens
    result = speed.run_checkpoint_case(tiny_model, frames, batch=2, xi=0.3, warmup=0, repeats=2)
    assert tiny_model.pack_overhead_tokens == before  # the packing plans are restored
    assert result["xi"] == 0.3 and result["batch"] == 2 and result["images"] == 4
    assert set(result["img_s"]) == {"dense_b1", "dovit_b1", "dense_b2", "dovit_b2 planned",
                                    "dovit_b2 one padded forward", "dovit_b2 image by image"}
    assert all(value > 0 for value in result["img_s"].values())
    assert result["ideal_speedup"] == pytest.approx(result["dense_gflops"] / result["dynamic_gflops"])
    for name in ("speedup_b1", "speedup_b2", "dovit_b2_over_b1", "dense_b2_over_b1"):
        ratio = result["ratios"][name]
        assert ratio["min"] <= ratio["median"] <= ratio["max"]
    assert result["efficiency_b2"] == pytest.approx(result["ratios"]["speedup_b2"]["median"] / result["ideal_speedup"])
    assert "ξ = 0.3, batch 2" in speed.format_checkpoint(result)


def test_checkpoint_case_under_bfloat16_records_the_dtype(tiny_model):
    frames = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    result = speed.run_checkpoint_case(tiny_model, frames, batch=2, xi=0.3, warmup=0, repeats=1,
                                           packings={"planned": None}, dtype="bfloat16")
    assert result["dtype"] == "bfloat16" and set(result["img_s"]) == {"dense_b1", "dovit_b1", "dense_b2",
                                                                      "dovit_b2 planned"}
    assert all(math.isfinite(value) and value > 0 for value in result["img_s"].values())
    assert 0 < result["dynamic_gflops"] <= result["dense_gflops"]
    assert "ξ = 0.3, batch 2, bfloat16:" in speed.format_checkpoint(result)


def test_cli_writes_json_and_skips_missing_frames(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(speed, "CASES", (("vit_tiny_patch16_224", (32, 48)),))
    out = tmp_path / "bench.json"
    assert benchmark.main(["--batch", "1", "2", "--repeats", "1", "--warmup", "0", "--data-root",
                           str(tmp_path / "none"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"(real-frame case skipped: no data at {tmp_path / 'none'})" in printed and "load average" in printed
    saved = json.loads(out.read_text())
    assert saved["device"] == "cpu" and saved["dtype"] == "float32" and saved["checkpoint_cases"] == []
    assert sorted({row["batch"] for row in saved["cases"]}) == [1, 2]
    assert {row["dtype"] for row in saved["cases"]} == {"float32"}


def test_bfloat16_case_times_its_forwards_under_autocast_with_the_float32_flops(monkeypatch):
    timed_under = []
    interleaved = speed.interleaved_times

    def spy(variants, warmup, rounds, device):
        timed_under.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return interleaved(variants, warmup, rounds, device)

    monkeypatch.setattr(speed, "interleaved_times", spy)
    options = dict(fractions=(0.5,), batch_sizes=(2,), warmup=0, repeats=2)
    bf16 = speed.run_case("vit_tiny_patch16_224", (32, 48), dtype="bfloat16", **options)
    fp32 = speed.run_case("vit_tiny_patch16_224", (32, 48), **options)
    assert timed_under == [torch.bfloat16, None]
    assert [(r["dtype"], r["batch"], r["kept_fraction"]) for r in bf16] == [("bfloat16", 2, 0.5)]
    assert fp32[0]["dtype"] == "float32"
    row = bf16[0]
    for key in ("dense_gflops", "dynamic_gflops", "ideal_speedup"):  # analytic: the dtype does not change them
        assert row[key] == pytest.approx(fp32[0][key])
    for key in ("dense_img_s", "dynamic_img_s", "speedup", "efficiency"):
        assert math.isfinite(row[key]) and row[key] > 0
    assert row["dynamic_gflops"] < row["dense_gflops"]


def test_cli_backbone_input_size_fractions_and_dtype_choose_the_cases(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert benchmark.main(["--backbone", "vit_tiny_patch16_224", "--input-size", "32", "48", "--fractions", "0.5",
                           "0.25", "--dtype", "bfloat16", "--batch", "1", "2", "--repeats", "1", "--warmup", "0",
                           "--no-frames", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "device cpu, dtype bfloat16" in printed and "(real-frame case skipped: --no-frames)" in printed
    assert "| vit_tiny_patch16_224 | 32x48 | 2 | 25% |" in printed and "GPU" not in printed
    saved = json.loads(out.read_text())
    assert saved["dtype"] == "bfloat16" and saved["checkpoint_cases"] == []
    assert [(r["backbone"], r["input"], r["batch"], r["kept_fraction"], r["dtype"]) for r in saved["cases"]] == [
        ("vit_tiny_patch16_224", "32x48", batch, fraction, "bfloat16") for batch in (1, 2) for fraction in (0.5, 0.25)]
    assert all(math.isfinite(r["dynamic_img_s"]) and r["dynamic_img_s"] > 0 for r in saved["cases"])


def test_random_init_cases_pair_backbones_with_sizes():
    tiny, small = "vit_tiny_patch16_224", "vit_small_patch16_224"
    assert speed.random_init_cases(None, None) == list(speed.CASES)
    assert speed.random_init_cases(None, None, quick=True) == list(speed.CASES[:1])
    assert speed.random_init_cases([tiny, small], [[64, 96]]) == [(tiny, (64, 96)), (small, (64, 96))]
    assert speed.random_init_cases([tiny, small], [[64, 96], [32, 48]]) == [(tiny, (64, 96)), (small, (32, 48))]
    assert speed.random_init_cases([tiny], None) == [(tiny, (360, 480))]  # the model's default size
    with pytest.raises(ValueError, match="one size for all or one per backbone"):
        speed.random_init_cases([tiny, small, tiny], [[64, 96], [32, 48]])
    with pytest.raises(ValueError, match="name the backbone too"):
        speed.random_init_cases(None, [[64, 96]])
    with pytest.raises(ValueError, match="--quick"):
        speed.random_init_cases([tiny], None, quick=True)


@pytest.mark.parametrize("arguments, message", [
    (["--backbone", "vit_tiny_patch16_244"], "unknown backbone 'vit_tiny_patch16_244' (did you mean vit_tiny_patch16_224"),
    (["--backbone", "resnet50"], "resnet50: not a plain timm ViT/DeiT"),
    (["--dtype", "float16"], "--dtype float16 needs --device cuda"),
    (["--fractions", "0.5", "1.5"], "--fractions must each be in (0, 1]"),
    (["--batch", "0"], "--batch sizes and --repeats must be at least 1"),
])
def test_cli_refuses_bad_arguments_in_one_line_before_any_case_runs(arguments, message, monkeypatch, capsys):
    monkeypatch.setattr(speed, "run_case", lambda *a, **k: pytest.fail("a case ran"))
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(arguments + ["--no-frames"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("python -m dovit.benchmark: error: ") and message in error
    assert error.count("\n") == 1


def test_cli_refuses_cuda_without_a_card_and_uneven_frames(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["--device", "cuda", "--no-frames"])
    assert exit_info.value.code == 2 and "sees no CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # the real-frame case would run (its root exists)
        benchmark.main(["--batch", "1", "8", "--frames", "12", "--data-root", str(tmp_path)])
    assert exit_info.value.code == 2 and "--frames 12 is not a multiple of batch size 8" in capsys.readouterr().err


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
    profile = speed.stage_profile("vit_tiny_patch16_224", (64, 96), fractions=(0.25,), warmup=0, repeats=2)
    assert list(profile) == ["dense", "25% kept"]
    assert {"embed", "group_1", "group_4", "decoder", "upsample"} <= set(profile["dense"])
    assert {"decision_1", "decision_3"} <= set(profile["25% kept"]) and "decision_1" not in profile["dense"]
    assert all(ms >= 0 for timings in profile.values() for ms in timings.values())
    table = speed.format_profile(profile)
    assert "| decision_1 | – |" in table and table.splitlines()[-1].startswith("| total |")


def test_mask_resample_benchmark_compares_both_mask_paths_on_frames(tiny_model, tmp_path, capsys):
    """benchmarks.mask_resample on two frames: both mask paths timed in pairs, masks compared pixel by pixel."""
    from benchmarks import mask_resample

    checkpoint = dovit.save_checkpoint(tiny_model, tmp_path / "checkpoint")
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(2):
        cv2.imwrite(str(frames / f"f{index}.png"), np.random.default_rng(index).integers(0, 256, (64, 96, 3), np.uint8))
    mask_resample.main(["--checkpoint", str(checkpoint), "--data-root", str(frames), "--frames", "2", "--rounds", "1",
                        "--sizes", "128x192", "40x50"])
    out = capsys.readouterr().out
    assert "2 frames of" in out and "mixed 2x2 blocks per frame" in out
    assert "mask 128x192: upsample" in out and "2 pairs); pixels that differ: 0 of 49152" in out
    assert "mask 40x50: upsample" in out and "pixels that differ: 0 of 4000" in out
    assert "Predictor.predict on a 128x192 image (xi part)" in out
