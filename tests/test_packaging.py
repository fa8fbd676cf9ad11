"""pyproject.toml: `pip install .` (offline, into a throw-away venv) installs dovit, dovit.data and app with
the dovit-studio / dovit-train / dovit-evaluate commands, and the installed copy, having no checkpoints/
beside it, says how to pass one."""
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("dovit-studio", "dovit-train", "dovit-evaluate", "dovit-convert", "dovit-analyze", "dovit-compare",
           "dovit-robustness", "dovit-familiarity", "dovit-calibrate", "dovit-export")


def test_pyproject_declares_the_packages_and_commands():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = sorted(".".join(init.parent.relative_to(ROOT).parts) for folder in ("dovit", "app")
                   for init in (ROOT / folder).rglob("__init__.py"))
    assert sorted(project["tool"]["setuptools"]["packages"]) == found  # a new subpackage must be declared
    assert "dovit.core" in found
    assert project["project"]["scripts"] == {
        "dovit-studio": "app.cli:main", "dovit-train": "dovit.train:main",
        "dovit-evaluate": "dovit.evaluate:main",
        "dovit-convert": "dovit.convert:main", "dovit-analyze": "dovit.analyze:main",
        "dovit-compare": "dovit.compare:main", "dovit-robustness": "dovit.robustness:main",
        "dovit-familiarity": "dovit.familiarity:main", "dovit-calibrate": "dovit.calibrate:main",
        "dovit-export": "dovit.export:main",
    }
    # Every package directory in the checkout is listed (a new subpackage must not be left out of installs).
    found = sorted(str(init.parent.relative_to(ROOT)).replace(os.sep, ".")
                   for top in ("dovit", "app") for init in (ROOT / top).rglob("__init__.py"))
    assert found == sorted(project["tool"]["setuptools"]["packages"])


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv (seeing this interpreter's packages: no download) with a `pip install .` of a copy of the
    sources, so that nothing is built inside the checkout."""
    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("dovit", "app"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    env = base / "venv"
    venv.create(env, system_site_packages=False, with_pip=False)
    python = env / "bin" / "python"
    # The throw-away venv sees the packages of the interpreter running the tests (pip, setuptools, torch...),
    # wherever that is: a venv's own site-packages, or the base install's. (system_site_packages would give it
    # the *base* interpreter's, which inside a venv are not the ones the suite runs with.)
    inner = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    Path(inner, "outer.pth").write_text("\n".join(p for p in sys.path if p.endswith("-packages")) + "\n")
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", str(source)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return env


def _run(env: Path, *command: str) -> subprocess.CompletedProcess:
    # Run outside the checkout, so that `import dovit` can only find the installed copy.
    return subprocess.run(list(command), cwd=env, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ""})


INSTALLED_CHECK = """
import dovit, dovit.data, dovit.core.preprocess, app.cli
print(dovit.__file__)
try:
    dovit.Predictor.from_checkpoint()
except dovit.CheckpointError as error:
    print(error)
"""


def test_pip_install_puts_the_packages_and_commands_in_place(installed):
    for script in SCRIPTS:
        assert (installed / "bin" / script).exists(), f"{script} not installed"
    studio = _run(installed, str(installed / "bin" / "dovit-studio"), "--help")
    assert (studio.returncode == 0 and studio.stdout.startswith("usage: dovit-studio")
            and "--checkpoint" in studio.stdout)
    # One interpreter for the rest (importing torch dominates the time): the packages import from the venv,
    # and that copy, with no checkpoints/ beside it, names the way to pass one.
    result = _run(installed, str(installed / "bin" / "python"), "-c", INSTALLED_CHECK)
    assert result.returncode == 0, result.stderr
    location, message = result.stdout.splitlines()[:2]
    assert Path(location).is_relative_to(installed)
    assert "--checkpoint PATH" in message and "pip install -e ." in message
    # The page's CSS and head scripts are files the app loads: they are installed with it.
    static = _run(installed, str(installed / "bin" / "python"), "-c",
                  "import app, pathlib; print(sorted(p.name for p in (pathlib.Path(app.__file__).parent / "
                  "'static').iterdir()))")
    assert static.stdout.strip() == "['head.html', 'studio.css']", static.stderr
