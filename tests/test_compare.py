"""python -m dovit.compare: runs on a tiny checkpoint and a CamVid-layout folder, writes valid JSON, fails clearly."""
import json
from pathlib import Path

import pytest
import torch

import dovit
from dovit import compare, policy_compare
from dovit.report.analysis import Frame
from dovit.data.synthetic import synthetic_dataset
from dovit.policies import POLICIES
from test_evaluate import fake_camvid
from test_train import assert_help_documents_every_flag


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random-init ViT-Tiny checkpoint with CamVid's 11 classes on a 4 x 6 token grid."""
    torch.manual_seed(0)
    model = dovit.build_model("vit_tiny_patch16_224", num_classes=11, input_size=(64, 96), decoder_channels=16)
    return dovit.save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return fake_camvid(tmp_path_factory.mktemp("camvid") / "camvid", count=2)


def test_help_documents_every_flag(monkeypatch):
    assert_help_documents_every_flag(compare, [], monkeypatch)


def test_cli_writes_json_table_and_chart(checkpoint, data_root, tmp_path, capsys):
    out = tmp_path / "out"
    code = compare.main(["--checkpoint", str(checkpoint), "--data-root", str(data_root), "--budgets", "0.6", "1.0",
                         "--json", str(out / "r.json"), "--md", str(out / "r.md"), "--html", str(out / "r.html")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| 0.6 | confidence |" in printed and "| 1 | dense |" in printed
    report = json.loads((out / "r.json").read_text())
    assert report["images"] == 2 and report["budgets"] == [0.6, 1.0] and report["policies"] == list(POLICIES)
    rows = report["results"]
    assert [(r["policy"], r["budget"]) for r in rows] == [(p, b) for p in POLICIES for b in (0.6, 1.0)]
    dense = report["dense"]
    for row in rows:
        assert row["images"] == 2 and 0.0 <= row["miou"] <= 1.0 and row["latency_ms"] > 0
        assert row["budget_gflops"] == pytest.approx(row["budget"] * dense["gflops"])
        if row["budget"] == 1.0:  # every policy is the dense model at the full budget
            assert row["agreement"] == 1.0 and row["miou"] == dense["miou"] and row["gflops_ratio"] == 1.0
    assert "mIoU" in (out / "r.md").read_text() and "plotly" in (out / "r.html").read_text()[:5000].lower()
    assert report["budget_definition"].startswith("budget = a fraction of the dense")


@pytest.mark.parametrize("change, message", [
    (["--data-root", "/nonexistent/camvid"], "no image/label pairs"),
    (["--checkpoint", "/nonexistent/ckpt"], "checkpoint not found"),
    (["--budgets", "0"], "(0, 1]"),
])
def test_clear_one_line_errors(checkpoint, data_root, capsys, change, message):
    argv = ["--checkpoint", str(checkpoint), "--data-root", str(data_root)] + change
    assert compare.main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1


@pytest.mark.parametrize("match", ["set", "image"])
def test_every_policy_but_shallow_meets_the_budget_on_the_set(match):
    from test_policies import INPUT_SIZE  # an 8 x 12 grid: one token is < 1 % of the FLOPs

    torch.manual_seed(0)
    predictor = dovit.Predictor(dovit.build_model("vit_tiny_patch16_224", num_classes=5, input_size=INPUT_SIZE,
                                                  decoder_channels=16))
    dataset = synthetic_dataset(2, (120, 200), seed=7)
    frames = [Frame(f"s{i}", *dataset.load(i), i) for i in range(len(dataset))]
    dense, rows = policy_compare.compare_policies(predictor, frames, [0.55], match=match, progress=False)
    assert [row.policy for row in rows] == list(POLICIES) and dense.images == 2
    for row in rows:
        assert row.images == 2 and (row.within_budget or row.policy == "shallow"), (row.policy, row.gflops_ratio)
        if match == "image" and row.policy != "shallow":  # every image at the budget, not only the mean
            assert abs(row.image_ratio_min - 1) <= 0.02 and abs(row.image_ratio_max - 1) <= 0.02
    random, confidence = rows[POLICIES.index("random")], rows[POLICIES.index("confidence")]
    assert random.gflops == confidence.gflops and random.parameter_median == confidence.parameter_median
