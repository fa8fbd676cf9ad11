"""dovit.familiarity: the dense confidence, its training range stored in a checkpoint, and the studio's
note."""
import json

import numpy as np
import pytest
import torch
from test_evaluate import fake_camvid
from test_train import assert_help_documents_every_flag

import dovit
from app.readouts import prediction_summary, readouts_markdown
from dovit import familiarity
from dovit.core.predictor import Predictor, mean_confidence
from dovit.evaluation import confidence_range
from dovit.evaluation.confidence_range import ConfidenceRange, familiarity_note

INPUT_SIZE = (32, 48)


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = dovit.build_model("vit_tiny_patch16_224", num_classes=11, input_size=INPUT_SIZE,
                              decoder_channels=16)
    return dovit.save_checkpoint(model, tmp_path / "tiny", metadata={"stage": "dense"})


def images(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(count)]


def test_dense_confidence_is_the_dense_logits_mean_top_probability(tiny_model):
    predictor = Predictor(tiny_model)
    image = images(1)[0]
    prediction = predictor.predict(image, xi=0.3)
    with torch.inference_mode():
        logits = tiny_model(predictor.preprocess(image), xi=1.0).logits
    assert prediction.dense_confidence == pytest.approx(mean_confidence(logits)[0], rel=1e-5)
    assert 1 / tiny_model.config.num_classes <= prediction.dense_confidence <= 1.0
    batched = predictor.predict_batch([image, images(1, 1)[0]], xi=0.3)
    assert batched[0].dense_confidence == pytest.approx(prediction.dense_confidence, rel=1e-4)
    assert np.isnan(predictor.predict_batch([image], xi=0.3, dense=False)[0].dense_confidence)


def test_measured_range_is_ordered_and_counts_frames(checkpoint):
    reference = confidence_range.measure_range(Predictor.from_checkpoint(checkpoint), images(5), "five",
                                               batch_size=2,
                                          progress=False)
    assert reference.low <= reference.median <= reference.high and reference.frames == 5
    with pytest.raises(ValueError, match="at least 2 frames"):
        confidence_range.measure_range(Predictor.from_checkpoint(checkpoint), images(1), "one",
                                       progress=False)


def test_note_only_below_the_low_end():
    reference = ConfidenceRange(0.8, 0.87, 0.93, 100, "camvid train")
    assert familiarity_note(0.85, reference) is None and familiarity_note(0.8, reference) is None
    note = familiarity_note(0.71, reference)
    assert "0.71" in note and "0.80–0.93 on camvid train" in note and "Trust the mask less" in note
    assert familiarity_note(0.1, None) is None and familiarity_note(float("nan"), reference) is None


def test_range_round_trips_through_metadata():
    reference = ConfidenceRange(0.8, 0.87, 0.93, 100, "camvid train")
    assert ConfidenceRange.from_metadata({"confidence_range": reference.to_dict()}) == reference
    assert ConfidenceRange.from_metadata({}) is None and ConfidenceRange.from_metadata(None) is None
    assert ConfidenceRange.from_metadata({"confidence_range": {"low": "x"}}) is None


def test_studio_readout_carries_the_note(tiny_model):
    prediction = Predictor(tiny_model).predict(images(1)[0], xi=0.5)
    above = ConfidenceRange(1.01, 1.02, 1.03, 10, "drives")  # every confidence is below it
    summary = prediction_summary(prediction, above)
    assert summary.dense_confidence == pytest.approx(prediction.dense_confidence)
    assert summary.familiarity_note.startswith("This image looks unlike the training data")
    assert "⚠ This image looks unlike" in readouts_markdown(summary)
    plain = prediction_summary(prediction, ConfidenceRange(0.0, 0.1, 0.2, 10, "drives"))
    assert plain.familiarity_note is None and "⚠" not in readouts_markdown(plain)
    json.dumps(summary.to_dict())  # the /predict API returns it


def test_help_documents_every_flag(monkeypatch, checkpoint):
    assert_help_documents_every_flag(familiarity, [str(checkpoint)], monkeypatch)


def test_cli_stores_the_range_and_keeps_the_rest(checkpoint, tmp_path, capsys):
    root = fake_camvid(tmp_path / "camvid", split="train", count=4)
    before = dovit.load_checkpoint(checkpoint)
    assert familiarity.main([str(checkpoint), "--data-root", str(root), "--split", "train", "--dry-run",
                             "--no-progress"]) == 0
    assert "confidence_range" not in dovit.load_checkpoint(checkpoint).checkpoint_metadata
    assert familiarity.main([str(checkpoint), "--data-root", str(root), "--split", "train", "--max-images",
                             "2",
                             "--no-progress"]) == 0
    after = dovit.load_checkpoint(checkpoint)
    stored = ConfidenceRange.from_metadata(after.checkpoint_metadata)
    assert stored.frames == 2 and stored.source == "camvid train, 2 frames"
    assert after.checkpoint_metadata["stage"] == "dense"
    for name, tensor in before.state_dict().items():
        assert torch.equal(tensor, after.state_dict()[name])
    assert "stored in" in capsys.readouterr().out
    assert familiarity.main([str(tmp_path / "missing"), "--no-progress"]) == 2
    assert familiarity.main([str(checkpoint), "--data-root", str(tmp_path / "none"), "--no-progress"]) == 2
