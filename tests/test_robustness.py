"""python -m dovit.robustness: the table and JSON from the command line, --help, refusals."""
import json

from test_evaluate import fake_camvid
from test_shifts import checkpoint  # noqa: F401 (fixtures and helpers)
from test_train import assert_help_documents_every_flag

from dovit import robustness


def test_help_documents_every_flag(monkeypatch):
    assert_help_documents_every_flag(robustness, [], monkeypatch)


def test_cli_prints_tables_and_writes_json(checkpoint, tmp_path, capsys):
    root = fake_camvid(tmp_path / "camvid")
    out = tmp_path / "r.json"
    code = robustness.main(["--checkpoint", str(checkpoint), "--data-root", str(root), "--max-images", "2",
                            "--shifts", "fog", "white_balance", "--severities", "2", "--xi", "0.5", "1",
                            "--frame-step", "1",
                            "--json", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "camvid val, 2 frames, 2 shifted conditions" in printed and "| fog | weather |" in printed
    data = json.loads(out.read_text())
    assert data["frames"] == 2 and [r["xi"] for r in data["results"]] == [0.5, 1.0]
    assert set(data["results"][0]["shift_means"]) == {"fog", "white_balance"}


def test_cli_refuses_with_one_line(checkpoint, tmp_path, capsys):
    assert robustness.main(["--checkpoint", str(tmp_path / "missing"), "--no-progress"]) == 2
    assert robustness.main(["--checkpoint", str(checkpoint), "--data-root", str(tmp_path / "none"),
                            "--no-progress"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("error: ") for line in errors)
