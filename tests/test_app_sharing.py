"""app.sharing: a deep link restores the page, Copy link writes what the page shows (handlers called
directly)."""
import shutil
from types import SimpleNamespace

import cv2
import gradio as gr
import numpy as np
import pytest

from app import controls
from app.links import UPLOAD_NOTE
from app.sharing import LinkedState, LinkHandlers
from app.studio import Studio
from dovit import Predictor


@pytest.fixture(scope="module")
def setup(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("examples")
    rng = np.random.default_rng(0)
    examples = []
    for name in ("a.png", "b.png"):
        examples.append(folder / name)
        cv2.imwrite(str(examples[-1]), rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    studio = Studio(Predictor(tiny_model), image_dirs=[folder], examples=examples)
    return studio, LinkHandlers(studio), examples


def request(**query):
    return SimpleNamespace(query_params=query)


def test_a_link_sets_example_size_xi_tab_and_token(setup):
    studio, handlers, examples = setup
    linked = handlers.on_load(request(example="1", xi="0.95", size="32x48", tab="confidence", token="2,3"))
    assert linked.image["value"] == str(examples[1]) and linked.size["value"] == "32x48"
    assert linked.xi_box == 0.95 and linked.xi_slider == pytest.approx(controls.position_from_xi(0.95))
    assert linked.tabs == gr.update(selected="confidence") and linked.open_tab == "confidence"
    assert (linked.row, linked.col) == (2, 3) and linked.notices == ""


def test_a_plain_page_changes_nothing_and_bad_values_say_why(setup):
    _, handlers, _ = setup
    linked = handlers.on_load(request())
    assert linked == LinkedState.filled(gr.update(), open_tab="token-pass", notices="")
    notices = handlers.on_load(request(example="7", size="33x47")).notices
    assert "examples 0 to 1" in notices and "needs an example image" in notices
    assert "not offered" in handlers.on_load(request(example="0", size="33x47")).notices


def test_copy_link_names_the_clicked_example_and_warns_for_uploads(setup, tmp_path):
    studio, handlers, examples = setup
    copy = tmp_path / "cache" / examples[1].name  # gradio hands the handler a cached copy of the example
    copy.parent.mkdir()
    shutil.copy(examples[1], copy)
    studio.image_dirs.append(copy.parent)
    session = studio.on_image(str(copy), "32x48", 0.9, 0.5, None).session
    assert session.example == 1
    copied = handlers.on_copy(0.93, "32x48", "halting-depth", 2, 3, 4, session, "http://127.0.0.1:7860/")
    assert copied.link == "http://127.0.0.1:7860/?example=1&xi=0.93&size=32x48&tab=halting-depth&token=2,3"
    assert copied.note == "Link copied."
    upload = tmp_path / "mine.png"
    cv2.imwrite(str(upload), np.zeros((64, 96, 3), np.uint8))
    studio.image_dirs.append(tmp_path)
    session = studio.on_image(str(upload), "64x96", 0.9, 0.5, None).session
    copied = handlers.on_copy(0.9, "64x96", "token-pass", None, None, 1, session, "http://h/")
    assert copied.link == "http://h/?xi=0.9&tab=token-pass" and UPLOAD_NOTE in copied.note
    assert handlers.on_tab(SimpleNamespace(value="Dense vs DoViT")) == "dense-vs-dovit"


def test_a_lesson_link_opens_its_step_on_the_first_example_and_copies_back(setup):
    studio, handlers, examples = setup
    linked = handlers.on_load(request(lesson="3"))
    assert linked.lesson == 3 and linked.tabs == gr.update(selected="lesson") and linked.open_tab == "lesson"
    assert linked.image["value"] == str(examples[0])  # a link from a slide opens on an image
    assert handlers.on_load(request(lesson="3", example="1")).image["value"] == str(examples[1])
    session = studio.on_image(str(examples[1]), "32x48", 0.9, 0.5, None).session
    copied = handlers.on_copy(0.9, "32x48", "lesson", None, None, 5, session, "http://h/")
    assert copied.link == "http://h/?example=1&xi=0.9&size=32x48&tab=lesson&lesson=5"


def test_export_button_and_api_write_a_zip_of_the_current_view(setup):
    import zipfile

    from app.sharing import ExportHandlers

    studio, _, examples = setup
    exports = ExportHandlers(studio)
    with pytest.raises(gr.Error, match="Upload an image first"):
        exports.on_export(0.9, 0.5, None)
    session = studio.on_image(str(examples[0]), "64x96", 0.9, 0.5, None).session
    path = exports.on_export(0.4, 0.5, session)
    assert path.endswith("dovit_xi0.4_64x96.zip")
    with zipfile.ZipFile(path) as archive:
        assert "trace/tokens.csv" in archive.namelist() and "ξ = 0.4" in archive.read("README.md").decode()
        assert {"pass.gif", "pass.mp4"} <= set(archive.namelist())
    with zipfile.ZipFile(exports.api_export(str(examples[1]), None)) as archive:
        assert f"ξ = {studio.config.default_xi:g}" in archive.read("README.md").decode()
