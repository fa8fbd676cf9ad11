"""Real browser: in Debian Chromium (Playwright) the Video tab analyses an uploaded clip, its annotated WebM
plays, the GFLOPs timeline renders, and the scrubber jumps to a frame; a webcam recording is analysed; the
Data set tab's report renders."""
import os

import cv2
import pytest
from app_driver import chromium, open_app, require_browser, serve_on_loopback

require_browser()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 12-frame WebM (VP8) of a square moving over a gradient, and a folder of its frames as PNGs."""
    from test_video import synthetic_video

    from dovit.viz.video import iter_frames, write_video

    folder = tmp_path_factory.mktemp("clip")
    source = synthetic_video(folder / "clip.mp4", count=12)
    write_video(iter_frames(source), folder / "clip.webm", fps=10)
    frames = folder / "frames" / "drive"
    frames.mkdir(parents=True)
    for index, frame in enumerate(iter_frames(source)):
        cv2.imwrite(str(frames / f"{index:03d}.png"), frame[..., ::-1])
    return folder


@pytest.fixture(scope="module")
def app_url(tiny_model, clip, tmp_path_factory):
    import dovit
    from app.ui import build_demo

    checkpoint = dovit.save_checkpoint(tiny_model, tmp_path_factory.mktemp("checkpoint"))
    demo = build_demo(dovit.Predictor.from_checkpoint(checkpoint), examples_dir="",
                      frame_roots=[clip / "frames"])
    yield serve_on_loopback(demo)
    demo.close()


def test_video_tab_plays_and_its_timeline_renders(app_url, clip, tmp_path):
    with chromium() as browser:
        requests = []
        page = open_app(browser, app_url, on_request=requests.append)
        page.get_by_role("tab", name="Video").click()
        page.set_input_files("#video-input input[type=file]", str(clip / "clip.webm"))
        page.wait_for_function("document.querySelector('#video-notices').innerText.includes('12 frames')")
        page.wait_for_selector("#video-timeline .js-plotly-plot .scatterlayer .trace", state="attached")
        assert page.locator("#video-timeline .scatterlayer .trace").count() == 3  # DoViT, dense, latency
        assert page.evaluate("""async () => {
            const video = document.querySelector('#video-player video');
            video.muted = true;
            await video.play();
            await new Promise(resolve => setTimeout(resolve, 800));
            const played = video.readyState >= 2 && video.videoWidth === 96 && video.currentTime > 0;
            video.pause();
            return played;
        }"""), "the annotated WebM did not play"
        position = page.locator("#video-scrubber input[type=number]")  # the scrubber's box: % of the video
        position.fill("100")
        position.blur()  # the slider's release event
        page.wait_for_function("document.querySelector('#video-frame-readout').innerText.includes('Frame "
                               "11')")
        # 11 / 10 fps
        page.wait_for_function("document.querySelector('#video-player video').currentTime > 1.0")
        page.screenshot(path=str(os.environ.get("DOVIT_VIDEO_SCREENSHOT", tmp_path / "video.png")),
                        full_page=True)
        outside = {url for url in requests if not url.startswith(("http://127.0.0.1", "data:", "blob:"))}
        assert not outside, f"the page reached outside 127.0.0.1: {sorted(outside)[:5]}"


def test_frame_folder_and_data_set_report(app_url):
    with chromium() as browser:
        page = open_app(browser, app_url)
        page.get_by_role("tab", name="Data set").click()
        page.locator("#dataset-folder input").click()
        page.get_by_role("option", name="frames/drive (12 frames)").click()
        page.locator("#dataset-run").click()
        page.wait_for_function("document.querySelector('#dataset-notices').innerText.includes('12 images')")
        page.wait_for_selector("#dataset-figure-1 .js-plotly-plot")
        assert "GFLOPs" in page.inner_text("#dataset-headline")


def test_webcam_recording_is_analysed(app_url):
    """gr.Video's webcam source records a WebM in the browser (Chromium's fake camera) and uploads it."""
    with chromium(fake_camera=True) as browser:
        page = open_app(browser, app_url)
        page.get_by_role("tab", name="Video").click()
        page.locator("#video-input button[aria-label='Capture from camera']").click()
        page.locator("#video-input").get_by_text("Click to Access Webcam").click()
        page.wait_for_function("() => { const v = document.querySelector('#video-input video');"
                               " return v && v.readyState >= 2 && v.videoWidth > 0; }")
        page.locator("#video-input button[aria-label='start recording']").click()
        page.wait_for_timeout(2500)
        page.locator("#video-input button[aria-label='start recording']").click()  # the same button stops
        page.wait_for_function("document.querySelector('#video-notices').innerText.includes('frames at')")
        assert "uploaded video" in page.inner_text("#video-notices")
