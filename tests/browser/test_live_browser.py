"""Real browser: the Live tab streams Chromium's fake camera, fed a Y4M clip of assets/synthetic_street.png,
through the int8 model frame by frame; frames are processed and the frame rate shown."""

import re

import cv2
import numpy as np
import pytest
from app_driver import (
    CHROMIUM,
    CHROMIUM_ARGS,
    FAKE_CAMERA_ARGS,
    STREET,
    TIMEOUT_MS,
    require_browser,
    serve_on_loopback,
)

require_browser()
pytest.importorskip("onnxruntime.quantization")


def write_y4m(path, frames: list[np.ndarray], fps: int = 10) -> None:
    """Frames (H, W, 3) uint8 BGR as YUV4MPEG2 (4:2:0): what --use-file-for-fake-video-capture reads."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            handle.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory):
    street = cv2.resize(cv2.imread(str(STREET)), (320, 240), interpolation=cv2.INTER_AREA)
    frames = [np.roll(street, 8 * step, axis=1) for step in range(10)]  # the street panning
    path = tmp_path_factory.mktemp("camera") / "street.y4m"
    write_y4m(path, frames)
    return path


@pytest.fixture(scope="module")
def app_url(tiny_model, tmp_path_factory):
    import dovit
    from app.models import ModelShelf
    from app.ui import build_demo
    from dovit.deploy.onnx_graphs import ExportConfig, export_onnx
    from dovit.deploy.quantize import QuantizeConfig, quantize_folder

    folder = tmp_path_factory.mktemp("live")
    checkpoint = dovit.save_checkpoint(tiny_model, folder / "checkpoint")
    fp32 = export_onnx(
        ExportConfig(str(checkpoint), str(folder / "fp32"), check=False), progress=False
    ).output
    torch = pytest.importorskip("torch")
    quantize_folder(fp32, folder / "int8", QuantizeConfig(), torch.randn(3, 3, 64, 96), 0.9)
    default = dovit.Predictor.from_checkpoint(checkpoint)
    shelf = ModelShelf.build(default, checkpoint, root=None, exports=[folder / "int8"])
    demo = build_demo(default, examples_dir="", models=shelf)
    yield serve_on_loopback(demo)
    demo.close()


def test_live_tab_segments_the_camera_and_shows_the_frame_rate(app_url, camera_clip):
    from playwright.sync_api import sync_playwright

    args = CHROMIUM_ARGS + FAKE_CAMERA_ARGS + [f"--use-file-for-fake-video-capture={camera_clip}"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS * 2)
            page.goto(app_url)
            page.get_by_role("tab", name="Live").click()
            assert page.locator("#live-runtime input[value='ONNX Runtime int8']").is_checked()
            camera = page.locator("#live-camera")
            if camera.get_by_text("Click to Access Webcam").count():
                camera.get_by_text("Click to Access Webcam").click()
            page.wait_for_function(
                "() => { const v = document.querySelector('#live-camera video');"
                " return v && v.readyState >= 2 && v.videoWidth > 0; }"
            )
            camera.locator("button[aria-label='capture photo']").click()  # streaming: starts the stream
            page.wait_for_function(
                "() => /([3-9]|\\d\\d+) frames/.test(" "document.querySelector('#live-readout').innerText)"
            )
            text = page.inner_text("#live-readout")
            # the rate is shown (its value depends on the machine: on 2 shared cores it read 0.0x fps)
            assert re.search(r"\*?\*?\d+\.\d+ fps", text) and "GFLOPs per frame" in text, text
            assert "ONNX Runtime" in text and "int8" in text
            assert (
                page.locator("#live-mask img").count() == 1 and page.locator("#live-tokens img").count() == 1
            )
        finally:
            browser.close()
