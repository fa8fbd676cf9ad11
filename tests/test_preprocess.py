"""dovit.core.preprocess: the one resize / normalise / upsample / logits-to-mask path, and that the Predictor,
evaluation and the app all take it."""
import functools

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dovit
from app.analysis import to_working_size
from app.images import fit_within
from dovit.core import preprocess
from dovit.core.preprocess import (
    MAX_WORKING_ASPECT,
    aspect_working_size,
    logits_to_mask,
    normalise,
    preprocess_image,
    resample_labels,
    resize_image,
    resize_interpolation,
    upsample_logits,
)
from dovit.data import EvalTransform

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("source, target, expected", [
    ((720, 960), (360, 480), cv2.INTER_AREA),     # shrinking
    ((360, 480), (360, 480), cv2.INTER_AREA),     # same size (never resized, see below)
    ((100, 120), (360, 480), cv2.INTER_LINEAR),   # enlarging
    ((720, 200), (360, 480), cv2.INTER_LINEAR),   # taller but narrower: one side grows
    ((200, 960), (360, 480), cv2.INTER_LINEAR),
])
def test_resize_picks_area_when_shrinking_and_linear_when_enlarging(source, target, expected):
    assert resize_interpolation(source, target) == expected


@pytest.mark.parametrize("source", [(720, 960), (100, 120), (720, 200)])
def test_resize_image_is_cv2_with_the_chosen_interpolation(source):
    image = _image(*source)
    expected = cv2.resize(image, (480, 360), interpolation=resize_interpolation(source, (360, 480)))
    np.testing.assert_array_equal(resize_image(image, (360, 480)), expected)


def test_resize_image_leaves_the_working_size_untouched():
    image = _image(36, 48)
    assert resize_image(image, (36, 48)) is image


def test_normalise_shape_dtype_and_values():
    image = _image(5, 7)
    pixels = normalise(image, MEAN, STD)
    assert pixels.shape == (3, 5, 7) and pixels.dtype == torch.float32
    expected = (image.astype(np.float32) / 255.0 - np.float32(MEAN)) / np.float32(STD)
    np.testing.assert_allclose(pixels.permute(1, 2, 0).numpy(), expected, rtol=1e-6, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(height=st.integers(1, 70), width=st.integers(1, 70), patch=st.sampled_from([1, 4, 16]),
       factor=st.sampled_from([1, 4]))
def test_upsample_and_crop_gives_the_requested_size(height, width, patch, factor):
    grid = (-(-height // patch), -(-width // patch))  # token grid of the padded input
    logits = torch.randn(2, 3, grid[0] * factor, grid[1] * factor)
    assert upsample_logits(logits, (height, width), patch).shape == (2, 3, height, width)


def test_upsample_crops_the_padding_instead_of_squeezing_it_in():
    # Token-grid logits of a 20 x 20 input padded to 32 x 32: the last token covers pixels 16-31, of which
    # 16-19 are real. Upsampling to the padded size then cropping keeps the left column's values at the
    # left; squeezing all of 32 px into 20 would not.
    logits = torch.zeros(1, 1, 2, 2)
    logits[..., 1] = 1.0
    up = upsample_logits(logits, (20, 20), patch_size=16)
    expected = torch.nn.functional.interpolate(logits, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(up, expected[..., :20, :20])
    assert float(up[0, 0, 0, 0]) == 0.0


def test_upsample_is_a_no_op_at_the_size():
    logits = torch.randn(1, 4, 6, 8)
    assert upsample_logits(logits, (6, 8)) is logits


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_logits_to_mask_is_the_argmax(seed):
    logits = torch.randn(2, 5, 6, 9, generator=torch.Generator().manual_seed(seed))
    mask = logits_to_mask(logits)
    assert mask.dtype == torch.int64
    torch.testing.assert_close(mask, logits.argmax(dim=1))
    torch.testing.assert_close(logits_to_mask(logits, (12, 18)), upsample_logits(logits, (12, 18)).argmax(1))


def test_logits_to_mask_breaks_ties_and_nans_as_argmax_does():
    """Ties (rounded logits make many) and NaNs give argmax's index, on contiguous and cropped (strided)
    logits."""
    logits = torch.randn(2, 7, 40, 50, generator=torch.Generator().manual_seed(0)).round()
    logits[0, 3, :5] = float("nan")
    logits[1, :, 7] = 1.0  # a row of full ties
    for view in (logits, logits[..., 3:37, 1:48], logits.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1,
                                                                                                  2)):
        assert torch.equal(logits_to_mask(view), view.argmax(dim=1))


@pytest.mark.parametrize("image_size", [(50, 70), (36, 48), (130, 90)])
def test_predictor_evaluation_and_app_produce_the_same_tensor(tiny_model, image_size):
    """Enlarging, same size and shrinking: one image gives one tensor on every path."""
    image, size = _image(*image_size, seed=1), (36, 48)
    config = tiny_model.config
    reference = preprocess_image(image, size, config.mean, config.std)
    predictor = dovit.Predictor(tiny_model)
    from_predictor = predictor.preprocess(image, size)[0]
    from_evaluation, _ = EvalTransform(size, config.mean, config.std)(image, np.zeros(image_size, np.int64))
    # The app resizes once to the working size, then hands that image to the Predictor.
    from_app = predictor.preprocess(to_working_size(image, size), size)[0]
    for pixels in (from_predictor, from_evaluation, from_app):
        assert torch.equal(pixels, reference)


def test_app_upload_cap_uses_the_same_resize():
    image = _image(400, 300)
    capped, downscaled = fit_within(image, 200)
    assert downscaled and capped.shape == (200, 150, 3)
    np.testing.assert_array_equal(capped, resize_image(image, (200, 150)))


def test_predictor_mask_is_the_argmax_of_the_upsampled_logits(tiny_model):
    image = _image(50, 70, seed=2)
    predictor = dovit.Predictor(tiny_model)
    prediction = predictor.predict(image, xi=1.0, size=(36, 48))
    with torch.inference_mode():
        logits = tiny_model(predictor.preprocess(image, (36, 48)), xi=1.0).logits
    np.testing.assert_array_equal(prediction.mask, logits_to_mask(logits, (50, 70))[0].numpy())


def _smooth_logits(seed: int, batch: int, classes: int, height: int, width: int, cell: int = 6,
                   noise: float = 0.05) -> torch.Tensor:
    """Logits with regions of one class (about ``cell`` pixels across) and boundaries between them."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, classes, max(2, height // cell), max(2, width // cell),
                         generator=generator) * 4
    jitter = torch.randn(batch, classes, height, width, generator=generator) * noise
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear") + jitter


def _near_ties(logits: torch.Tensor, tolerance: float = 1e-5) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W) bool: the top two classes are within ``tolerance``."""
    top2 = logits.topk(2, dim=1).values
    return (top2[:, 0] - top2[:, 1]) <= tolerance


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 2), st.integers(2, 12), st.integers(2, 40), st.integers(2,
                                                                                                         40),
       st.floats(0.3, 5.0), st.floats(0.3, 5.0))
def test_label_space_mask_equals_upsample_then_argmax(seed, batch, classes, height, width, scale_y, scale_x):
    """The convexity argument of resample_labels, on any scale (up or down, non-integer), any batch: the mask
    equals the bilinear-upsample-then-argmax one wherever the reference is not a near-tie (float rounding)."""
    logits = _smooth_logits(seed, batch, classes, height, width)
    size = (max(1, round(height * scale_y)), max(1, round(width * scale_x)))
    reference_logits = upsample_logits(logits, size)
    with pytest.MonkeyPatch.context() as patch:  # always take the label path
        patch.setattr(preprocess, "LABEL_SPACE_MIN_SCALE", 0.0)
        patch.setattr(preprocess, "LABEL_SPACE_MAX_MIXED", 1.0)
        mask = resample_labels(logits, size)
    assert mask.dtype == torch.int64 and mask.shape == (batch, *size)
    differ = mask != reference_logits.argmax(dim=1)
    assert not bool((differ & ~_near_ties(reference_logits)).any())


def test_label_space_mask_interpolates_only_mixed_blocks_and_matches_on_ties(monkeypatch):
    """Rounded logits tie everywhere: ties still break as argmax's (first maximal class), and a large upsample
    of segmenter-like logits takes the label path (the full upsample is never called) with masks equal."""
    # 4 % mixed 2 x 2 blocks (CamVid frames: 2-3 %)
    logits = _smooth_logits(3, 2, 5, 90, 120, cell=30, noise=0.001)
    calls = []
    monkeypatch.setattr(preprocess, "upsample_logits", lambda *args: calls.append(args)
                        or upsample_logits(*args))
    mask = logits_to_mask(logits, (270, 360))
    assert calls == []  # 9x the pixels and few mixed blocks: label space
    reference = upsample_logits(logits, (270, 360))
    assert int((mask != reference.argmax(dim=1)).sum()) == 0
    rounded = logits.round()  # many exact ties between classes
    monkeypatch.setattr(preprocess, "LABEL_SPACE_MAX_MIXED", 1.0)
    reference = upsample_logits(rounded, (270, 360))
    differ = logits_to_mask(rounded, (270, 360)) != reference.argmax(dim=1)
    assert not bool((differ & ~_near_ties(reference)).any())


def test_label_space_falls_back_to_the_upsample_where_it_does_not_pay(monkeypatch):
    """A small change of size, many mixed blocks, and NaN/inf logits take the plain upsample (same mask)."""
    calls = []
    monkeypatch.setattr(preprocess, "upsample_logits", lambda *args: calls.append(args)
                        or upsample_logits(*args))
    smooth = _smooth_logits(4, 1, 5, 40, 50, cell=20)
    noisy = torch.randn(1, 5, 40, 50, generator=torch.Generator().manual_seed(5))
    broken = smooth.clone()
    broken[0, 2, 10:12, 5:9] = float("nan")
    broken[0, 1, 30, 30] = float("inf")
    for logits, size in ((smooth, (50, 60)), (noisy, (160, 200)), (broken, (160, 200))):
        calls.clear()
        mask = logits_to_mask(logits, size)
        assert len(calls) == 1
        assert torch.equal(mask, upsample_logits(logits, size).argmax(dim=1))


# ---------------------------------------------------------------- the working size: the image's own aspect
@functools.cache
def _shipped_input() -> tuple[tuple[int, int], int]:
    """The default checkpoint's input size and patch size (read, not assumed)."""
    model = dovit.Predictor.from_checkpoint().model
    return tuple(model.config.input_size), int(model.patch_size)


def _grid(size: tuple[int, int], patch: int) -> tuple[int, int]:
    return -(-size[0] // patch), -(-size[1] // patch)


@settings(deadline=None)  # the first example loads the checkpoint
@given(st.integers(1, 400))
def test_the_checkpoints_aspect_gets_exactly_its_input_size(scale):
    input_size, patch = _shipped_input()
    divisor = np.gcd(*input_size)
    image = (input_size[0] // divisor * scale, input_size[1] // divisor * scale)
    assert aspect_working_size(image, input_size, patch) == input_size


@pytest.mark.parametrize("image", [(540, 960), (960, 540), (1080, 1920), (480, 640 + 17)])
def test_other_aspects_keep_their_shape_at_the_token_budget(image):
    input_size, patch = _shipped_input()
    size = aspect_working_size(image, input_size, patch)
    grid, budget = _grid(size, patch), np.prod(_grid(input_size, patch))
    assert abs((grid[0] / grid[1]) / (image[0] / image[1]) - 1) < 0.12
    assert abs(grid[0] * grid[1] / budget - 1) < 0.15
    assert abs(size[0] * size[1] / np.prod(input_size) - 1) < 0.01  # the same area in pixels


def test_portrait_is_the_transposed_landscape():
    input_size, patch = _shipped_input()
    landscape = aspect_working_size((540, 960), input_size, patch)
    assert aspect_working_size((960, 540), input_size, patch) == landscape[::-1]
    assert landscape[0] < landscape[1]


@pytest.mark.parametrize("image", [(1, 1), (1, 2000), (3000, 2), (5, 7)])
def test_tiny_and_thin_images_get_at_least_one_patch_a_side(image):
    size = aspect_working_size(image, (64, 96), 16)
    assert min(size) >= 16
    assert (size[0] >= size[1]) == (image[0] >= image[1]) or size[0] == size[1] == 16


@pytest.mark.parametrize("image", [(10, 1000), (1000, 10), (400, 1600), (100, 4000)])
def test_extreme_aspects_are_squeezed_to_the_widest_working_shape(image):
    """A 10 x 1000 banner does not get a 4157-px-wide working size: beyond 4:1 the aspect is capped."""
    input_size, patch = _shipped_input()
    size = aspect_working_size(image, input_size, patch)
    assert max(size) / min(size) == pytest.approx(MAX_WORKING_ASPECT, rel=0.01)
    assert (size[0] > size[1]) == (image[0] > image[1])
    assert abs(size[0] * size[1] / np.prod(input_size) - 1) < 0.01


def test_a_size_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        aspect_working_size((0, 10), (64, 96), 16)
