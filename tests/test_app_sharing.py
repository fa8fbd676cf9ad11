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
from app.sharing import LinkHandlers
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
    image, size, xi, slider, tab, open_tab, row, col, notices = handlers.on_load(
        request(example="1", xi="0.95", size="32x48", tab="confidence", token="2,3"))
    assert image["value"] == str(examples[1]) and size["value"] == "32x48"
    assert xi == 0.95 and slider == pytest.approx(controls.position_from_xi(0.95))
    assert tab == gr.update(selected="confidence") and open_tab == "confidence" and (row, col) == (2, 3)
    assert notices == ""


def test_a_plain_page_changes_nothing_and_bad_values_say_why(setup):
    _, handlers, _ = setup
    values = handlers.on_load(request())
    assert values[:5] == [gr.update()] * 5 and values[5] == "token-pass" and values[-1] == ""
    notices = handlers.on_load(request(example="7", size="33x47"))[-1]
    assert "examples 0 to 1" in notices and "needs an example image" in notices
    assert "not offered" in handlers.on_load(request(example="0", size="33x47"))[-1]


def test_copy_link_names_the_clicked_example_and_warns_for_uploads(setup, tmp_path):
    studio, handlers, examples = setup
    copy = tmp_path / "cache" / examples[1].name  # gradio hands the handler a cached copy of the example
    copy.parent.mkdir()
    shutil.copy(examples[1], copy)
    studio.image_dirs.append(copy.parent)
    session = studio.on_image(str(copy), "32x48", 0.9, 0.5, None)[0]
    assert session.example == 1
    link, note = handlers.on_copy(0.93, "32x48", "halting-depth", 2, 3, session, "http://127.0.0.1:7860/")
    assert link == "http://127.0.0.1:7860/?example=1&xi=0.93&size=32x48&tab=halting-depth&token=2,3"
    assert note == "Link copied."
    upload = tmp_path / "mine.png"
    cv2.imwrite(str(upload), np.zeros((64, 96, 3), np.uint8))
    studio.image_dirs.append(tmp_path)
    session = studio.on_image(str(upload), "64x96", 0.9, 0.5, None)[0]
    link, note = handlers.on_copy(0.9, "64x96", "token-pass", None, None, session, "http://h/")
    assert link == "http://h/?xi=0.9&tab=token-pass" and UPLOAD_NOTE in note
    assert handlers.on_tab(SimpleNamespace(value="Dense vs DoViT")) == "dense-vs-dovit"


def test_export_button_and_api_write_a_zip_of_the_current_view(setup):
    import zipfile

    from app.sharing import ExportHandlers

    studio, _, examples = setup
    exports = ExportHandlers(studio)
    with pytest.raises(gr.Error, match="Upload an image first"):
        exports.on_export(0.9, 0.5, None)
    session = studio.on_image(str(examples[0]), "64x96", 0.9, 0.5, None)[0]
    path = exports.on_export(0.4, 0.5, session)
    assert path.endswith("dovit_xi0.4_64x96.zip")
    with zipfile.ZipFile(path) as archive:
        assert "trace/tokens.csv" in archive.namelist() and "ξ = 0.4" in archive.read("README.md").decode()
        assert {"pass.gif", "pass.mp4"} <= set(archive.namelist())
    with zipfile.ZipFile(exports.api_export(str(examples[1]), None)) as archive:
        assert f"ξ = {studio.config.default_xi:g}" in archive.read("README.md").decode()
