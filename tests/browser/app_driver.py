"""Driving DoViT Studio in Debian's Chromium with Playwright (shared by the browser test and the
screenshot script). Never downloads a browser: Chromium must be at CHROMIUM."""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
STREET = Path(__file__).resolve().parents[2] / "assets" / "synthetic_street.png"  # the project's own example
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 90_000


FAKE_CAMERA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def require_browser() -> None:
    """Call at a browser test module's top: without Playwright or Chromium, skip it on a developer's
    machine, saying how to get what is missing; fail in CI (CI=true), which installs both (.ci/run), so
    that no real-browser test drops out of CI unnoticed."""
    import pytest

    def cannot_run(reason: str) -> None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)

    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        cannot_run("Playwright is not installed, so the real-browser test cannot run: pip install -r "
                   "requirements.txt")
    if not CHROMIUM.exists():
        cannot_run(f"{CHROMIUM} is missing, so the real-browser test cannot run: install Debian's Chromium "
                   "with `sudo apt-get install chromium` (Playwright never downloads a browser here)")


@contextmanager
def chromium(fake_camera: bool = False):
    """Debian's Chromium through Playwright for one test, closed however the test ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_browser(playwright, fake_camera)
        try:
            yield browser
        finally:
            browser.close()


def serve_on_loopback(app) -> str:
    """Serve a ``StudioApp`` (``app.ui.build_demo``) on a free 127.0.0.1 port without blocking; its URL."""
    from app.ui import serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve(app, host="127.0.0.1", port=port, block=False)
    return f"http://127.0.0.1:{port}/"


def launch_browser(playwright, fake_camera: bool = False):
    """Debian Chromium; fake_camera: Chromium's built-in test pattern as the webcam, access granted."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM),
                                      args=CHROMIUM_ARGS + (FAKE_CAMERA_ARGS if fake_camera else []))


def open_app(browser, url: str, width: int = 1400, height: int = 1000, on_request=None):
    """A new page on the app, loaded; on_request(url) is called for every request the page makes."""
    page = browser.new_page(viewport={"width": width, "height": height})
    if on_request is not None:
        page.on("request", lambda request: on_request(request.url))
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#xi-slider input[type=range]")
    return page


def snapshot_webcam(page) -> str:
    """Switch the input to the webcam, take a snapshot; wait for the readouts; return them."""
    page.locator("#input-image button[aria-label='Capture from camera']").click()
    page.get_by_text("Click to Access Webcam").click()
    page.wait_for_function(  # capture only once the stream plays, or the click takes nothing
        "() => { const v = document.querySelector('#input-image video');"
        " return v && v.readyState >= 2 && v.videoWidth > 0; }"
    )
    page.locator("#input-image button[aria-label='capture photo']").click()
    page.wait_for_function("document.querySelector('#readouts').innerText.includes('GFLOPs')")
    return readouts(page)


def readouts(page) -> str:
    return page.inner_text("#readouts")


def upload(page, image: Path) -> str:
    """Upload ``image`` through the input's file chooser; wait for the readouts; return them."""
    page.set_input_files("#input-image input[type=file]", str(image))
    page.wait_for_function("document.querySelector('#readouts').innerText.includes('GFLOPs')")
    page.wait_for_timeout(500)  # every view arrives with the readouts; give the images time to paint
    return readouts(page)


def drag_xi(page, position: float) -> str:
    """Drag the ξ slider's thumb to ``position`` in [0, 1] of its track and release; wait until the
    readouts show the ξ of where the thumb ended; return them."""
    track = page.locator("#xi-slider input[type=range]")
    box = track.bounding_box()
    current = float(track.input_value())
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + current * box["width"], y)
    page.mouse.down()
    for step in range(1, 11):
        fraction = current + (position - current) * step / 10
        page.mouse.move(box["x"] + fraction * box["width"], y)
    page.mouse.up()
    page.wait_for_function(
        """() => {
            const position = parseFloat(document.querySelector('#xi-slider input[type=range]').value);
            const box = parseFloat(document.querySelector('#xi-number input').value);
            const xi = 1 - Math.pow(1 - position, 3);  // app.controls.xi_from_position
            return Math.abs(box - xi) < 1e-4 && document.querySelector('#readouts').innerText.includes(
                'ξ = ' + Number(box.toPrecision(4)).toString());
        }"""
    )
    page.wait_for_timeout(500)
    return readouts(page)


def xi_box_value(page) -> float:
    return float(page.locator("#xi-number input").input_value())


LESSON_SHOWN = ("() => { const t = document.querySelector('#lesson-text'); const h = "
                "document.querySelector('#lesson-heading'); return h && t && "
                "h.innerText.includes('Step ' + %s + ' of') && h.innerText.includes(':') && "
                "!t.innerText.includes('Upload an image'); }")


def wait_for_lesson_step(page, number: int) -> str:
    """Wait until step ``number`` shows over an image (its title written, the image's text in); its
    heading."""
    page.wait_for_function(LESSON_SHOWN % number)
    return page.inner_text("#lesson-heading").strip()


def wait_for_lesson_picture(page) -> None:
    """Scroll the Lesson step's picture into view (gradio loads images lazily) and wait until it shows."""
    page.locator("#lesson-picture").scroll_into_view_if_needed()
    page.wait_for_selector("#lesson-picture img")
