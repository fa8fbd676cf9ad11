import importlib.util
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import dovit
from dovit import CheckpointError

ROOT = Path(__file__).resolve().parents[1]


def test_round_trip_is_bit_exact(tmp_path, tiny_model):
    dovit.save_checkpoint(tiny_model, tmp_path / "ck", metadata={"note": "test"})
    loaded = dovit.load_checkpoint(tmp_path / "ck")
    original, restored = tiny_model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    assert loaded.config == tiny_model.config
    assert loaded.checkpoint_metadata == {"note": "test"}
    pixels = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(tiny_model(pixels, xi=0.4).logits, loaded(pixels, xi=0.4).logits)
    # The .safetensors path works as well as the folder.
    assert dovit.load_checkpoint(tmp_path / "ck" / "model.safetensors").config == tiny_model.config


def test_official_aux_heads_round_trip_with_their_batchnorm_statistics(tmp_path):
    torch.manual_seed(0)
    model = dovit.build_model("vit_tiny_patch16_224", 5, input_size=(64, 96), aux_head="setr_up",
                              aux_head_channels=16)
    with torch.no_grad():
        model.aux_heads[2].bn.running_var.uniform_(0.5, 2.0)
        model.aux_heads[2].bn.num_batches_tracked.fill_(77)
    model.eval()
    dovit.save_checkpoint(model, tmp_path / "ck")
    loaded = dovit.load_checkpoint(tmp_path / "ck")
    assert loaded.config == model.config and loaded.config.aux_head == "setr_up"
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys() and all(torch.equal(original[k], restored[k]) for k in original)
    pixels = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(model(pixels, xi=0.4).logits, loaded(pixels, xi=0.4).logits)


def test_a_config_from_before_the_aux_head_field_loads_the_papers_heads(tmp_path, tiny_model):
    dovit.save_checkpoint(tiny_model, tmp_path / "ck")
    path = tmp_path / "ck" / "config.json"
    document = json.loads(path.read_text())
    assert document["model"].pop("aux_head") == "linear" and document["model"].pop("aux_head_channels") == 256
    path.write_text(json.dumps(document))
    loaded = dovit.load_checkpoint(tmp_path / "ck")
    assert loaded.config == tiny_model.config
    pixels = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(tiny_model(pixels, xi=0.4).logits, loaded(pixels, xi=0.4).logits)


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_pickle_with_code_is_refused(tmp_path, tiny_model, capsys):
    dovit.save_checkpoint(tiny_model, tmp_path / "ck")
    (tmp_path / "ck" / "model.safetensors").write_bytes(pickle.dumps({"weights": _Exploit()}))
    with pytest.raises(CheckpointError, match="safetensors"):
        dovit.load_checkpoint(tmp_path / "ck")
    torch.save({"x": _Exploit()}, tmp_path / "model.pth")
    with pytest.raises(CheckpointError, match="pickle"):
        dovit.load_checkpoint(tmp_path / "model.pth")
    assert "pwned" not in capsys.readouterr().out


def test_corrupt_and_mismatched_files_name_the_problem(tmp_path, tiny_model):
    dovit.save_checkpoint(tiny_model, tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        dovit.load_checkpoint(tmp_path / "ck")

    dovit.save_checkpoint(tiny_model, tmp_path / "ck2")
    document = json.loads((tmp_path / "ck2" / "config.json").read_text())
    document["model"]["num_classes"] = 7
    document["model"]["class_names"], document["model"]["class_colors"] = [], []
    (tmp_path / "ck2" / "config.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="wrong shape"):
        dovit.load_checkpoint(tmp_path / "ck2")

    (tmp_path / "ck2" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config"):
        dovit.load_checkpoint(tmp_path / "ck2")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        dovit.load_checkpoint(tmp_path / "missing")
    (tmp_path / "ck2" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config"):
        dovit.load_checkpoint(tmp_path / "ck2")


# ------------------------------------------------------------------------------ invalid configs and weights
def _edit_config(folder, **model_fields):
    path = folder / "config.json"
    document = json.loads(path.read_text())
    document["model"].update(model_fields)
    path.write_text(json.dumps(document))


BAD_CONFIGS = {
    "decision_layers": (dict(decision_layers=[100]), "decision_layers"),
    "decoder_channels": (dict(decoder_channels=-5), "decoder_channels"),
    "input_size": (dict(input_size=[0, 0]), "input_size"),
    "num_classes": (dict(num_classes=10**9, class_names=[], class_colors=[]), "num_classes"),
    "mean": (dict(mean=[0.5, 0.5]), "mean"),
    "std": (dict(std=[0.0, 0.0, 0.0]), "std"),
    "backbone": (dict(backbone="vit_tiny_patch16_2244"), "unknown backbone"),
    "aux_head": (dict(aux_head="conv"), "aux_head"),
    "aux_head_channels": (dict(aux_head="fcn", aux_head_channels=0), "aux_head_channels"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_every_invalid_config_is_a_checkpoint_error(name, tmp_path, tiny_model):
    fields, message = BAD_CONFIGS[name]
    dovit.save_checkpoint(tiny_model, tmp_path / "ck")
    _edit_config(tmp_path / "ck", **fields)
    with pytest.raises(CheckpointError, match=message):
        dovit.load_checkpoint(tmp_path / "ck")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_weights_with_nan_or_inf_are_refused(value, tmp_path, tiny_model):
    """A diverged run's weights used to load and serve an all-class-0 mask."""
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    state["decoder.classifier.weight"][0, 0] = value
    broken = dovit.DoViTSegmenter(tiny_model.config)
    broken.load_state_dict(state)
    dovit.save_checkpoint(broken, tmp_path / "ck")
    with pytest.raises(CheckpointError, match=r"NaN or infinite .*decoder\.classifier\.weight"):
        dovit.load_checkpoint(tmp_path / "ck")


def test_config_json_is_read_bounded_and_only_from_a_regular_file(tmp_path, tiny_model):
    folder = dovit.save_checkpoint(tiny_model, tmp_path / "ck")
    config = folder / "config.json"
    text = config.read_text()
    config.write_text(text + " " * (5 * 2**20))  # valid JSON, but 5 MB
    with pytest.raises(CheckpointError, match="too large"):
        dovit.read_config(folder)
    config.unlink()
    config.symlink_to("/dev/zero")  # would be read forever
    with pytest.raises(CheckpointError, match="not a regular file"):
        dovit.read_config(folder)
    config.unlink()
    os.mkfifo(config)  # would block the read forever
    with pytest.raises(CheckpointError, match="not a regular file"):
        dovit.read_config(folder)
    config.unlink()
    config.write_text('{"model": ' * 100_000)
    with pytest.raises(CheckpointError, match="not a valid DoViT config"):
        dovit.read_config(folder)
    for document in ("[1, 2]", '{"model": {}, "metadata": [1]}', '{"format_version": 99, "model": {}}'):
        config.write_text(document)
        with pytest.raises(CheckpointError, match="not a valid DoViT config"):
            dovit.load_checkpoint(folder)


def test_loading_sets_metadata_through_the_constructor(tmp_path, tiny_model):
    dovit.save_checkpoint(tiny_model, tmp_path / "ck", metadata={"stage": "dovit", "step": 3})
    model = dovit.load_checkpoint(tmp_path / "ck")
    assert model.checkpoint_metadata == {"stage": "dovit", "step": 3}
    assert "checkpoint_metadata" in vars(model)  # an attribute the model owns from __init__ on


# ------------------------------------------------------------------------------ crash-safe saving
def _metadata_step(folder) -> int:
    return dovit.read_config(folder)[1]["step"]


def test_a_save_that_dies_while_writing_leaves_the_old_checkpoint_intact(tmp_path, tiny_model, monkeypatch):
    folder = dovit.save_checkpoint(tiny_model, tmp_path / "last", metadata={"step": 1})

    def dies_half_way(state, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"\x00" * 1000)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(dovit.core.checkpoint, "save_file", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        dovit.save_checkpoint(tiny_model, folder, metadata={"step": 2})
    assert _metadata_step(folder) == 1 and dovit.load_checkpoint(folder) is not None
    monkeypatch.undo()
    dovit.save_checkpoint(tiny_model, folder, metadata={"step": 3})  # the next save cleans up
    assert _metadata_step(folder) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_a_save_killed_between_its_renames_loads_the_previous_copy(tmp_path, tiny_model, monkeypatch):
    folder = dovit.save_checkpoint(tiny_model, tmp_path / "last", metadata={"step": 1})
    real_replace = os.replace

    def dies_after_moving_the_old_folder_aside(source, target):
        real_replace(source, target)
        if str(target).endswith(".previous"):
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(dovit.core.checkpoint.os, "replace", dies_after_moving_the_old_folder_aside)
    with pytest.raises(KeyboardInterrupt):
        dovit.save_checkpoint(tiny_model, folder, metadata={"step": 2})
    monkeypatch.undo()
    assert not folder.exists()
    with pytest.warns(UserWarning, match="save was interrupted"):
        assert dovit.load_checkpoint(folder).checkpoint_metadata == {"step": 1}
    with pytest.warns(UserWarning):
        assert dovit.load_checkpoint(folder / "model.safetensors").checkpoint_metadata == {"step": 1}
    dovit.save_checkpoint(tiny_model, folder, metadata={"step": 3})
    assert _metadata_step(folder) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_saving_fsyncs_the_files_and_the_folder(tmp_path, tiny_model, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}"))
                        or real_fsync(fd))
    dovit.save_checkpoint(tiny_model, tmp_path / "ck")
    names = [os.path.basename(p) for p in synced]
    assert "model.safetensors" in names and any(n.startswith("config.json") for n in names)
    assert str(tmp_path) in synced  # the rename into place is durable too


def test_saving_refuses_to_replace_a_folder_with_other_files(tmp_path, tiny_model):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="notes.txt"):
        dovit.save_checkpoint(tiny_model, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


KILL_DRIVER = r"""
import json, os, random, signal, sys, time, warnings
import torch
torch.set_num_threads(1)
import dovit
warnings.simplefilter("ignore")
folder = sys.argv[1]
model = dovit.build_model("test_vit", 3, input_size=(32, 32), decoder_channels=8)
start = time.perf_counter()
for _ in range(3):
    dovit.save_checkpoint(model, folder, metadata={"step": 0})
save_seconds = (time.perf_counter() - start) / 3  # kill within ~3 saves, however loaded the machine is
rng, steps_seen, mid_save = random.Random(0), [], 0
siblings = [os.path.join(os.path.dirname(folder), "." + os.path.basename(folder) + s)
            for s in (".partial", ".previous")]
for kill in range(int(sys.argv[2])):
    pid = os.fork()
    if pid == 0:  # the child saves in a loop until it is killed
        try:
            step = dovit.read_config(folder)[1]["step"]
            while True:
                step += 1
                dovit.save_checkpoint(model, folder, metadata={"step": step})
        finally:
            os._exit(1)
    time.sleep(rng.uniform(0.0, 3 * save_seconds))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    mid_save += any(os.path.exists(s) for s in siblings)
    loaded = dovit.load_checkpoint(folder)  # raises if the kill left it unloadable
    steps_seen.append(loaded.checkpoint_metadata["step"])
print(json.dumps({"kills": len(steps_seen), "steps": steps_seen, "mid_save": mid_save}))
"""


def test_killing_saves_at_random_moments_never_leaves_an_unloadable_checkpoint(tmp_path):
    """A child process saves in a loop; it is SIGKILLed 20 times at random moments, and every time the
    checkpoint loads (the latest or the previous complete save)."""
    result = subprocess.run([sys.executable, "-c", KILL_DRIVER, str(tmp_path / "last"), "20"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env=dict(os.environ,
                                                                                  OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["kills"] == 20
    assert report["steps"] == sorted(report["steps"]) and report["steps"][-1] >= 3  # saves made progress
    assert report["mid_save"] >= 3  # kills did land inside saves


# ------------------------------------------------------------------------------ app.py: one line per problem
def _app_entry():
    # the app/ package shadows app.py
    spec = importlib.util.spec_from_file_location("app_entry", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["decision_layers", "std", "num_classes", "backbone", "nan"])
def test_app_py_prints_one_clear_line_for_a_bad_checkpoint(name, tmp_path, tiny_model):
    folder = dovit.save_checkpoint(tiny_model, tmp_path / "ck")
    if name == "nan":
        state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                 for k, v in tiny_model.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        message = "NaN"
    else:
        fields, message = BAD_CONFIGS[name]
        _edit_config(folder, **fields)
    with pytest.raises(SystemExit) as exit_info:
        _app_entry().main(["--checkpoint", str(folder), "--threads", "1"])
    text = str(exit_info.value.code)
    assert text.startswith("python app.py: ") and "\n" not in text and message in text, text


def test_saving_over_a_checkpoint_keeps_its_model_card(tmp_path, tiny_model):
    folder = dovit.save_checkpoint(tiny_model, tmp_path / "model")
    (folder / "README.md").write_text("# model card\n")
    dovit.save_checkpoint(tiny_model, folder, metadata={"step": 2})
    assert (folder / "README.md").read_text() == "# model card\n"
    assert dovit.load_checkpoint(folder).checkpoint_metadata["step"] == 2
    (folder / "notes.txt").write_text("other")
    with pytest.raises(CheckpointError, match="notes.txt"):
        dovit.save_checkpoint(tiny_model, folder)
