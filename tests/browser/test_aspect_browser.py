"""Real browser: a 960×540 (16:9) photo keeps its shape. Uploaded in Chromium, the studio works at the photo's
own aspect with the checkpoint's token budget and shows its views at the photo's own size; the served /trace
gives that grid, and its halting_by_class counts every token once."""
import cv2
import numpy as np
import pytest
from app_driver import STREET, chromium, open_app, require_browser, upload
from inspector_driver import IMAGE_LOADED_JS

require_browser()


@pytest.fixture(scope="module")
def wide_photo(tmp_path_factory):
    """The project's street scene widened to 960×540 (16:9), as a dashcam would frame it."""
    street = cv2.imread(str(STREET))
    path = tmp_path_factory.mktemp("wide") / "wide_street.png"
    cv2.imwrite(str(path), cv2.resize(street, (960, 540), interpolation=cv2.INTER_LINEAR))
    return path


@pytest.fixture(scope="module")
def default_model_url():
    """The studio on the shipped default checkpoint (its 360×480 token budget), served on loopback."""
    from app_driver import serve_on_loopback

    from app.ui import build_demo
    from dovit import Predictor

    demo = build_demo(Predictor.from_checkpoint(), examples_dir=None)
    yield serve_on_loopback(demo)
    demo.close()


def grid_is_16_9_at_the_budget(grid, budget_grid):
    rows, cols = grid
    aspect_error = abs((cols / rows) / (16 / 9) - 1)
    budget_error = abs(rows * cols / (budget_grid[0] * budget_grid[1]) - 1)
    return aspect_error <= 0.12 and budget_error <= 0.15, (aspect_error, budget_error)


def test_a_16_9_photo_keeps_its_shape_in_the_studio_and_in_trace(default_model_url, wide_photo):
    from gradio_client import Client, handle_file

    from dovit.core.checkpoint import load_checkpoint
    from dovit.core.predictor import default_checkpoint

    model = load_checkpoint(default_checkpoint())
    budget_grid = [-(-side // model.patch_size) for side in model.config.input_size]  # 23 x 30
    with chromium() as browser:
        page = open_app(browser, default_model_url)
        readouts = upload(page, wide_photo)
        size = page.locator("#working-size input").input_value()
        page.wait_for_function(IMAGE_LOADED_JS, arg="#token-group-1")
        # the views come back at the photo's own size, not the working size
        shown = page.evaluate("() => { const image = document.querySelector('#token-group-1 img');"
                              " return [image.naturalWidth, image.naturalHeight]; }")
    assert shown == [960, 540]
    height, width = (int(v) for v in size.split("(")[0].replace("×", "x").replace(" ", "").split("x"))
    assert abs((width / height) / (16 / 9) - 1) < 0.02 and f"{height}×{width}" in readouts
    trace = Client(default_model_url, verbose=False).predict(handle_file(wide_photo), 1.0, api_name="/trace")
    ok, errors = grid_is_16_9_at_the_budget(trace["grid"], budget_grid)
    assert ok, f"grid {trace['grid']} vs budget {budget_grid}: aspect, budget errors {errors}"
    counts = np.array(list(trace["halting_by_class"].values()))
    assert counts.sum() == trace["grid"][0] * trace["grid"][1] and (counts >= 0).all()
