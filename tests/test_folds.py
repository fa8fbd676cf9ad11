"""python -m dovit.folds: every drive held out once, never trained on, scored with the final weights."""
import json

from conftest import write_drives

from dovit import folds
from dovit.core.checkpoint import read_config

TINY = ("--input-size 48 64 --stem patch --decoder-channels 32 --batch-size 2 --warmup-steps 1 --drop-path 0 "
        "--scale-range 0.75 1.25 --workers 0 --threads 1 --no-progress --save-every 1000")


def test_leave_one_drive_out_trains_without_the_held_out_drive_and_writes_the_table(tmp_path):
    data = tmp_path / "data"
    write_drives(data, {"0001TP": 2, "0006R0": 3, "0016E5": 4})
    argv = ["--output", str(tmp_path / "runs"), "--data-root", str(data), "--split", "train",
            "--teacher-args", "--steps 2 --lr 1e-3", "--student-args",
            "--steps 1 --xi 0.9 --xi-range 0.8 1.0",
            "--common-args", TINY, "--teacher-xi", "0", "1", "--student-xi", "0.8", "0.9", "1",
            "--device", "cpu", "--json", str(tmp_path / "folds.json"), "--markdown",
            str(tmp_path / "folds.md")]
    assert folds.main(argv) == 0
    report = json.loads((tmp_path / "folds.json").read_text())
    assert [f["held_out"] for f in report["folds"]] == ["0001TP", "0006R0", "0016E5"]
    for fold, (train_frames, test_frames) in zip(report["folds"], [(7, 2), (6, 3), (5, 4)], strict=False):
        assert (fold["train_images"], fold["test_images"]) == (train_frames, test_frames)
        assert set(fold["teacher"]) == {"0", "1"} and set(fold["student"]) == {"0.8", "0.9", "1"}
        assert all(r["images"] == test_frames for r in fold["student"].values())
        for name, steps in (("teacher", 2), ("student", 1)):
            start = next(json.loads(line) for line in
                         (tmp_path / "runs" / fold["held_out"] / name / "log.jsonl").read_text().splitlines()
                         if '"start"' in line)
            # never trained on the drive it is scored on
            assert fold["held_out"] not in start["train_sequences"]
            assert read_config(tmp_path / "runs" / fold["held_out"] / name / "last")[1]["step"] == steps
        # ξ = 0 stops every token after the first decision: fewer FLOPs than ξ = 1.
        assert fold["teacher"]["0"]["gflops"] < fold["teacher"]["1"]["gflops"]
    table = (tmp_path / "folds.md").read_text()
    assert "| **mean** |" in table and "teacher ξ=1" in table and "student ξ=0.9" in table
    assert "Pole" in table  # the thin classes get their own table

    # A second call reuses the finished runs instead of training again.
    before = (tmp_path / "runs" / "0001TP" / "teacher" / "log.jsonl").read_text()
    assert folds.main(argv[:-4] + ["--drives", "0001TP", "--json", "", "--markdown", ""]) == 0
    assert (tmp_path / "runs" / "0001TP" / "teacher" / "log.jsonl").read_text() == before


def test_unknown_drive_is_refused(tmp_path, capsys):
    write_drives(tmp_path, {"0001TP": 1, "0006R0": 1})
    assert folds.main(["--data-root", str(tmp_path), "--split", "train", "--drives", "0005VD"]) == 2
    assert "0005VD" in capsys.readouterr().err


def test_help_documents_every_flag(monkeypatch):
    from test_train import assert_help_documents_every_flag

    assert_help_documents_every_flag(folds, [], monkeypatch)
