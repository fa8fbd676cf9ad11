"""app.studio.Studio handlers called directly (no server, no browser), build_demo, and app.py's flags."""
import subprocess
import sys
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pytest

from app import controls
from app.state import ViewSlots
from app.studio import Studio
from app.ui import build_demo
from dovit import Predictor

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    """The folder the handlers may read images from (gradio's upload folder, when served)."""
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def studio(tiny_model, uploads):
    return Studio(Predictor(tiny_model), image_dirs=[uploads])


@pytest.fixture
def tmp_path(uploads, request):
    """A fresh folder per test inside ``uploads``, so that the handlers may read what a test writes."""
    folder = uploads / request.node.name.replace("[", "_").replace("]", "_")
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def street_png(uploads):
    """A 60 x 80 PNG with a bright top half (sky-like) and a textured bottom."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    image[:30] = (200, 220, 250)
    path = uploads / "street.png"
    cv2.imwrite(str(path), image)
    return path


def load(studio, path, xi=0.95) -> tuple:
    """(session, notices, ViewSlots) of an image."""
    outputs = studio.on_image(str(path), studio.default_size_value, xi, 0.5, None)
    return outputs.session, outputs.notices, outputs.views


def named(views: ViewSlots) -> dict:
    """View outputs by name ('group_1'...); captioned images (gr.update) as (image, caption)."""
    values = dict(zip(views.names(), views.flat(), strict=True))
    return {k: (v["value"], v["label"]) if isinstance(v, dict) and "value" in v else v
            for k, v in values.items()}


def sweep(studio, xi, session, progress=lambda *args, **kwargs: None):
    """Run the sweep generator to its end; its last outputs (figure, session)."""
    *_, last = studio.on_sweep(xi, session, progress=progress)
    return last.sweep_plot, last.session


def test_upload_draws_every_view(studio, street_png):
    session, notices, views = load(studio, street_png)
    assert views.names() == studio.view_names() and len(views.flat()) == len(studio.empty_views().flat())
    views = named(views)
    height, width = session.size  # a 4:3 photo at this 2:3 checkpoint: its own aspect, not squeezed
    assert session.size == studio.predictor.working_size(image_size=(60, 80)) != studio.default_size
    assert "Image 80×60 px" in notices and "GFLOPs" in views["readouts"] and "speedup" in views["readouts"]
    groups = [views[f"group_{g}"] for g in range(1, studio.num_groups + 1)]
    confidences = [views[f"confidence_{d}"] for d in range(1, studio.num_groups)]
    assert studio.num_groups == len(studio.predictor.model.decision_layers) + 1
    assert groups[0][1].startswith("B1 · blocks 1") and "after block" in confidences[0][1]
    for name in ("mask_overlay", "color_mask", "halting", "dense_mask", "disagreement"):
        assert views[name].shape == (height, width, 3) and views[name].dtype == np.uint8
    assert groups[-1][0].shape == (height, width, 3) and confidences[0][0].shape == (height, width + 64, 3)
    assert "legend-swatch" in views["legend"] and "ran all blocks" in views["halting_legend"]
    assert "of pixels" in views["agreement"] and views["tokens_plot"].data and views["sweep_plot"] is None
    by_class = views["halting_by_class"].data  # stacked bars: one trace per halting group, every token once
    assert len(by_class) == studio.num_groups and sum(sum(bar.y) for bar in by_class) == (
        session.prediction.trace.num_tokens)


def test_play_renders_the_token_pass_as_an_animated_gif(studio, street_png):
    from PIL import Image

    from app.tabs.views import PassPlayerHandlers

    player = PassPlayerHandlers(studio)
    with pytest.raises(gr.Error, match="Upload an image first"):
        player.on_play(0.9, None)
    session, _, _ = load(studio, street_png)
    gif = Image.open(player.on_play(0.5, session))
    assert gif.format == "GIF" and gif.n_frames >= studio.num_groups + 1
    with pytest.raises(gr.Error):
        player.on_play("0.5", session)  # ξ must be a number
    assert player.on_clear() is None


def test_moving_xi_changes_the_readouts(studio, street_png):
    session, _, views = load(studio, street_png)
    dense, low = studio.on_release(1.0, 0.5, session), studio.on_release(0.0, 0.5, session)
    assert (dense.xi_box, low.xi_box) == (1.0, 0.0)
    dense_readouts, low_readouts = dense.refresh.views.readouts, low.refresh.views.readouts
    assert dense_readouts != low_readouts and "B2: 0 (0%)" in low_readouts
    live = studio.on_drag(0.5, 0.5, session)  # tiny model: fast enough to draw live
    assert live.xi_box == controls.xi_from_position(0.5) and isinstance(live.refresh.views.readouts, str)


def test_dragging_on_a_slow_machine_updates_only_xi(studio, street_png, monkeypatch):
    session, _, _ = load(studio, street_png)
    monkeypatch.setattr("app.studio.LIVE_REFRESH_MAX_MS", 0.0)  # every refresh now counts as too slow
    dragged = studio.on_drag(0.4, 0.5, session)
    assert dragged.xi_box == controls.xi_from_position(0.4)
    assert all(view == gr.skip() for view in dragged.refresh.views.flat())


def test_number_box_reset_size_and_opacity(studio, street_png):
    session, _, _ = load(studio, street_png)
    typed = studio.on_xi_box(0.985, 0.5, session)
    assert typed.xi_slider == controls.position_from_xi(0.985) and "ξ = 0.985" in typed.refresh.views.readouts
    reset = studio.on_reset(0.5, session)
    xi = reset.xi_box
    assert xi == studio.config.default_xi and reset.xi_slider == controls.position_from_xi(xi)
    assert f"ξ = {xi:.4g}" in reset.refresh.views.readouts
    views = studio.on_size("32x48", 0.9, 0.5, session).views
    assert session.working.shape == (32, 48, 3) and "32×48" in views.readouts
    # the model sees 32 x 48; the views stay at the photo's own 60 x 80
    assert views.color_mask.shape == session.display.shape == (60, 80, 3)
    transparent = studio.on_opacity(0.0, session)
    np.testing.assert_array_equal(transparent, session.display)


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "abc"])
def test_bad_xi_is_a_clear_gradio_error(studio, street_png, bad):
    session, _, _ = load(studio, street_png)
    with pytest.raises(gr.Error, match="xi must be a number in"):
        studio.on_xi_box(bad, 0.5, session)
    with pytest.raises(gr.Error, match="xi must be a number in"):
        studio.api_predict(str(street_png), bad)


def test_bad_uploads_are_clear_gradio_errors(studio, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((8, 40, 3), np.uint8))
    for path, message in ((text, "not an image"), (empty, "empty"), (small, "smaller than one")):
        with pytest.raises(gr.Error, match=message):
            load(studio, path)
        with pytest.raises(gr.Error, match=message):
            studio.api_predict(str(path), 0.9)
    cleared = studio.on_image(None, studio.default_size_value, 0.9, 0.5, None)
    assert cleared.session is None and cleared.views.readouts.startswith("Upload an image")


def test_large_grey_16_bit_upload_is_converted_with_notices(studio, tmp_path):
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), np.tile(np.linspace(0, 65535, 2100).astype(np.uint16), (300, 1)))
    session, notices, views = load(studio, path)
    assert "Image 2048×293 px" in notices and "16-bit" in notices and "Greyscale" in notices
    assert "downscaled from 2100×300 to 2048×293" in notices and session.image.shape == (293, 2048, 3)
    assert "GFLOPs" in views.readouts


def test_sweep_and_its_marker(studio, street_png):
    session, _, _ = load(studio, street_png)
    with pytest.raises(gr.Error, match="Upload an image first"):
        sweep(studio, 0.9, None)
    steps = []
    figure, session = sweep(studio, 0.9, session, progress=lambda value, desc=None: steps.append(value))
    assert len(session.sweep) == len(controls.sweep_values()) and steps[-1] == (len(session.sweep),) * 2
    assert [shape.x0 for shape in figure.layout.shapes] == [controls.position_from_xi(0.9, snap=False)]
    views = studio.on_release(controls.position_from_xi(0.99), 0.5, session).refresh.views
    assert views.sweep_plot is not None  # the sweep plot follows ξ without recomputing


def test_api_predict_returns_colour_mask_and_summary(studio, street_png):
    mask, summary = studio.api_predict(str(street_png), 0.9)
    assert mask.shape == (60, 80, 3)
    for key in ("gflops", "dense_gflops", "kept_tokens", "latency_ms", "dense_latency_ms", "xi"):
        assert key in summary
    assert summary["xi"] == 0.9 and summary["kept_tokens"][0] == summary["num_tokens"]
    assert studio.api_predict(str(street_png), None)[1]["xi"] == studio.config.default_xi


def test_api_trace_gives_the_token_pass_as_json(studio, street_png):
    import json

    trace = studio.api_trace(str(street_png), 0.3)
    rows, cols = trace["grid"]
    prediction = studio.predictor.predict(cv2.cvtColor(cv2.imread(str(street_png)), cv2.COLOR_BGR2RGB),
                                          xi=0.3)  # at the image's own aspect
    assert trace["decision_layers"] == [3, 6, 9] and len(trace["confidence"]) == 3
    assert all(np.asarray(c).shape == (rows, cols) for c in trace["confidence"])
    assert np.array_equal(trace["halting_group"], prediction.trace.halting_depth)
    groups = len(trace["kept_tokens"])
    assert set(np.unique(trace["halting_group"])) <= set(range(1, groups + 1))
    ran_all = (np.asarray(trace["halting_group"]) == groups).sum()
    assert ran_all == trace["kept_tokens"][-1]  # tokens that ran every block are the last group's
    assert trace["gflops"] < trace["dense_gflops"] and trace["xi"] == 0.3
    json.dumps(trace)


def test_build_demo_offers_only_predict_trace_inspect_token_and_video_as_apis(tiny_model, tmp_path):
    cv2.imwrite(str(tmp_path / "example.png"), np.zeros((32, 32, 3), np.uint8))
    app = build_demo(Predictor(tiny_model), examples_dir=tmp_path)
    public = [fn.api_name for fn in app.blocks.fns.values() if fn.api_visibility != "private"]
    assert sorted(public) == ["analyze_video", "export", "inspect_token", "predict", "trace"]
    assert str(tmp_path.resolve()) in app.example_dirs
    assert any(Path(d) == tmp_path.resolve() for d in app.studio.image_dirs)


def test_app_py_flags():
    result = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    for flag in ("--checkpoint", "--export", "--host", "--port", "--examples", "--frames-root", "--share",
                 "--threads"):
        assert flag in result.stdout
    refused = subprocess.run([sys.executable, "app.py", "--export", str(ROOT / "assets")], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "not an export folder" in refused.stderr


def test_colour_blind_palette_redraws_masks_and_legend_for_this_session(studio, street_png):
    from dovit.viz.drawing import COLOR_BLIND_SAFE

    session = studio.on_image(str(street_png), studio.default_size_value, 0.9, 0.5, None).session
    dataset_mask = session.color_mask.copy()
    refreshed = studio.on_palette("colour-blind safe", 0.9, 0.5, session)
    session = refreshed.session
    assert session.palette == "colour-blind safe" and not (session.color_mask == dataset_mask).all()
    used = {tuple(c) for c in session.color_mask.reshape(-1, 3)}
    assert used <= set(COLOR_BLIND_SAFE)
    assert "rgb(204, 102, 119)" in refreshed.views.legend  # class 0's swatch
    again = studio.on_image(str(street_png), studio.default_size_value, 0.9, 0.5, session).session
    assert again.palette == "colour-blind safe"  # a new image keeps the tab's colours
    with pytest.raises(gr.Error, match="unknown palette"):
        studio.on_palette("rainbow", 0.9, 0.5, session)


def test_the_size_dropdown_defaults_to_the_images_aspect_and_keeps_a_scale_picked_by_hand(studio, tmp_path):
    wide = tmp_path / "wide.png"
    cv2.imwrite(str(wide), np.random.default_rng(3).integers(0, 255, (54, 96, 3), dtype=np.uint8))
    aspect = controls.default_size_value(studio.default_size, studio.patch, (54, 96))
    outputs = studio.on_image(str(wide), studio.default_size_value, 0.9, 0.5, None)
    session, size_update = outputs.session, outputs.size
    offered = [value for _, value in size_update["choices"]]
    assert size_update["value"] == aspect != studio.default_size_value
    assert studio.default_size_value in offered  # the checkpoint's own size stays selectable
    assert session.size == controls.parse_size(aspect, studio.default_size)
    half = offered[0]  # the 0.5x scale of the checkpoint's size, picked by hand, stays for the next image
    assert studio.on_image(str(wide), half, 0.9, 0.5, session).size["value"] == half


def test_api_trace_of_a_16_9_photo_follows_its_own_grid(tmp_path, uploads):
    """The default checkpoint's /trace of a 960 x 540 photo: its grid within 12 % of 16:9 and within 15 % of
    the checkpoint's token budget."""
    shipped = Studio(Predictor.from_checkpoint(), image_dirs=[uploads])
    photo = tmp_path / "photo.png"
    street = cv2.imread(str(ROOT / "assets" / "synthetic_street.png"))
    cv2.imwrite(str(photo), cv2.resize(street, (960, 540), interpolation=cv2.INTER_LINEAR))
    trace = shipped.api_trace(str(photo), None)
    rows, cols = trace["grid"]
    budget = np.prod([-(-side // shipped.patch) for side in shipped.default_size])
    assert abs((rows / cols) / (540 / 960) - 1) < 0.12 and abs(rows * cols / budget - 1) < 0.15
    assert np.asarray(trace["halting_group"]).shape == (rows, cols)
    assert trace["kept_tokens"][0] == rows * cols
