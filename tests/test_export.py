"""python -m dovit.export: flags, output, one-line refusals."""
import pytest

import dovit
from dovit import export

pytest.importorskip("onnxruntime")


def test_cli_exports_and_reports_each_graphs_error(tiny_model, tmp_path, capsys):
    checkpoint = dovit.save_checkpoint(tiny_model, tmp_path / "checkpoint")
    assert export.main([str(checkpoint), str(tmp_path / "out"), "--size", "48", "64"]) == 0
    printed = capsys.readouterr().out
    assert ("8 graphs of any working size, checked at 48x64 (token grid 3x4)" in printed
            and "group_4.onnx: onnxruntime vs PyTorch" in printed)
    predictor = dovit.OrtPredictor.from_export(tmp_path / "out")
    assert predictor.model.export_size == (48, 64)


def test_cli_refuses_in_one_line(tmp_path, capsys):
    assert export.main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: cannot load") and error.count("\n") == 1


def test_help_explains_the_graphs(capsys):
    with pytest.raises(SystemExit):
        export.main(["--help"])
    text = capsys.readouterr().out
    assert "dynamic token axis" in text and "--size" in text and "--opset" in text
