from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import dovit
from dovit.core.predictor import check_xi
from dovit.core.preprocess import aspect_working_size, class_mask
from dovit.core.token_pass import Policy

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@pytest.fixture()
def predictor(tiny_model):
    return dovit.Predictor(tiny_model)


def _image(height=70, width=100, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_predict_returns_mask_at_input_resolution_and_trace(predictor):
    prediction = predictor.predict(_image(72, 108), xi=0.4)  # the input size's 2:3 aspect: a 4 x 6 grid
    assert prediction.mask.shape == (72, 108) and prediction.mask.dtype == np.int64
    assert prediction.mask.min() >= 0 and prediction.mask.max() < 5
    trace = prediction.trace
    assert trace.flops == trace.backbone_flops + trace.aux_head_flops + trace.decoder_flops
    assert trace.dense_flops == trace.dense_backbone_flops + trace.decoder_flops
    assert [d.confidence.shape for d in trace.decisions] == [(4, 6)] * 3
    assert all(d.keep_mask.dtype == bool for d in trace.decisions)
    assert [g.tokens for g in trace.groups][0] == 24
    assert sum(g.flops for g in trace.groups) < trace.backbone_flops
    assert prediction.latency_ms > 0 and prediction.dense_latency_ms > 0


def test_rethresholding_reuses_the_cached_prefix(predictor, monkeypatch):
    image = _image()
    predictor.set_image(image)
    calls = []
    original = predictor.model.prefix
    monkeypatch.setattr(predictor.model, "prefix", lambda *a, **k: calls.append(1) or original(*a, **k))
    first = predictor.predict(xi=1.0)
    second = predictor.predict(image, xi=0.3)  # same image again: still cached
    assert calls == []
    assert np.array_equal(first.mask, first.dense_mask)
    assert first.agreement_with_dense == 1.0
    assert second.trace.flops < first.trace.flops
    predictor.predict(_image(seed=1), xi=0.3)
    assert calls == [1]


def test_predictor_matches_a_fresh_full_forward(predictor):
    image = _image()
    cached = predictor.predict(image, xi=0.35)
    fresh = dovit.Predictor(predictor.model).predict(image, xi=0.35)
    assert np.array_equal(cached.mask, fresh.mask)
    assert [g.tokens for g in cached.trace.groups] == [g.tokens for g in fresh.trace.groups]


def test_prepare_and_run_are_predicts_forward_and_leave_its_cache_alone(predictor, monkeypatch):
    """analysis and policies start from Predictor.prepare / run: the same forward as predict, its own
    state."""
    image, other = _image(), _image(seed=2)
    predictor.set_image(image)
    prepared = predictor.prepare(other, size=(48, 64))
    assert prepared.working_size == (48, 64) and prepared.original_size == (70, 100)
    assert prepared.dense_latency_ms == prepared.prefix_ms + prepared.dense_ms
    cached = predictor.predict(xi=0.4)  # still set_image's image
    assert np.array_equal(cached.mask, dovit.Predictor(predictor.model).predict(image, xi=0.4).mask)
    calls = []
    original = predictor.model.prefix
    monkeypatch.setattr(predictor.model, "prefix", lambda *a, **k: calls.append(1) or original(*a, **k))
    output = predictor.run(prepared, 0.4)
    assert calls == []  # run starts from the prepared state
    assert np.array_equal(dovit.core.preprocess.class_mask(output.logits, (70, 100)),
                          predictor.predict(other, xi=0.4, size=(48, 64)).mask)
    assert np.array_equal(prepared.dense_mask, predictor.predict(other, xi=1.0, size=(48, 64)).mask)
    stopped_all = predictor.run(prepared, 1.0, decider=Policy(lambda decision, confidence, logits,
                                                              keep: keep & False))
    assert stopped_all.group_tokens[0].tolist()[1:] == [0, 0, 0]  # a keep decider replaces Eq. 4-5
    assert len(predictor.run(prepared, 1.0, with_aux=False).aux_logits) == 0


@pytest.mark.parametrize("bad", [float("nan"), -0.1, 1.01, "high", None])
def test_bad_xi_is_a_clear_error(bad):
    if bad is None:
        return  # None means "the checkpoint's default" in predict()
    with pytest.raises(ValueError, match=r"xi must be a number in \[0, 1\]"):
        check_xi(bad)


@pytest.mark.parametrize("image, message", [
    (np.zeros((10, 10), np.uint8), "shape"),
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    ([[1, 2, 3]], "numpy array"),
])
def test_bad_images_are_clear_errors(predictor, image, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(image, xi=0.5)


def test_working_size_smaller_than_a_patch_is_refused(predictor):
    with pytest.raises(ValueError, match="patch"):
        predictor.predict(_image(), xi=0.5, size=(8, 8))


def test_from_checkpoint_default_xi(tmp_path, tiny_model):
    tiny_model.config.default_xi = 0.9
    try:
        dovit.save_checkpoint(tiny_model, tmp_path / "ck")
    finally:
        tiny_model.config.default_xi = 0.95
    predictor = dovit.Predictor.from_checkpoint(tmp_path / "ck")
    assert predictor.default_xi == 0.9
    assert predictor.predict(_image(), xi=None).xi == 0.9


def test_default_checkpoint_is_the_shipped_one_in_a_checkout():
    assert dovit.core.predictor.default_checkpoint().name == "camvid_hybrid_dovit_vit_tiny"


def test_missing_shipped_checkpoint_names_the_way_out(tmp_path, monkeypatch):
    """After `pip install .` the package has no checkpoints/ beside it: say how to pass one."""
    monkeypatch.setattr(dovit.core.predictor, "DEFAULT_CHECKPOINT",
                        tmp_path / "checkpoints" / "camvid_dovit_vit_tiny")
    with pytest.raises(dovit.CheckpointError, match="--checkpoint PATH"):
        dovit.Predictor.from_checkpoint()


@pytest.mark.parametrize("overhead", [float("inf"), None])
def test_predict_batch_gives_every_image_its_predict_mask(predictor, monkeypatch, overhead):
    """Frames of different sizes and contents, keeping different numbers of tokens, in batches of 3 (the last
    one short): each Prediction equals predict(image, xi) for that image, in order."""
    monkeypatch.setattr(predictor.model, "pack_overhead_tokens", overhead)
    images = [_image(70, 100, seed=0), _image(64, 96, seed=1), np.full((50, 80, 3), 128, np.uint8),
              _image(90, 120, seed=3), _image(70, 100, seed=4)]
    batch = predictor.predict_batch(images, xi=0.35, batch_size=3)
    kept = [p.trace.groups[-1].tokens for p in batch]
    assert len(set(kept)) > 1, "need images with different kept counts"
    for image, prediction in zip(images, batch, strict=False):
        alone = dovit.Predictor(predictor.model).predict(image, xi=0.35)
        assert prediction.mask.shape == image.shape[:2]
        assert np.array_equal(prediction.mask, alone.mask)
        assert np.array_equal(prediction.dense_mask, alone.dense_mask)
        assert [g.tokens for g in prediction.trace.groups] == [g.tokens for g in alone.trace.groups]
        assert prediction.xi == 0.35 and prediction.latency_ms > 0 and prediction.dense_latency_ms > 0


def test_predict_batch_without_dense_baseline_and_its_errors(predictor):
    images = [_image(seed=5), _image(seed=6)]
    batch = predictor.predict_batch(images, dense=False)
    assert [p.xi for p in batch] == [predictor.default_xi] * 2
    assert all(p.dense_mask is None and np.isnan(p.agreement_with_dense) for p in batch)
    assert predictor.predict_batch([]) == []
    with pytest.raises(ValueError, match="xi"):
        predictor.predict_batch(images, xi=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        predictor.predict_batch(images, batch_size=0)
    with pytest.raises(ValueError, match="uint8"):
        predictor.predict_batch([images[0].astype(np.float32)])


# ---------------------------------------------------------------- photos keep their shape
@pytest.fixture(scope="module")
def shipped():
    return dovit.Predictor.from_checkpoint()  # the default checkpoint (the hybrid ESPNetv2 stem)


def _street(height: int, width: int) -> np.ndarray:
    """The shipped synthetic street scene resized to (height, width): a photo of another aspect."""
    image = cv2.cvtColor(cv2.imread(str(ASSETS / "synthetic_street.png")), cv2.COLOR_BGR2RGB)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def test_the_default_working_size_is_the_images_own_aspect(predictor):
    wide, input_aspect = _image(60, 150), _image(32, 48)
    assert predictor.working_size(image_size=(60, 150)) == aspect_working_size(
        (60, 150), predictor.config.input_size, predictor.model.patch_size)
    assert predictor.working_size(image_size=(32, 48)) == tuple(predictor.config.input_size)
    assert predictor.working_size((64, 64), image_size=(60, 150)) == (64, 64)  # a size given wins
    prediction = predictor.predict(wide, xi=0.5)
    assert prediction.working_size == predictor.working_size(image_size=wide.shape[:2])
    assert prediction.trace.grid == tuple(-(-side // 16) for side in prediction.working_size)
    assert prediction.mask.shape == wide.shape[:2] and prediction.dense_mask.shape == wide.shape[:2]
    assert predictor.predict(input_aspect, xi=0.5).working_size == tuple(predictor.config.input_size)


def test_xi_one_equals_the_dense_model_exactly_on_a_16_9_photo(shipped):
    """The default checkpoint on a 540 x 960 photo: its own grid, and xi = 1 (aux heads on) gives exactly the
    dense model's logits and mask at the photo's size."""
    photo = _street(540, 960)
    working = shipped.working_size(image_size=photo.shape[:2])
    pixels = shipped.preprocess(photo, working)
    with torch.inference_mode():
        dense = shipped.model(pixels, xi=1.0)
        prepared = shipped.prepare(photo)
        through_aux = shipped.run(prepared, 1.0, with_aux=True)
    assert prepared.working_size == working and dense.grid == prepared.state.grid
    assert dense.grid != tuple(-(-side // shipped.model.patch_size) for side in shipped.config.input_size)
    assert torch.equal(prepared.dense.logits, dense.logits) and torch.equal(through_aux.logits, dense.logits)
    prediction = shipped.predict(photo, xi=1.0)
    assert prediction.mask.shape == photo.shape[:2]
    assert np.array_equal(prediction.mask, class_mask(dense.logits, photo.shape[:2]))
    assert np.array_equal(prediction.mask, prediction.dense_mask)


def test_predict_batch_runs_each_working_size_in_its_own_forwards(predictor, monkeypatch):
    images = [_image(60, 150, seed=0), _image(32, 48, seed=1), _image(150, 60, seed=2),
              _image(60, 150, seed=3)]
    shapes = []
    prefix = predictor.model.prefix
    monkeypatch.setattr(predictor.model, "prefix",
                        lambda pixels: shapes.append(pixels.shape) or prefix(pixels))
    batch = predictor.predict_batch(images, xi=0.5, batch_size=4)
    sizes = [predictor.working_size(image_size=image.shape[:2]) for image in images]
    assert [p.working_size for p in batch] == sizes and len(set(sizes)) == 3
    assert sorted(tuple(s[-2:]) for s in shapes) == sorted(set(sizes))  # one forward per size
    assert shapes[0][0] == 2  # the two wide images shared theirs
    for image, prediction in zip(images, batch, strict=True):
        alone = dovit.Predictor(predictor.model).predict(image, xi=0.5)
        assert np.array_equal(prediction.mask, alone.mask) and prediction.mask.shape == image.shape[:2]
