"""python -m dovit.evaluate and evaluate_model: one row per xi, FLOPs invariants, JSON + markdown output."""
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_train import assert_help_documents_every_flag

import dovit
from dovit import evaluate
from dovit.data import EvalTransform
from dovit.data.synthetic import synthetic_dataset
from dovit.evaluation import xi_sweep

INPUT_SIZE = (32, 48)  # a 2 x 3 token grid


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random-init ViT-Tiny checkpoint with CamVid's 11 classes (synthetic labels 0..2 fit in them)."""
    torch.manual_seed(0)
    model = dovit.build_model("vit_tiny_patch16_224", num_classes=11, input_size=INPUT_SIZE,
                              decoder_channels=16,
                              default_xi=0.5)
    return dovit.save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def results(checkpoint) -> list[dict]:
    model = dovit.load_checkpoint(checkpoint)
    dataset = synthetic_dataset(4, (40, 56), seed=3,
                                transform=EvalTransform(INPUT_SIZE, model.config.mean, model.config.std))
    return xi_sweep.evaluate_model(model, dataset, [0.0, 0.5, 1.0], progress=False)


def fake_camvid(root: Path, split: str = "val", count: int = 3, size: tuple[int, int] = (40, 56)) -> Path:
    rng = np.random.default_rng(0)
    (root / split).mkdir(parents=True)
    (root / f"{split}annot").mkdir()
    for index in range(count):
        cv2.imwrite(str(root / split / f"f{index}.png"), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        cv2.imwrite(str(root / f"{split}annot" / f"f{index}.png"), rng.integers(0, 12, size, dtype=np.uint8))
    return root


def test_help_documents_every_flag(monkeypatch):
    assert_help_documents_every_flag(evaluate, [], monkeypatch)


def test_one_row_per_xi_in_order(results):
    assert [r.xi for r in results] == [0.0, 0.5, 1.0]
    for r in results:
        assert r.images == 4
        for key in ("miou", "pa", "mpa"):
            assert 0.0 <= getattr(r, key) <= 1.0
        assert len(r.per_class_iou) == 11
        assert r.params_m > 0 and r.latency_ms > 0 and r.throughput_img_s > 0
        assert r.fps == pytest.approx(1000.0 / r.latency_ms)
        assert r.throughput_batch == 8


def test_flops_never_exceed_the_dense_forward(results):
    dense = results[0].dense_gflops
    for r in results:
        assert r.dense_gflops == pytest.approx(dense)  # the dense cost does not depend on xi
        assert r.backbone_gflops <= r.dense_backbone_gflops
        fractions = r.kept_fraction_per_group
        assert fractions[0] == 1.0  # B_1 always runs dense
        # stopped never return
        assert all(later <= earlier for earlier, later in zip(fractions, fractions[1:], strict=False))


def test_xi_one_is_the_dense_forward(results):
    dense = results[-1]
    assert dense.gflops == dense.dense_gflops
    assert dense.backbone_gflops == dense.dense_backbone_gflops
    assert dense.kept_fraction_per_group == [1.0] * 4


def test_xi_zero_stops_every_token_at_the_first_decision(results):
    # Every confidence exceeds 0, so all tokens stop after B_1: the cheapest forward, aux heads included.
    cheapest = results[0]
    assert cheapest.kept_fraction_per_group == [1.0, 0.0, 0.0, 0.0]
    assert cheapest.gflops < cheapest.dense_gflops
    # No forward can cost less: only the class token runs through blocks 4-12.
    assert all(cheapest.backbone_gflops <= r.backbone_gflops for r in results)


def test_max_images_limits_the_evaluation(checkpoint):
    model = dovit.load_checkpoint(checkpoint)
    dataset = synthetic_dataset(5, INPUT_SIZE, transform=EvalTransform(None, model.config.mean,
                                                                       model.config.std))
    (row,) = xi_sweep.evaluate_model(model, dataset, [1.0], max_images=2, progress=False)
    assert row.images == 2


def test_cli_writes_json_and_prints_a_markdown_table(checkpoint, tmp_path, capsys):
    root = fake_camvid(tmp_path / "camvid")
    out = tmp_path / "out" / "eval.json"
    code = evaluate.main(["--checkpoint", str(checkpoint), "--data-root", str(root), "--xi", "0.5", "1.0",
                          "--json", str(out), "--threads", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("|")]
    assert table[0].startswith("| ξ | mIoU | PA | mPA | GFLOPs")
    assert len(table) == 2 + 2  # header, rule, one row per xi
    assert table[2].startswith("| 0.5 |") and table[3].startswith("| 1 |")
    assert "3 images at 32x48" in printed
    document = json.loads(out.read_text())
    assert document["dataset"] == "camvid" and document["split"] == "val"
    assert document["input_size"] == list(INPUT_SIZE)
    assert [r["xi"] for r in document["results"]] == [0.5, 1.0]
    assert all(r["images"] == 3 for r in document["results"])
    dense = document["results"][1]
    assert dense["gflops"] == dense["dense_gflops"]


def test_cli_defaults_to_the_checkpoint_xi_and_dense(checkpoint, tmp_path, capsys):
    root = fake_camvid(tmp_path / "camvid", count=1)
    assert evaluate.main(["--checkpoint", str(checkpoint), "--data-root", str(root), "--threads", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 0")
            or line.startswith("| 1")]
    assert [row.split("|")[1].strip() for row in rows] == ["0.5", "1"]


@pytest.mark.parametrize("xi", ["1.5", "-0.1", "nan"])
def test_bad_xi_exits_2_with_a_clear_message(checkpoint, xi, capsys):
    assert evaluate.main(["--checkpoint", str(checkpoint), "--xi", "0.9", xi]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: xi must be a number in [0, 1]") and xi in error


def test_missing_data_and_wrong_class_count_exit_2(checkpoint, tmp_path, capsys):
    assert evaluate.main(["--checkpoint", str(checkpoint), "--data-root", str(tmp_path / "nowhere")]) == 2
    assert "no image/label pairs found" in capsys.readouterr().err
    # A 3-class model on 11-class CamVid: labels 3..10 would silently drop out of the metrics.
    small = dovit.save_checkpoint(dovit.build_model(num_classes=3, input_size=INPUT_SIZE,
                                                    decoder_channels=16),
                                  tmp_path / "small")
    root = fake_camvid(tmp_path / "camvid", count=1)
    assert evaluate.main(["--checkpoint", str(small), "--data-root", str(root)]) == 2
    assert "predicts 3 classes, camvid has 11" in capsys.readouterr().err


def test_missing_shipped_checkpoint_exits_2_naming_the_flag(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dovit.core.predictor, "DEFAULT_CHECKPOINT", tmp_path / "camvid_dovit_vit_tiny")
    assert evaluate.main(["--data-root", str(tmp_path)]) == 2
    assert "--checkpoint PATH" in capsys.readouterr().err


def test_markdown_table_reports_the_saving(results):
    lines = xi_sweep.markdown_table(results).splitlines()
    assert len(lines) == 2 + len(results)
    saved = [float(line.split("|")[7].strip().rstrip("%")) for line in lines[2:]]
    assert saved[-1] == 0.0  # xi = 1 saves nothing
    assert saved[0] > 0 and not any(math.isnan(v) for v in saved)


def test_cli_scores_only_the_chosen_drives(checkpoint, tmp_path, capsys):
    from conftest import write_drives

    write_drives(tmp_path / "camvid", {"0001TP": 2, "0006R0": 3}, size=(40, 56))
    out = tmp_path / "eval.json"
    assert evaluate.main(["--checkpoint", str(checkpoint), "--data-root", str(tmp_path / "camvid"), "--split",
                          "train",
                          "--sequences", "0006R0", "--xi", "1.0", "--json", str(out), "--threads", "1"]) == 0
    assert "(recordings 0006R0), 3 images" in capsys.readouterr().out
    document = json.loads(out.read_text())
    assert document["sequences"] == ["0006R0"] and document["results"][0]["images"] == 3
    assert evaluate.main(["--checkpoint", str(checkpoint), "--data-root", str(tmp_path / "camvid"), "--split",
                          "train",
                          "--sequences", "0016E5"]) == 2
    assert "0016E5" in capsys.readouterr().err


@torch.no_grad()
def test_throughput_runs_whole_batches_through_the_token_pass(checkpoint, monkeypatch):
    """The throughput measurement forwards ``batch`` images at a time (one warm-up batch first), also when
    the images keep different numbers of tokens, and reports images per second."""
    model = dovit.load_checkpoint(checkpoint).eval()
    monkeypatch.setattr(model, "pack_overhead_tokens", float("inf"))  # one padded forward per group
    images = [torch.randn(1, 3, *INPUT_SIZE, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    seen = []
    handle = model.vit.blocks[-1].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    try:
        throughput = xi_sweep._throughput(model, images, xi=0.5, batch=4)
    finally:
        handle.remove()
    assert throughput > 0
    assert seen == [4, 4, 2]  # warm-up batch, then 4 + 2 images
    assert xi_sweep._throughput(model, images[:1] + [torch.randn(1, 3, 48, 48)], 0.5, 4) is None


def test_an_onnx_export_scores_as_its_checkpoint_does(checkpoint, tmp_path, capsys):
    """--export runs the same metrics on ONNX Runtime: the masks agree, so the scores do (to float noise)."""
    pytest.importorskip("onnxruntime")
    from dovit.deploy.onnx_graphs import ExportConfig, export_onnx

    export = export_onnx(ExportConfig(str(checkpoint), str(tmp_path / "export")), progress=False).output
    root = fake_camvid(tmp_path / "camvid")
    scores = {}
    for name, flags in (("pytorch", ["--checkpoint", str(checkpoint)]), ("ort", ["--export", str(export)])):
        out = tmp_path / f"{name}.json"
        assert evaluate.main([*flags, "--data-root", str(root), "--xi", "0.5", "--threads", "1",
                              "--json", str(out)]) == 0
        scores[name] = json.loads(out.read_text())
    assert "ONNX Runtime" in scores["ort"]["checkpoint"]
    (want,), (got,) = scores["pytorch"]["results"], scores["ort"]["results"]
    assert got["miou"] == pytest.approx(want["miou"], abs=1e-3) and got["gflops"] == want["gflops"]
    assert evaluate.main(["--export", str(tmp_path / "nowhere"), "--data-root", str(root)]) == 2
    assert "not a folder" in capsys.readouterr().err
