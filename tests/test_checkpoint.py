import json
import pickle

import pytest
import torch

import dovit
from dovit import CheckpointError


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
