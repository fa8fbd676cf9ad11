"""The command-line modules' JSON on the drawn street stays what it was (issue 22's safety net for the CLIs).

``tests/data/reference_cli.json`` was written by ``scripts/reference_cli.py`` from the code at the start of
the consolidation (commit db4dcfa) and equalled, number for number, what the consolidated code writes.
Tolerances cover another machine's float rounding, not a changed algorithm.
"""
import json
from pathlib import Path

import pytest

from scripts.reference_cli import reference_cli

REFERENCE = Path(__file__).parent / "data" / "reference_cli.json"


def assert_close(now, then, path=""):
    if isinstance(then, dict):
        assert now.keys() == then.keys(), path
        for key in then:
            assert_close(now[key], then[key], f"{path}.{key}")
    elif isinstance(then, list):
        assert len(now) == len(then), path
        for index, (a, b) in enumerate(zip(now, then, strict=False)):
            assert_close(a, b, f"{path}[{index}]")
    elif isinstance(then, float):
        assert now == pytest.approx(then, rel=0.01, abs=0.005), path
    else:
        assert now == then, path


def test_evaluate_analyze_and_compare_write_what_they_wrote():
    assert_close(reference_cli(), json.loads(REFERENCE.read_text()))
