"""python -m dovit.benchmark: flags, refusals before any case runs, the printed tables and JSON."""
import json
import math

import pytest
import torch

from dovit import benchmark
from dovit.evaluation import benchmark_cases


def test_cli_writes_json_and_skips_missing_frames(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(benchmark_cases, "CASES", (("vit_tiny_patch16_224", (32, 48)),))
    out = tmp_path / "bench.json"
    assert benchmark.main(["--batch", "1", "2", "--repeats", "1", "--warmup", "0", "--data-root",
                           str(tmp_path / "none"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (f"(real-frame case skipped: no data at {tmp_path / 'none'})" in printed
            and "load average" in printed)
    saved = json.loads(out.read_text())
    assert saved["device"] == "cpu" and saved["dtype"] == "float32" and saved["checkpoint_cases"] == []
    assert sorted({row["batch"] for row in saved["cases"]}) == [1, 2]
    assert {row["dtype"] for row in saved["cases"]} == {"float32"}


def test_cli_backbone_input_size_fractions_and_dtype_choose_the_cases(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert benchmark.main(["--backbone", "vit_tiny_patch16_224", "--input-size", "32", "48", "--fractions",
                           "0.5",
                           "0.25", "--dtype", "bfloat16", "--batch", "1", "2", "--repeats", "1", "--warmup",
                           "0",
                           "--no-frames", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "device cpu, dtype bfloat16" in printed and "(real-frame case skipped: --no-frames)" in printed
    assert "| vit_tiny_patch16_224 | 32x48 | 2 | 25% |" in printed and "GPU" not in printed
    saved = json.loads(out.read_text())
    assert saved["dtype"] == "bfloat16" and saved["checkpoint_cases"] == []
    assert [
        (r["backbone"], r["input"], r["batch"], r["kept_fraction"], r["dtype"]) for r in saved["cases"]
    ] == [
        ("vit_tiny_patch16_224", "32x48", batch, fraction, "bfloat16")
        for batch in (1, 2)
        for fraction in (0.5, 0.25)
    ]
    assert all(math.isfinite(r["dynamic_img_s"]) and r["dynamic_img_s"] > 0 for r in saved["cases"])


@pytest.mark.parametrize("arguments, message", [
    (["--backbone", "vit_tiny_patch16_244"],
     "unknown backbone 'vit_tiny_patch16_244' (did you mean vit_tiny_patch16_224"),
    (["--backbone", "resnet50"], "resnet50: not a plain timm ViT/DeiT"),
    (["--dtype", "float16"], "--dtype float16 needs --device cuda"),
    (["--fractions", "0.5", "1.5"], "--fractions must each be in (0, 1]"),
    (["--batch", "0"], "--batch sizes and --repeats must be at least 1"),
])
def test_cli_refuses_bad_arguments_in_one_line_before_any_case_runs(arguments, message, monkeypatch, capsys):
    monkeypatch.setattr(benchmark_cases, "run_case", lambda *a, **k: pytest.fail("a case ran"))
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
    assert (exit_info.value.code == 2
            and "--frames 12 is not a multiple of batch size 8" in capsys.readouterr().err)


def test_baseline_times_two_checkpoints_interleaved_on_the_same_frames(tmp_path, monkeypatch, capsys):
    import dovit

    for name, xi in (("this", 0.5), ("base", 0.9)):
        torch.manual_seed(0)
        model = dovit.build_model(num_classes=5, input_size=(32, 48), default_xi=xi)
        dovit.save_checkpoint(model, tmp_path / name)
    calls = []

    def frames(root, count, model):
        calls.append(model.config.default_xi)
        return torch.randn(count, 3, 32, 48)

    monkeypatch.setattr(benchmark, "load_frames", frames)
    out = tmp_path / "baseline.json"
    assert benchmark.main(["--checkpoint", str(tmp_path / "this"), "--baseline", str(tmp_path / "base"),
                           "--frames", "2", "--repeats", "3", "--warmup", "0", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "DoViT at default ξ" in printed and "this / baseline" in printed and calls == [0.5, 0.9]
    saved = json.loads(out.read_text())
    assert (saved["xi"], saved["baseline_xi"], saved["frames"]) == (0.5, 0.9, 2)
    for kind in ("dovit", "dense"):
        ratio = saved["ratios"][kind]
        assert ratio["min"] <= ratio["median"] <= ratio["max"] and saved["ms"][kind] > 0
    missing = ["--baseline", str(tmp_path / "missing"), "--checkpoint", str(tmp_path / "this")]
    assert benchmark.main(missing) == 2


def test_batchnorm_folding_times_a_hybrid_folded_and_as_written(tmp_path, monkeypatch, capsys):
    import dovit
    from dovit.data.datasets import CAMVID_CLASSES

    torch.manual_seed(0)
    hybrid = dovit.build_model(num_classes=11, class_names=CAMVID_CLASSES, input_size=(32, 48),
                               stem="espnetv2", decoder="espnetv2", default_xi=0.5)
    dovit.save_checkpoint(hybrid, tmp_path / "hybrid")
    dovit.save_checkpoint(dovit.build_model(num_classes=5, input_size=(32, 48)), tmp_path / "plain")
    monkeypatch.setattr(benchmark, "load_frames", lambda root, count, model: torch.randn(count, 3, 32, 48))
    out = tmp_path / "folding.json"
    assert benchmark.main(["--checkpoint", str(tmp_path / "hybrid"), "--batchnorm-folding", "--frames", "2",
                           "--repeats", "3", "--warmup", "0", "--json", str(out)]) == 0
    assert "unfolded / folded" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert (saved["xi"], saved["frames"]) == (0.5, 2)
    for part in ("stem", "decoder", "forward"):
        ratio = saved["speedups"][part]
        assert ratio["min"] <= ratio["median"] <= ratio["max"]
        assert saved["ms"]["folded"][part] > 0 and saved["ms"]["unfolded"][part] > 0
    assert benchmark.main(["--checkpoint", str(tmp_path / "plain"), "--batchnorm-folding"]) == 2
    assert "BatchNorm folding serves the hybrid" in capsys.readouterr().err
