"""dovit.cli: ``python -m dovit`` lists every command from the one table, and runs one by name."""
import subprocess
import sys
from pathlib import Path

from dovit import cli

DOVIT = Path(__file__).resolve().parents[1] / "dovit"


def test_the_table_names_every_top_level_module_and_nothing_else():
    modules = {path.stem for path in DOVIT.glob("*.py")} - {"__init__", "__main__"}
    assert set(cli.COMMANDS) == modules


def test_python_m_dovit_lists_every_command_with_one_line():
    listing = subprocess.run([sys.executable, "-m", "dovit"], capture_output=True, text=True, check=True,
                             cwd=DOVIT.parent).stdout
    lines = [line.split() for line in listing.splitlines() if line.startswith("  ")]
    assert [words[0] for words in lines] == list(cli.COMMANDS)


def test_a_command_runs_by_name_and_an_unknown_one_is_refused(capsys):
    assert cli.main(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err
    try:
        cli.main(["evaluate", "--help"])
    except SystemExit as stop:
        assert stop.code == 0
    assert "--data-root" in capsys.readouterr().out
