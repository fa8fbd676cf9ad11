"""--resume: says what it resumes from, refuses clearly (exit code 2) when it cannot, and a training killed
at random moments always resumes or refuses, never leaving an unloadable last/ or train_state.pt."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dovit
from dovit import train
from dovit.training import trainer

ROOT = Path(__file__).resolve().parents[1]

# The smallest timm ViT (test_vit: 6 blocks, width 64, 0.3 M parameters) on 32 x 32 synthetic images.
SMALL = ["--stage", "dense", "--dataset", "synthetic", "--backbone", "test_vit", "--input-size", "32", "32",
         "--stem", "patch", "--decoder-channels", "8", "--batch-size", "2", "--warmup-steps", "2",
         "--drop-path", "0",
         "--eval-every", "0", "--max-val-images", "2", "--workers", "0", "--threads", "1", "--no-progress"]


def events(output: Path) -> list[dict]:
    return [r for r in map(json.loads, (output / "log.jsonl").read_text().splitlines()) if "event" in r]


def test_resume_without_a_saved_state_refuses_with_exit_code_2(tmp_path, capsys):
    """A run killed before its first save used to be 'resumed' silently from step 0."""
    with pytest.raises(SystemExit) as exit_info:
        train.main([*SMALL, "--output", str(tmp_path), "--steps", "2", "--resume"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --resume:") and "\n" not in error
    assert str(tmp_path / trainer.STATE_NAME) in error and "--allow-fresh" in error
    assert not (tmp_path / "last").exists()


def test_allow_fresh_starts_from_step_0_and_says_so(tmp_path, capsys):
    assert train.main([*SMALL, "--output", str(tmp_path), "--steps", "2", "--resume", "--allow-fresh"]) == 0
    assert "starting from step 0 (--allow-fresh)" in capsys.readouterr().out
    assert [e["event"] for e in events(tmp_path)] == ["fresh_start", "start", "val", "done"]
    assert dovit.read_config(tmp_path / "last")[1]["step"] == 2


def test_resume_says_what_it_resumes_from(tmp_path, capsys):
    assert train.main([*SMALL, "--output", str(tmp_path), "--steps", "2"]) == 0
    capsys.readouterr()
    assert train.main([*SMALL, "--output", str(tmp_path), "--steps", "3", "--resume"]) == 0
    assert f"continuing from {tmp_path / trainer.STATE_NAME} at step 2 of 3" in capsys.readouterr().out
    assert [e["event"] for e in events(tmp_path)][-4:] == ["resume", "start", "val", "done"]


@pytest.mark.parametrize("damage", ["truncated", "other_flags"])
def test_an_unusable_state_is_refused_not_ignored(damage, tmp_path, capsys):
    assert train.main([*SMALL, "--output", str(tmp_path), "--steps", "1"]) == 0
    argv = [*SMALL, "--output", str(tmp_path), "--steps", "2", "--resume", "--allow-fresh"]
    if damage == "truncated":
        state = tmp_path / trainer.STATE_NAME
        state.write_bytes(state.read_bytes()[:2000])
    else:
        argv += ["--decoder-channels", "16"]  # the saved state holds an 8-channel decoder
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --resume: cannot resume from "
                            f"{tmp_path / trainer.STATE_NAME}") and "\n" not in error


def test_saving_state_is_atomic_and_fsynced(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}"))
                        or real_fsync(fd))
    assert train.main([*SMALL, "--output", str(tmp_path), "--steps", "1"]) == 0
    assert str(tmp_path / (trainer.STATE_NAME + ".tmp")) in synced and str(tmp_path) in synced
    assert not (tmp_path / (trainer.STATE_NAME + ".tmp")).exists()


# The driver forks children that train with --save-every 1 (so that most of their time is spent saving) and
# SIGKILLs each at a random moment; after every kill, what is on disk must load, and the next child must
# either resume from the saved step or, when nothing was saved yet, refuse with exit code 2. A child run
# with --allow-fresh follows a refusal (and only then may a run start from step 0). A fork per child keeps 20
# kills within seconds (no re-import).
KILL_DRIVER = r"""
import contextlib, json, math, os, random, signal, sys, time, warnings
import torch
torch.set_num_threads(1)
import dovit
from dovit import train
from dovit.training import trainer
warnings.simplefilter("ignore")

output, kills_wanted, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rng = random.Random(1)
report = {"kills": 0, "resumed": 0, "refused": 0, "fresh": 0, "mid_save": 0, "resumed_steps": []}


def run_child(extra):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            with open(os.path.join(output + ".child.txt"), "w") as sink, contextlib.redirect_stdout(sink), \
                    contextlib.redirect_stderr(sink):
                try:
                    code = train.main([*argv, "--output", output, *extra])
                except SystemExit as error:
                    code = error.code
        finally:
            os._exit(code if isinstance(code, int) else 1)
    return pid


def check_disk():
    state_path = os.path.join(output, trainer.STATE_NAME)
    step = None
    if os.path.exists(state_path):
        step = torch.load(state_path, map_location="cpu", weights_only=True)["step"]
    last = os.path.join(output, "last")
    if os.path.exists(last) or os.path.exists(os.path.join(output, ".last.previous")):
        dovit.load_checkpoint(last)  # raises if a kill left last/ unloadable
    elif step is not None:
        raise AssertionError("a train state exists but last/ does not")
    return step


allow_fresh, setup_seconds = False, None
while report["kills"] < kills_wanted:
    saved_step = check_disk()
    started = time.monotonic()
    pid = run_child(["--resume"] + (["--allow-fresh"] if allow_fresh else []))
    # Nothing saved and no --allow-fresh: the child must refuse, so let it finish. Its run time (setup, up
    # to the refusal) then scales the kill times, so that kills fall in setup, steps and saves alike,
    # however loaded the machine is.
    must_refuse, used_allow_fresh = saved_step is None and not allow_fresh, allow_fresh
    deadline = math.inf if must_refuse else started + rng.uniform(0.7, 3.0) * setup_seconds
    code = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.005)
    if code is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        report["kills"] += 1
        leftovers = [".last.partial", ".last.previous", trainer.STATE_NAME + ".tmp"]
        report["mid_save"] += any(os.path.exists(os.path.join(output, name)) for name in leftovers)
    text = open(output + ".child.txt").read()
    if code == 2:
        setup_seconds = setup_seconds or time.monotonic() - started
        assert saved_step is None and "error: --resume:" in text and "--allow-fresh" in text, text
        report["refused"] += 1
    elif code is not None:
        raise AssertionError(f"child ended with {code}: {text[-2000:]}")
    if "continuing from" in text:
        report["resumed"] += 1
        report["resumed_steps"].append(saved_step)
        assert f"at step {saved_step} of" in text, (saved_step, text)
    if "starting from step 0" in text:
        # a fresh start only when asked and nothing was saved
        assert used_allow_fresh and saved_step is None, text
        report["fresh"] += 1
    allow_fresh = code == 2

saved_step = check_disk()
# ends by itself
last_child = ["--resume", "--max-minutes", "0.02"] + (["--allow-fresh"] if allow_fresh else [])
final = os.waitstatus_to_exitcode(os.waitpid(run_child(last_child), 0)[1])
assert final == 0, open(output + ".child.txt").read()[-2000:]
report["final_step"] = dovit.read_config(os.path.join(output, "last"))[1]["step"]
print(json.dumps(report))
"""


def test_a_training_killed_at_20_random_moments_always_resumes_or_refuses(tmp_path):
    steps = 10_000  # never reached: children are killed, and the driver's last one stops after --max-minutes
    argv = [*SMALL, "--steps", str(steps), "--save-every", "1", "--seed", "0"]
    output = tmp_path / "run"
    result = subprocess.run([sys.executable, "-c", KILL_DRIVER, str(output), "20", *argv], cwd=ROOT,
                            timeout=300,
                            capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1",
                                                                      PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(report)
    assert report["kills"] == 20
    assert report["refused"] >= 1 and report["resumed"] >= 1  # both paths were taken
    assert report["mid_save"] >= 3  # kills did land inside saves
    assert report["resumed_steps"] == sorted(report["resumed_steps"])  # progress is never lost
    assert report["final_step"] >= max(report["resumed_steps"])
