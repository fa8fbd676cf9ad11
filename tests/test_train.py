"""python -m dovit.train: CLI, dense and DoViT stages on synthetic data, resume, the loss, DDP with 2
ranks."""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import write_drives
from safetensors.torch import load_file

import dovit
from dovit import train
from dovit.data import IGNORE_INDEX, EvalTransform
from dovit.data.synthetic import synthetic_dataset
from dovit.training import trainer

ROOT = Path(__file__).resolve().parents[1]
DENSE_STEPS = 60

# A tiny, fast configuration: ViT-Tiny on 48 x 64 inputs (a 3 x 4 token grid), 3 synthetic classes.
TINY = ["--dataset", "synthetic", "--input-size", "48", "64", "--stem", "patch", "--decoder-channels", "32",
        "--batch-size", "4", "--lr", "1e-3", "--warmup-steps", "10", "--drop-path", "0",
        "--scale-range", "0.75", "1.25", "--eval-every", "0", "--save-every", "1000", "--max-val-images", "4",
        "--workers", "0", "--threads", "1", "--no-progress", "--seed", "0"]


def run_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    return env


def read_log(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]


def step_records(records: list[dict]) -> list[dict]:
    return [r for r in records if "event" not in r]


def loss_has_fallen(records: list[dict], factor: float) -> bool:
    """Mean of the last two logged losses below ``factor`` x the mean of the first two."""
    losses = [r["loss"] for r in step_records(records)]
    return sum(losses[-2:]) / 2 < factor * sum(losses[:2]) / 2


@torch.no_grad()
def held_out_ce(checkpoint: Path, trained: bool = True) -> float:
    """Decoder CE on the run's synthetic validation images, of the checkpoint or (trained=False) of a
    fresh random model of the same configuration: a low-noise check that training learned something."""
    model = dovit.load_checkpoint(checkpoint)
    if not trained:
        torch.manual_seed(0)
        model = dovit.DoViTSegmenter(model.config).eval()
    data = synthetic_dataset(8, model.config.input_size, seed=1,
                             transform=EvalTransform(model.config.input_size, model.config.mean,
                                                     model.config.std))
    pixels, labels = (torch.stack(items) for items in zip(*(data[i] for i in range(len(data))), strict=False))
    return F.cross_entropy(model(pixels).logits, labels, ignore_index=IGNORE_INDEX).item()


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("dense")
    assert train.main(["--stage", "dense", "--output", str(output), "--steps", str(DENSE_STEPS), *TINY]) == 0
    return output


# ------------------------------------------------------------------------------ CLI
def assert_help_documents_every_flag(module, minimal_argv: list[str], monkeypatch) -> None:
    """``python -m <module> --help`` exits 0, and every flag of the parser that ``module.parse_args``
    builds has help text and appears in that output."""
    result = subprocess.run([sys.executable, "-m", module.__name__, "--help"], cwd=ROOT, env=run_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"usage: python -m {module.__name__}" in result.stdout
    # Catch the parser that parse_args builds, to list its flags without re-declaring them here.
    parsers = []
    original = argparse.ArgumentParser.parse_args
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args",
                        lambda self, *a, **k: parsers.append(self) or original(self, *a, **k))
    module.parse_args(minimal_argv)
    flags = [a for a in parsers[0]._actions if a.option_strings and a.dest != "help"]
    assert flags
    for action in flags:
        assert action.help and action.help.strip(), f"{action.option_strings} has no help text"
        for option in action.option_strings:
            assert option in result.stdout, f"{option} missing from --help"


def test_help_documents_every_flag(monkeypatch):
    assert_help_documents_every_flag(train, ["--stage", "dense", "--output", "unused"], monkeypatch)


def test_xi_outside_unit_interval_is_rejected(tmp_path, capsys):
    assert train.main(["--stage", "dovit", "--output", str(tmp_path), "--xi", "1.5", *TINY]) == 2
    assert "--xi must be a number in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "log.jsonl").exists()


# ------------------------------------------------------------------------------ dense stage
def test_dense_run_lowers_the_loss(dense_run):
    records = read_log(dense_run)
    steps = step_records(records)
    assert [r["step"] for r in steps] == list(range(10, DENSE_STEPS + 1, 10))
    assert loss_has_fallen(records, 0.9), [r["loss"] for r in steps]  # seeds 0-5 all drop by 25-35 %
    assert held_out_ce(dense_run / "last") < 0.8 * held_out_ce(dense_run / "last", trained=False)
    for r in steps:  # dense stage: CE on decoder and aux heads, no distillation, nothing stops
        assert r["sd"] == 0.0 and r["kept_last_group"] == 1.0
        assert r["loss"] == pytest.approx(r["ce"] + 1.0 * r["aux"], rel=1e-5)
    events = [r["event"] for r in records if "event" in r]
    assert events == ["start", "val", "done"]


def test_dense_run_writes_loadable_last_and_best_checkpoints(dense_run):
    validation = next(r for r in read_log(dense_run) if r.get("event") == "val")
    for name in ("last", "best"):
        model = dovit.load_checkpoint(dense_run / name)
        assert model.config.num_classes == 3 and model.config.input_size == (48, 64)
        assert model.checkpoint_metadata["stage"] == "dense"
        assert model.checkpoint_metadata["step"] == DENSE_STEPS
        output = model(torch.zeros(1, 3, 48, 64))
        assert output.logits.shape == (1, 3, 48, 64)
    best = dovit.read_config(dense_run / "best")[1]
    assert best["val"]["miou"] == pytest.approx(validation["miou"])
    # Only one validation ran (at the end), so best and last hold the same weights.
    last_weights, best_weights = (
        load_file(dense_run / "last" / "model.safetensors"),
        load_file(dense_run / "best" / "model.safetensors"),
    )
    assert all(torch.equal(last_weights[k], best_weights[k]) for k in last_weights)
    state = torch.load(dense_run / trainer.STATE_NAME, map_location="cpu", weights_only=True)
    assert state["step"] == DENSE_STEPS


# ------------------------------------------------------------------------------ dovit stage, resume
def test_dovit_stage_distils_and_stops_tokens(dense_run, tmp_path):
    teacher = str(dense_run / "last")
    xi = 0.6
    assert train.main(["--stage", "dovit", "--output", str(tmp_path), "--init", teacher, "--teacher", teacher,
                       "--xi", str(xi), "--steps", "20", *TINY]) == 0
    steps = step_records(read_log(tmp_path))
    assert [r["step"] for r in steps] == [10, 20]
    for r in steps:
        assert r["sd"] > 0 and r["aux"] > 0
        assert r["kept_last_group"] < 1.0
        assert r["loss"] == pytest.approx(r["ce"] + 1.0 * r["aux"] + 0.4 * r["sd"], rel=1e-5)
    validation = next(r for r in read_log(tmp_path) if r.get("event") == "val")
    assert validation["xi"] == xi
    assert validation["backbone_gflops"] < validation["dense_backbone_gflops"]
    student = dovit.load_checkpoint(tmp_path / "last")
    assert student.config.default_xi == xi  # the checkpoint remembers the training threshold


def test_resume_continues_from_the_saved_step(dense_run, tmp_path):
    output = tmp_path / "run"
    shutil.copytree(dense_run, output)
    more = DENSE_STEPS + 20
    argv = ["--stage", "dense", "--output", str(output), "--steps", str(more), "--resume", *TINY]
    assert train.main(argv) == 0
    records = read_log(output)[len(read_log(dense_run)):]  # what the resumed run appended
    assert records[0] == {"event": "resume", "step": DENSE_STEPS}
    assert records[1]["event"] == "start" and records[1]["step"] == DENSE_STEPS
    assert [r["step"] for r in step_records(records)] == [DENSE_STEPS + 10, more]
    assert records[-1]["event"] == "done" and records[-1]["step"] == more
    # The scheduler state came back too: the learning rate follows the schedule, no second warm-up.
    args = train.parse_args(argv)
    for r in step_records(records):
        assert r["lr"] == pytest.approx(
            args.lr * trainer.lr_factor(r["step"], args.warmup_steps, args.steps, args.lr, args.min_lr,
                                        args.schedule))
    assert dovit.read_config(output / "last")[1]["step"] == more
    before, after = (
        load_file(dense_run / "last" / "model.safetensors"),
        load_file(output / "last" / "model.safetensors"),
    )
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_learning_rate_schedule_warms_up_then_decays_to_the_floor():
    factors = [trainer.lr_factor(step, 10, 100, 1e-3, 1e-5, "cosine") for step in range(101)]
    assert factors[9] == pytest.approx(1.0) and factors[0] == pytest.approx(0.1)
    assert all(a <= b for a, b in zip(factors[:10], factors[1:10], strict=False))  # warm-up rises
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))  # then never rises
    assert factors[100] == pytest.approx(1e-5 / 1e-3)


# ------------------------------------------------------------------------------ DDP
def test_torchrun_two_ranks_agree_and_only_rank_zero_writes(tmp_path):
    steps = 60
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "dovit.train", "--stage", "dense", "--output", str(tmp_path), "--steps", str(steps),
               *TINY, "--batch-size", "2", "--dump-rank-weights"]
    result = subprocess.run(command, cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    records = read_log(tmp_path)
    starts = [r for r in records if r.get("event") == "start"]
    assert len(starts) == 1 and starts[0]["world_size"] == 2  # one writer: rank 0
    steps_logged = step_records(records)
    assert [r["step"] for r in steps_logged] == list(range(10, steps + 1, 10))  # each step once
    # The distributed sampler splits the 64 images: 64 / (2 ranks x 2 images) = 16 steps per epoch.
    assert [r["epoch"] for r in steps_logged] == [(r["step"] - 1) // 16 for r in steps_logged]
    # Rank 0 logs its own 2-image batches, a noisy signal (seeds 0-2: -17 to -41 %); the held-out CE is
    # steadier.
    assert loss_has_fallen(records, 0.95), [r["loss"] for r in steps_logged]
    assert held_out_ce(tmp_path / "last") < 0.8 * held_out_ce(tmp_path / "last", trained=False)

    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert rank0.keys() == rank1.keys()
    differing = [k for k in rank0 if not torch.equal(rank0[k], rank1[k])]
    assert not differing, f"ranks disagree on {differing[:5]}"
    checkpoint = load_file(tmp_path / "last" / "model.safetensors")
    assert all(torch.equal(checkpoint[k], rank0[k]) for k in rank0)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["best", "last", "log.jsonl", "rank0.safetensors", "rank1.safetensors", "train.log",
                       trainer.STATE_NAME]


# ------------------------------------------------------------------------------ class weights, AMP, time
# limit
def test_class_weights_come_from_the_training_labels():
    labels = [np.array([[0, 0, 0, 1]]), np.array([[0, 0, 1, 255]])]
    fake = type("Fake", (), {"info": SimpleNamespace(num_classes=2), "__len__": lambda self: 2,
                             "load_label": lambda self, i: labels[i]})()
    weights = trainer._class_weights(1.0, fake, torch.device("cpu"))
    frequencies = torch.tensor([5 / 7, 2 / 7], dtype=torch.float64)
    expected = frequencies.mean() / frequencies  # numpy's median of two values is their mean
    assert torch.allclose(weights.double(), expected, rtol=1e-6)
    assert trainer._class_weights(0.0, fake, torch.device("cpu")) is None


def test_max_minutes_ends_the_run_early_with_a_validated_checkpoint(tmp_path):
    assert train.main(["--stage", "dense", "--output", str(tmp_path), "--steps", "500", "--max-minutes", "0",
                       *TINY]) == 0
    records = read_log(tmp_path)
    events = [(r["event"], r["step"]) for r in records if "event" in r and r["event"] != "start"]
    assert events == [("time_limit", 1), ("val", 1), ("done", 1)]
    assert dovit.read_config(tmp_path / "last")[1]["step"] == 1
    assert (tmp_path / "best" / "model.safetensors").exists()


def test_bf16_autocast_trains_and_saves_float32_weights(tmp_path):
    assert train.main(["--stage", "dense", "--output", str(tmp_path), "--steps", "20", "--amp", "bf16",
                       *TINY]) == 0
    losses = [r["loss"] for r in step_records(read_log(tmp_path))]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    weights = load_file(tmp_path / "last" / "model.safetensors")
    assert all(t.dtype in (torch.float32, torch.int64) for t in weights.values())


def test_init_weights_copies_matching_tensors_and_reports_the_rest(dense_run, tmp_path):
    """A new decoder width on the trained backbone: blocks copied, the resized decoder left at random init."""
    assert train.main(["--stage", "dense", "--output", str(tmp_path), "--steps", "1", "--init-weights",
                       str(dense_run / "last"), *TINY, "--decoder-channels", "24", "--lr", "1e-12",
                       "--min-lr", "1e-13"]) == 0
    start = next(r for r in read_log(tmp_path) if r.get("event") == "start")
    assert start["init_weights"]["copied"] > 100
    assert any(k.startswith("decoder.") for k in start["init_weights"]["kept_random"])
    assert not any(k.startswith("vit.blocks.") for k in start["init_weights"]["kept_random"])
    source, result = (
        load_file(dense_run / "last" / "model.safetensors"),
        load_file(tmp_path / "last" / "model.safetensors"),
    )
    key = "vit.blocks.5.mlp.fc1.weight"
    assert torch.allclose(source[key], result[key], atol=1e-6)  # lr 1e-12: one step moves nothing visible


def test_init_and_init_weights_together_are_refused(dense_run, tmp_path, capsys):
    last = str(dense_run / "last")
    assert train.main(["--stage", "dense", "--output", str(tmp_path), "--init", last, "--init-weights", last,
                       *TINY]) == 2
    assert "not both" in capsys.readouterr().err


def test_xi_range_draws_a_threshold_per_step_and_validates_at_xi(dense_run, tmp_path):
    teacher = str(dense_run / "last")
    assert train.main(["--stage", "dovit", "--output", str(tmp_path), "--init", teacher, "--teacher", teacher,
                       "--xi", "0.7", "--xi-range", "0.4", "0.95", "--steps", "30", *TINY]) == 0
    records = read_log(tmp_path)
    drawn = [r["xi"] for r in step_records(records)]
    assert len(drawn) == 3 and all(0.4 <= x <= 0.95 for x in drawn) and len(set(drawn)) == 3
    assert next(r for r in records if r.get("event") == "val")["xi"] == 0.7


def test_dense_fraction_mixes_dense_steps_into_token_pass_training(dense_run, tmp_path):
    teacher = str(dense_run / "last")
    assert train.main(["--stage", "dovit", "--output", str(tmp_path), "--init", teacher, "--teacher", teacher,
                       "--xi", "0.7", "--xi-range", "0.4", "0.6", "--dense-fraction", "0.5", "--steps", "80",
                       *TINY]) == 0
    records = step_records(read_log(tmp_path))
    drawn = [r["xi"] for r in records]
    assert 1.0 in drawn and any(0.4 <= x <= 0.6 for x in drawn)
    assert all(x == 1.0 or 0.4 <= x <= 0.6 for x in drawn)
    dense_steps = [r for r in records if r["xi"] == 1.0]
    assert all(r["kept_last_group"] == 1.0 for r in dense_steps)  # xi = 1 stops nothing


def test_bad_dense_fraction_is_refused(tmp_path, capsys):
    assert train.main(["--stage", "dovit", "--output", str(tmp_path), "--dense-fraction", "1.5", *TINY]) == 2
    assert "--dense-fraction" in capsys.readouterr().err


def test_bad_xi_range_is_refused(tmp_path, capsys):
    assert train.main(["--stage", "dovit", "--output", str(tmp_path), "--xi-range", "0.9", "0.8", *TINY]) == 2
    assert "--xi-range" in capsys.readouterr().err


# ------------------------------------------------------------------------------ held-out drives, EMA,
# augmentation
def test_val_sequences_hold_their_drives_out_of_training(tmp_path):
    write_drives(tmp_path / "data", {"0001TP": 4, "0006R0": 3, "0016E5": 5})
    tiny = [("camvid" if a == "synthetic" else a) for a in TINY]
    assert train.main(["--stage", "dense", "--output", str(tmp_path / "run"), "--steps", "2",
                       "--data-root", str(tmp_path / "data"), "--val-split", "train", "--val-sequences",
                       "0006R0",
                       "--camera-aug", "0.5", *tiny]) == 0
    start = next(r for r in read_log(tmp_path / "run") if r.get("event") == "start")
    assert start["train_sequences"] == {"0001TP": 4, "0016E5": 5} and start["train_images"] == 9
    assert start["val_sequences"] == {"0006R0": 3}
    validation = next(r for r in read_log(tmp_path / "run") if r.get("event") == "val")
    assert len(validation["per_class_iou"]) == 11
    # An unknown drive is named, with the drives that exist: a ValueError from train(), one line from main().
    bad = ["--stage", "dense", "--output", str(tmp_path / "bad"), "--steps", "1", "--data-root",
           str(tmp_path / "data"),
           "--val-split", "train", "--val-sequences", "0005VD", *tiny]
    with pytest.raises(ValueError, match=r"0005VD.*0001TP \(4\)"):
        trainer.train(train.parse_args(bad))
    assert train.main(bad) == 2


def test_ema_weights_are_validated_and_saved(dense_run, tmp_path):
    steps = 12
    assert train.main(["--stage", "dense", "--output", str(tmp_path), "--steps", str(steps), "--ema", "0.9",
                       "--init", str(dense_run / "last"), *TINY]) == 0
    state = torch.load(tmp_path / trainer.STATE_NAME, map_location="cpu", weights_only=True)
    saved = load_file(tmp_path / "last" / "model.safetensors")
    averaged = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    assert int(state["ema"]["n_averaged"]) == steps
    assert all(torch.equal(saved[k], averaged[k]) for k in saved)  # last/ holds the average...
    trained = state["model"]
    # ...not the raw weights
    assert any(not torch.equal(saved[k], trained[k]) for k in saved if saved[k].is_floating_point())
    # The average lies between the start and the raw weights: (1 + n) / (10 + n) ramps the decay from 0.1.
    start = load_file(dense_run / "last" / "model.safetensors")
    key = next(k for k in saved if k.endswith("head.weight") or "decoder" in k and saved[k].ndim > 1)
    assert 0 < (saved[key] - start[key]).norm() < (trained[key] - start[key]).norm() + 1e-6
