"""dovit.training.calibration: label-free aux heads; xi = 1 stays the dense model; resume; refusals."""

import cv2
import numpy as np
import pytest
import torch

import dovit
from dovit.evaluation.confidence_range import ConfidenceRange
from dovit.training import calibration
from dovit.training.calibration import CalibrateConfig, CalibrationError, XiPoint

INPUT_SIZE = (32, 48)


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    torch.manual_seed(0)
    model = dovit.build_model("vit_tiny_patch16_224", num_classes=5, input_size=INPUT_SIZE,
                              decoder_channels=16,
                              decision_layers=(3, 6, 9))
    return dovit.save_checkpoint(model, tmp_path_factory.mktemp("dense") / "dense",
                                 metadata={"stage": "dense"})


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir()
    for index in range(9):
        image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / ("sub" if index % 2 else ".") / f"frame{index}.png"), image)
    return folder


def config(dense, images, output, **overrides) -> CalibrateConfig:
    fields = dict(minutes=0.02, batch_size=2, progress=False)
    fields.update(overrides)
    return CalibrateConfig(str(dense), str(output), str(images), **fields)


def test_aux_only_keeps_the_dense_model_and_records_provenance(dense, images, tmp_path):
    result = calibration.calibrate(config(dense, images, tmp_path / "out", train="aux"))
    assert result.steps >= 1 and result.train_images == 8 and result.held_out_images == 1
    source, calibrated = dovit.load_checkpoint(dense), dovit.load_checkpoint(result.output)
    for name, tensor in source.state_dict().items():
        if not name.startswith("aux_heads."):
            assert torch.equal(tensor, calibrated.state_dict()[name]), name  # only the aux heads trained
    assert any(not torch.equal(t, calibrated.state_dict()[n]) for n, t in source.state_dict().items()
               if n.startswith("aux_heads."))
    pixels = torch.randn(2, 3, *INPUT_SIZE)
    with torch.inference_mode():
        # xi = 1 is dense
        assert torch.equal(source(pixels, xi=1.0).logits, calibrated(pixels, xi=1.0).logits)
    meta = calibrated.checkpoint_metadata
    assert meta["stage"] == "calibrated" and meta["calibration"]["train"] == "aux"
    assert meta["calibration"]["source"] == str(dense) and meta["calibration"]["image_count"] == 9
    assert calibrated.config.default_xi == meta["calibration"]["default_xi"]
    assert [p["xi"] for p in meta["calibration"]["curve"]] == list(calibration.XI_GRID)
    assert meta["calibration"]["curve"][0]["agreement"] == 1.0  # xi = 1 against the dense masks
    assert ConfidenceRange.from_metadata(meta) is not None
    assert not calibration.state_path(result.output).exists()


def test_decoder_mode_trains_the_decoder_too(dense, images, tmp_path):
    result = calibration.calibrate(config(dense, images, tmp_path / "out", train="aux+decoder"))
    source, calibrated = dovit.load_checkpoint(dense), dovit.load_checkpoint(result.output)
    changed = {
        n.split(".")[0]
        for n, t in source.state_dict().items()
        if not torch.equal(t, calibrated.state_dict()[n])
    }
    assert changed <= {"aux_heads", "decoder"} and "decoder" in changed


def test_new_decision_layers_get_new_heads(dense, images, tmp_path):
    result = calibration.calibrate(config(dense, images, tmp_path / "out", train="aux", decision_layers=(4,
                                                                                                         8)))
    assert dovit.load_checkpoint(result.output).decision_layers == (4, 8)


def test_pick_xi_takes_the_biggest_saving_that_meets_the_target():
    curve = [XiPoint(1.0, 1.0, 0.0), XiPoint(0.95, 0.98, 0.4), XiPoint(0.9, 0.96, 0.5), XiPoint(0.8, 0.97,
                                                                                                0.45)]
    assert calibration.pick_xi(curve, 0.97) == 0.8
    assert calibration.pick_xi(curve, 0.99) == 1.0
    assert calibration.pick_xi([XiPoint(1.0, 0.9, 0.0)], 0.99) == 1.0


def test_resume_continues_from_the_saved_state(dense, images, tmp_path, monkeypatch):
    output = tmp_path / "out"
    model = calibration.prepare_model(dense, None)
    optimizer = torch.optim.AdamW(calibration.set_trainable(model, "aux"))
    calibration._save_state(model, optimizer, config(dense, images, output, train="aux"), step=5, elapsed=0.5)
    steps = []
    monkeypatch.setattr(calibration, "_save_state", lambda *a, **k: None)
    original = calibration._resume
    monkeypatch.setattr(calibration, "_resume", lambda *a: steps.append(original(*a)) or steps[-1])
    result = calibration.calibrate(config(dense, images, output, resume=True, train="aux"))
    assert steps == [(5, 0.5)] and result.steps > 5
    with pytest.raises(CalibrationError, match="does not exist"):
        calibration.calibrate(config(dense, images, tmp_path / "other", resume=True))


def test_resume_refuses_another_runs_state(dense, images, tmp_path):
    output = tmp_path / "out"
    model = calibration.prepare_model(dense, None)
    optimizer = torch.optim.AdamW(calibration.set_trainable(model, "aux"))
    calibration._save_state(model, optimizer, config(dense, images, output, train="aux"), step=1, elapsed=0.1)
    with pytest.raises(CalibrationError, match="with --train aux, not"):
        calibration.calibrate(config(dense, images, output, resume=True, train="aux+decoder"))


def test_refusals(dense, images, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="no images"):
        calibration.read_images(empty)
    with pytest.raises(CalibrationError, match="is not a folder"):
        calibration.read_images(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not an image")
    cv2.imwrite(str(bad / "b.png"), np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(CalibrationError, match="1 unreadable image.*a.png"):
        calibration.read_images(bad)
    small = tmp_path / "small"
    small.mkdir()
    cv2.imwrite(str(small / "a.png"), np.zeros((20, 60, 3), np.uint8))
    cv2.imwrite(str(small / "b.png"), np.zeros((40, 60, 3), np.uint8))
    with pytest.raises(CalibrationError, match=r"under 32 pixels on a side: a.png \(20x60\)"):
        calibration.read_images(small)
    one = tmp_path / "one"
    one.mkdir()
    cv2.imwrite(str(one / "a.png"), np.zeros((40, 60, 3), np.uint8))
    with pytest.raises(CalibrationError, match="at least 2 images"):
        calibration.read_images(one)
    with pytest.raises(CalibrationError, match="cannot load"):
        calibration.calibrate(config(tmp_path / "nothing", images, tmp_path / "out"))
    with pytest.raises(CalibrationError, match="is the source checkpoint"):
        calibration.calibrate(config(dense, images, dense))
    with pytest.raises(CalibrationError, match="--train must be one of"):
        calibration.set_trainable(calibration.prepare_model(dense, None), "everything")
    with pytest.raises(CalibrationError, match="--decision-layers"):
        calibration.prepare_model(dense, (3, 40))


def test_default_decision_layers_are_every_second_block_of_the_middle_half(dense, images, tmp_path):
    assert calibration.calibration_layers(12) == (3, 5, 7, 9)
    assert calibration.calibration_layers(24) == tuple(range(6, 19, 2))
    result = calibration.calibrate(config(dense, images, tmp_path / "out", train="aux"))
    calibrated = dovit.load_checkpoint(result.output)
    assert calibrated.decision_layers == (3, 5, 7, 9) and len(calibrated.aux_heads) == 4
    assert calibrated.checkpoint_metadata["calibration"]["decision_layers"] == [3, 5, 7, 9]
    kept = calibration.calibrate(config(dense, images, tmp_path / "kept", train="aux", decision_layers=(3, 6,
                                                                                                        9)))
    assert dovit.load_checkpoint(kept.output).decision_layers == (3, 6, 9)  # asked for: the source's own


def test_colour_shifts_change_the_crops_not_their_geometry_and_are_recorded(dense, images, tmp_path):
    frames = [np.random.default_rng(i).integers(0, 256, (32, 48, 3), dtype=np.uint8) for i in range(4)]
    plain, shifted = (calibration._Batches(frames, config(dense, images, tmp_path, colour_shifts=on), (0.5,
                                                                                                       ) * 3,
                                           (0.25,) * 3) for on in (False, True))
    assert torch.equal(plain(3), plain(3)) and plain(3).shape == shifted(3).shape == (2, 3, 32, 48)
    assert any(not torch.equal(plain(step), shifted(step)) for step in range(5))
    result = calibration.calibrate(config(dense, images, tmp_path / "out", train="aux", colour_shifts=True))
    assert dovit.load_checkpoint(result.output).checkpoint_metadata["calibration"]["colour_shifts"] is True
