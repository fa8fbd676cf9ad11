"""app.analysis: the display size, and every view of one forward drawn over the photo at that size while the
model sees it at its working size (no extra model work per slider move)."""
import cv2
import numpy as np
import pytest

from app.analysis import DISPLAY_MAX_SIDE, display_image, display_size, render_views
from app.studio import Studio
from dovit import Predictor
from dovit.core.token_grid import token_index_map
from dovit.viz import drawing


@pytest.mark.parametrize("image, working, expected", [
    ((540, 960), (312, 554), (540, 960)),  # a 16:9 photo: its own size
    ((360, 480), (360, 480), (360, 480)),  # a CamVid frame at the checkpoint's size
    ((1152, 2048), (312, 554), (576, 1024)),  # capped on the longer side, aspect kept
    ((2048, 1152), (554, 312), (1024, 576)),  # portrait
    ((48, 72), (64, 96), (64, 96)),  # smaller than the working size: enlarged to it
    ((60, 80), None, (60, 80)),
])
def test_display_size_is_the_photos_own_capped_and_never_below_the_working_size(image, working, expected):
    shown = display_size(image, working)
    assert shown == expected and max(shown) <= DISPLAY_MAX_SIDE
    assert abs(shown[0] / shown[1] - image[0] / image[1]) < 2 / min(shown)  # the aspect, up to rounding


def test_display_image_is_the_image_itself_when_it_fits():
    image = np.zeros((540, 960, 3), np.uint8)
    assert display_image(image, (312, 554)) is image
    assert display_image(np.zeros((1152, 2048, 3), np.uint8), (312, 554)).shape == (576, 1024, 3)


@pytest.fixture(scope="module")
def photo():
    """A 960 x 540 photo: a bright sky over a textured road."""
    image = np.random.default_rng(0).integers(0, 255, (540, 960, 3), dtype=np.uint8)
    image[:200] = (200, 220, 250)
    return image


def test_views_of_a_16_9_photo_come_back_at_its_size(tiny_model, photo):
    predictor = Predictor(tiny_model)
    working = predictor.working_size(image_size=photo.shape[:2])
    views = render_views(predictor, photo, 0.5, working_size=working)
    assert views.prediction.working_size == working and views.prediction.mask.shape == photo.shape[:2]
    images = [image for image, _ in views.group_overlays] + [views.color_mask, views.mask_overlay,
                                                              views.halting, views.dense_color_mask,
                                                              views.disagreement]
    assert all(image.shape == photo.shape for image in images)
    assert all(heat.shape == (540, 960 + 64, 3) for heat, _ in views.heatmaps)
    # the halting view colours each pixel by its own token's depth (away from the drawn grid lines)
    trace = views.prediction.trace
    index = token_index_map(photo.shape[:2], working, trace.grid, tiny_model.patch_size)
    colours = drawing.depth_colors(len(trace.groups))[trace.halting_depth.ravel()[index] - 1].astype(float)
    expected = 0.35 * photo + 0.65 * colours  # halting_map's blend
    margin = 2 * drawing.line_width(photo.shape[:2], working) + 1  # clear of the token's grid lines
    interior = cv2.erode((index == index[300, 500]).astype(np.uint8), np.ones((margin, margin), np.uint8)) > 0
    assert interior.sum() > 1000
    assert np.abs(views.halting[interior] - expected[interior]).max() <= 1


def test_a_slider_move_on_a_photo_reuses_the_cached_forward(tiny_model, photo, monkeypatch):
    predictor = Predictor(tiny_model)
    working = predictor.working_size(image_size=photo.shape[:2])
    render_views(predictor, photo, 0.5, working_size=working)
    monkeypatch.setattr(predictor.model, "prefix", None)  # preparing the image again would fail now
    again = render_views(predictor, photo, 0.9, working_size=working)
    assert again.prediction.xi == 0.9 and again.halting.shape == photo.shape


def test_the_studio_draws_a_16_9_upload_at_its_own_size(tiny_model, photo, tmp_path):
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    studio = Studio(Predictor(tiny_model), image_dirs=[tmp_path])
    outputs = studio.on_image(str(path), studio.default_size_value, 0.5, 0.5, None)
    session, views = outputs.session, outputs.views
    assert session.display.shape == photo.shape and session.working.shape[:2] == session.size
    assert views.color_mask.shape == views.halting.shape == views.disagreement.shape == photo.shape
    assert all(update["value"].shape[:2] == (540, 960) for update in views.groups if update["visible"])
