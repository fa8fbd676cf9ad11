"""Real browser: Debian Chromium (Playwright) uploads an image, drags ξ, checks that the readouts change,
and saves a screenshot (to $DOVIT_APP_SCREENSHOT when set, else to the test's tmp folder)."""
import os
from pathlib import Path

import cv2
import pytest
from app_driver import (
    chromium,
    drag_xi,
    open_app,
    require_browser,
    serve_on_loopback,
    snapshot_webcam,
    upload,
    xi_box_value,
)

require_browser()

CAMVID_IMAGE = Path(__file__).resolve().parents[3] / "shared/data/camvid/val/0016E5_07959.png"


@pytest.fixture(scope="module")
def app_url(tiny_model, tmp_path_factory):
    import dovit
    from app.ui import build_demo

    checkpoint = dovit.save_checkpoint(tiny_model, tmp_path_factory.mktemp("checkpoint"))
    demo = build_demo(dovit.Predictor.from_checkpoint(checkpoint))
    yield serve_on_loopback(demo)
    demo.close()


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    """A CamVid image when the shared data is there, else the project's synthetic street scene."""
    if CAMVID_IMAGE.exists():
        return CAMVID_IMAGE
    from assets.make_street_scene import street_scene

    path = tmp_path_factory.mktemp("image") / "street.png"
    cv2.imwrite(str(path), cv2.cvtColor(street_scene(), cv2.COLOR_RGB2BGR))
    return path


def test_upload_drag_xi_readouts_change_and_screenshot(app_url, image_path, tmp_path):
    with chromium() as browser:
        requests = []
        page = open_app(browser, app_url, on_request=requests.append)
        page.locator("button.gallery-item").first.click()  # the examples gallery: assets/ first
        page.wait_for_function("document.querySelector('#readouts').innerText.includes('GFLOPs')")
        first = upload(page, image_path)
        assert "ξ = 0.95" in first and "GFLOPs" in first
        low = drag_xi(page, 0.02)  # ξ near 0: every token stops at the first decision
        assert low != first and xi_box_value(page) < 0.1
        assert "B2: 0 (0%)" in low
        dense = drag_xi(page, 1.0)  # ξ = 1: the dense model, nothing stops
        assert xi_box_value(page) == 1.0 and "100.0%" in dense and dense != low
        screenshot = Path(os.environ.get("DOVIT_APP_SCREENSHOT", tmp_path / "app.png"))
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 10_000
        outside = {url for url in requests if not url.startswith(("http://127.0.0.1", "data:", "blob:"))}
        assert not outside, f"the page reached outside 127.0.0.1: {sorted(outside)[:5]}"


def test_bad_upload_tells_the_user_and_webcam_snapshot_works(app_url, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is not an image")
    with chromium(fake_camera=True) as browser:
        page = open_app(browser, app_url)
        page.set_input_files("#input-image input[type=file]", str(not_an_image))
        page.get_by_text("not an image we can read").first.wait_for()  # the error toast
        assert "GFLOPs" in snapshot_webcam(page)  # Chromium's fake camera pattern
        assert "Image" in page.inner_text("#notices")
