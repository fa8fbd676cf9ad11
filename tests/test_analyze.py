"""python -m dovit.analyze: the report written from a folder, --help, refusals."""
import json

import cv2
import numpy as np
import pytest
from test_analysis import _without_timing  # noqa: F401 (fixtures and helpers)
from test_evaluate import INPUT_SIZE, checkpoint, fake_camvid  # noqa: F401 (checkpoint: the tiny model fixture)
from test_train import assert_help_documents_every_flag
from test_video import synthetic_video

from dovit import analyze, evaluate
from dovit.data.synthetic import synthetic_dataset


# ------------------------------------------------------------------ the CLI
def test_help_documents_every_flag(monkeypatch):
    assert_help_documents_every_flag(analyze, ["--input", "x", "--out", "y"], monkeypatch)


def test_cli_camvid_layout_writes_a_self_contained_report(checkpoint, tmp_path, capsys):
    root = fake_camvid(tmp_path / "camvid", count=3)
    out = tmp_path / "report"
    assert analyze.main(["--input", str(root / "val"), "--labels", str(root / "valannot"), "--dataset",
                         "camvid",
                         "--checkpoint", str(checkpoint), "--xi-grid", "0", "0.5", "--out", str(out),
                         "--no-progress", "--threads", "1"]) == 0
    assert "3 images" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["images"] == 3 and report["class_source"] == "labels" and report["dataset"] == "camvid"
    assert [r["xi"] for r in report["tradeoff"]] == [0.0, 0.5, 1.0]
    assert len(report["calibration"]) == 3 and len(report["stopped_tokens"]) == 4
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "Plotly.newPlot" in page
    assert "<script src=\"http" not in page  # plotly.js inlined: opens without a network
    assert (out / "frames.csv").read_text().count("\n") == 1 + 3


def test_cli_camvid_void_is_ignored_like_evaluate(checkpoint, tmp_path):
    """CamVid's void id 11 maps to the ignore index: the report's mIoU equals evaluate's on the same
    folder. Frames at the checkpoint's aspect, as CamVid's are: evaluate squeezes every image to the input
    size, the report keeps each image's aspect."""
    root = fake_camvid(tmp_path / "camvid", count=2, size=(2 * INPUT_SIZE[0], 2 * INPUT_SIZE[1]))
    assert analyze.main(["--input", str(root / "val"), "--dataset", "camvid", "--checkpoint", str(checkpoint),
                         "--xi-grid", "0.5", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert evaluate.main(["--checkpoint", str(checkpoint), "--data-root", str(root), "--xi", "0.5", "1",
                          "--json", str(tmp_path / "e.json")]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())["tradeoff"]
    reference = json.loads((tmp_path / "e.json").read_text())["results"]
    for row, expected in zip(report, reference, strict=False):
        assert (row["miou"] == pytest.approx(expected["miou"]) and row["gflops"]
                == pytest.approx(expected["gflops"]))


def test_cli_plain_label_folder(checkpoint, tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir(), labels.mkdir()
    dataset = synthetic_dataset(3, (40, 56), seed=1)
    for index in range(3):
        image, label = dataset.load(index)
        label[:5] = 255  # void rows
        cv2.imwrite(str(images / f"a{index}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(labels / f"a{index}.png"), label.astype(np.uint8))
    cv2.imwrite(str(images / "unlabelled.png"), image)
    assert analyze.main(["--input", str(images), "--labels", str(labels), "--checkpoint", str(checkpoint),
                         "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["images"] == 3 and "calibration" in report
    assert sorted(r["name"] for r in report["per_image"]) == ["a0", "a1", "a2"]


def test_cli_video_without_labels(checkpoint, tmp_path):
    source = synthetic_video(tmp_path / "clip.mp4", count=5, size=(40, 56))
    assert analyze.main(["--input", str(source), "--checkpoint", str(checkpoint), "--max-images", "4",
                         "--xi", "0.5", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["images"] == 4 and report["class_source"] == "predictions"
    assert "calibration" not in report and "miou" not in report["tradeoff"][0]
    assert [r["name"] for r in report["per_image"]] == [f"frame_{i:06d}" for i in range(4)]


@pytest.mark.parametrize("argv, message", [
    (["--input", "{tmp}/nowhere"], "no video or image folder"),
    (["--input", "{tmp}/camvid/val", "--dataset", "camvid", "--labels", "{tmp}/camvid/val"],
     "reads labels from its layout"),
    (["--input", "{tmp}/camvid/val", "--xi", "1.5"], "xi must be a number in [0, 1]"),
])
def test_cli_errors_exit_2_with_one_line(checkpoint, tmp_path, capsys, argv, message):
    fake_camvid(tmp_path / "camvid", count=1)
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert analyze.main(argv + ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "r"),
                                "--no-progress"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("error: ") and message in error[-1]


def test_torchrun_two_processes_write_the_single_process_report(checkpoint, tmp_path):
    import subprocess
    import sys

    from test_train import ROOT, run_env

    root = fake_camvid(tmp_path / "camvid", count=3)
    common = ["--input", str(root / "val"), "--dataset", "camvid", "--checkpoint", str(checkpoint),
              "--xi-grid", "0", "--no-progress", "--threads", "1"]
    assert analyze.main(common + ["--out", str(tmp_path / "one")]) == 0
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--standalone", "-m", "dovit.analyze", *common, "--out", str(tmp_path / "two")],
                            cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    one, two = (json.loads((tmp_path / name / "report.json").read_text()) for name in ("one", "two"))
    assert two["processes"] == 2 and one["processes"] == 1
    one.pop("processes"), two.pop("processes")
    assert _without_timing(two)["tradeoff"] == _without_timing(one)["tradeoff"]
    assert [r["name"] for r in two["per_image"]] == ["f0", "f1", "f2"]
    assert two["stopped_tokens"] == one["stopped_tokens"] and two["halting_depth_per_class"] == one[
        "halting_depth_per_class"]
