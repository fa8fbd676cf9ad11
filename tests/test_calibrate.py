"""python -m dovit.calibrate: --help documents every flag; the CLI prints the curve and refuses in one
line."""
from test_calibration import dense, images  # noqa: F401 (fixtures and helpers)
from test_train import assert_help_documents_every_flag

from dovit import calibrate


def test_help_documents_every_flag(monkeypatch, dense, images, tmp_path):
    assert_help_documents_every_flag(calibrate, [str(dense), str(tmp_path / "o"), "--images", str(images)],
                                     monkeypatch)


def test_cli_prints_the_curve_and_refuses_in_one_line(dense, images, tmp_path, capsys):
    assert calibrate.main([str(dense), str(tmp_path / "out"), "--images", str(images), "--minutes", "0.02",
                           "--no-progress", "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "| ξ | agreement with dense | FLOPs saved |" in printed and "← default" in printed
    assert calibrate.main([str(dense), str(tmp_path / "out2"), "--images", str(tmp_path / "none"),
                           "--no-progress"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [f"error: --images: {tmp_path / 'none'} is not a folder"]
