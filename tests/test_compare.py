"""python -m dovit.compare: the table, JSON and chart from the command line, --help, refusals."""
import json

import pytest
from test_policy_scores import checkpoint, data_root  # noqa: F401 (fixtures and helpers)
from test_train import assert_help_documents_every_flag

from dovit import compare
from dovit.core.policies import POLICIES


def test_help_documents_every_flag(monkeypatch):
    assert_help_documents_every_flag(compare, [], monkeypatch)


def test_cli_writes_json_table_and_chart(checkpoint, data_root, tmp_path, capsys):
    out = tmp_path / "out"
    code = compare.main(["--checkpoint", str(checkpoint), "--data-root", str(data_root), "--budgets", "0.6",
                         "1.0",
                         "--json", str(out / "r.json"), "--md", str(out / "r.md"), "--html",
                         str(out / "r.html")])
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
