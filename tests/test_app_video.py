"""The Video tab and /analyze_video: the job streaming to disk, the handlers without a browser, video upload
sniffing in the request guard, and upload -> analyse -> export through gradio_client on a served app."""
import csv
import json
from pathlib import Path

import cv2
import gradio as gr
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from test_app_api import server  # noqa: F401 (the served app, a fixture)
from test_app_limits import run_asgi, stored_upload_app
from test_video import synthetic_video

from app.guard import RequestGuard
from app.limits import ServingLimits
from app.studio import Studio
from app.tabs import video as video_tab
from app.uploads import UploadLedger, sniff_video, upload_refusal, video_problem
from dovit import Predictor
from dovit.viz.video import FrameWriter, count_frames, iter_frames

RECORD_KEYS = {"frame", "gflops", "dense_gflops", "kept_tokens", "latency_ms"}


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    """Stands for gradio's upload folder: the only place the handlers read videos from."""
    folder = tmp_path_factory.mktemp("uploads")
    synthetic_video(folder / "clip.mp4", count=8)
    (folder / "notes.mp4").write_text("this is a text file renamed to .mp4")
    return folder


@pytest.fixture(scope="module")
def frames_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drive")
    for index, frame in enumerate(iter_frames(synthetic_video(folder.parent / "drive.mp4", count=5))):
        cv2.imwrite(str(folder / f"f{index:03d}.png"), frame[..., ::-1])
    return folder


@pytest.fixture(scope="module")
def tab(tiny_model, uploads, frames_folder, tmp_path_factory):
    studio = Studio(Predictor(tiny_model), image_dirs=[uploads])
    folders = video_tab.frame_folders([frames_folder])
    return video_tab.VideoTab(studio, [uploads], folders, tmp_path_factory.mktemp("runs"))


def last(generator) -> list:
    outputs = None
    for outputs in generator:  # noqa: B007 (the last update is the result)
        pass
    return outputs


# ------------------------------------------------------------------ the job
def test_analyse_to_disk_streams_records_mp4_webm_csv_json(tab, uploads, tmp_path):
    steps = list(video_tab.analyse_to_disk(tab.studio, uploads / "clip.mp4", 0.5, "tokens", tmp_path / "run"))
    assert [done for done, _, _ in steps] == [*range(1, 9), 8] and steps[0][1] == 8
    run = steps[-1][2]
    assert all(r is None for _, _, r in steps[:-1]) and len(run.records) == 8
    assert count_frames(run.mp4) == 8 and len(list(iter_frames(run.webm))) == 8  # the WebM decodes too
    rows = list(csv.DictReader(run.csv.open()))
    assert [int(r["frame"]) for r in rows] == list(range(8)) and "kept_tokens_B4" in rows[0]
    assert [r["frame"] for r in json.loads(run.json.read_text())] == list(range(8))
    assert run.webm.read_bytes()[:4] == b"\x1a\x45\xdf\xa3" and run.mp4.read_bytes()[4:8] == b"ftyp"


def test_caps_on_frames_and_side_come_with_notices(tab, uploads, tmp_path):
    limits = ServingLimits(video_max_frames=3, video_max_side=48)
    run = last(video_tab.analyse_to_disk(tab.studio, uploads / "clip.mp4", 0.5, "mask", tmp_path / "run",
                                         limits=limits, playback=False))[2]
    assert len(run.records) == 3 and run.webm is None
    assert next(iter_frames(run.mp4)).shape == (32, 48, 3)
    assert any("first 3 of 8" in n for n in run.notices) and any("shrunk" in n for n in run.notices)


def test_time_budget_stops_the_job_with_what_it_has(tab, uploads, tmp_path):
    ticks = iter(range(0, 1000, 10))
    run = last(video_tab.analyse_to_disk(tab.studio, uploads / "clip.mp4", 0.5, "none", tmp_path / "run",
                                         limits=ServingLimits(video_budget_s=15),
                                         clock=lambda: next(ticks)))[2]
    assert 1 <= len(run.records) < 8 and any("Stopped after 15 s" in n for n in run.notices)


def test_each_frame_holds_the_model_as_background_work(tab, uploads, tmp_path, monkeypatch):
    held = []
    original = tab.studio.model_call

    def spy(background=False):
        held.append(background)
        return original(background)

    monkeypatch.setattr(tab.studio, "model_call", spy)
    last(video_tab.analyse_to_disk(tab.studio, uploads / "clip.mp4", 0.5, "none", tmp_path / "run"))
    assert held == [True] * 9  # eight frames and the call that finds the end


# ------------------------------------------------------------------ handlers
def test_upload_handler_fills_player_timeline_scrubber_and_downloads(tab, uploads):
    outputs = last(tab.on_upload(str(uploads / "clip.mp4"), 0.5, "halting", None))
    run = outputs.state
    assert outputs.player.endswith(".webm") and Path(outputs.player).exists()
    assert len(outputs.timeline.data) == 3 and outputs.scrubber == 0
    assert outputs.frame_view.shape == (64, 96, 3) and "Frame 0" in outputs.frame_readout
    assert {Path(p).name for p in outputs.downloads} == {"annotated.mp4", "annotated.webm", "frames.csv",
                                                         "frames.json"}
    assert "uploaded video with default model on PyTorch: 8 frames at ξ = 0.5" in outputs.notices
    scrubbed = tab.on_scrub(5 / 7 * 100, run)
    assert "Frame 5" in scrubbed.frame_readout and scrubbed.timeline.layout.shapes[0].x0 == 5
    assert scrubbed.player["playback_position"] == pytest.approx(5 / run.fps)
    assert [video_tab.scrubber_frame(p, 8) for p in (None, -3, 0, 50, 100, 400)] == [0, 0, 0, 4, 7, 7]
    frame = scrubbed.frame_view
    assert np.abs(frame.astype(int) - list(iter_frames(run.mp4))[5].astype(int)).mean() < 2
    rerun = last(tab.on_rerun(0.9, "mask", run)).state
    # the old run's files go
    assert rerun.xi == 0.9 and rerun.folder != run.folder and not run.folder.exists()
    gone = video_tab.VideoRun(**{**vars(rerun), "source": uploads / "swept_by_gradio.mp4"})
    with pytest.raises(gr.Error, match="no longer on the server"):
        last(tab.on_rerun(0.9, "mask", gone))


def test_frame_folder_handler_reads_only_offered_folders(tab):
    label = next(iter(tab.folders))
    run = last(tab.on_folder(label, 0.5, "mask", None)).state
    assert len(run.records) == 5 and [r.name for r in run.records] == [f"f{i:03d}" for i in range(5)]
    with pytest.raises(gr.Error, match="Choose a frame folder"):
        last(tab.on_folder("/etc", 0.5, "mask", None))


def test_bad_inputs_are_clear_errors(tab, uploads, tmp_path):
    with pytest.raises(gr.Error, match="not a video we can read"):
        last(tab.on_upload(str(uploads / "notes.mp4"), 0.5, "mask", None))
    outside = synthetic_video(tmp_path / "outside.mp4", count=2)
    for path in (str(outside), "/etc/passwd", str(uploads / "missing.mp4")):
        with pytest.raises(gr.Error, match="could not be found on the server"):
            last(tab.on_upload(path, 0.5, "mask", None))
    with pytest.raises(gr.Error, match="xi must be"):
        last(tab.on_upload(str(uploads / "clip.mp4"), 1.5, "mask", None))
    with pytest.raises(gr.Error, match="overlay"):
        last(tab.on_upload(str(uploads / "clip.mp4"), 0.5, "sparkles", None))


def test_api_handler_returns_mp4_and_frame_list(tab, uploads):
    mp4, frames = tab.api_analyze_video(str(uploads / "clip.mp4"), 0.5)
    assert mp4.endswith(".mp4") and count_frames(mp4) == 8
    assert len(frames) == 8 and all(RECORD_KEYS <= set(f) for f in frames)
    assert tab.api_analyze_video(str(uploads / "clip.mp4"), None)[1][0]["xi"] == tab.studio.config.default_xi


def test_frame_folders_lists_image_folders_below_the_roots(tmp_path):
    for name in ("a", "b/c", "empty", "aannot"):
        (tmp_path / name).mkdir(parents=True)
    for name in ("a", "b/c", "aannot"):  # aannot: the labels of split a, not frames
        cv2.imwrite(str(tmp_path / name / "x.png"), np.zeros((4, 4, 3), np.uint8))
    folders = video_tab.frame_folders([tmp_path])
    assert sorted(folders.values()) == [tmp_path / "a", tmp_path / "b/c"]
    assert f"{tmp_path.name}/b/c (1 frames)" in folders


# ------------------------------------------------------------------ guard
def test_sniff_video_reads_container_magic():
    assert sniff_video(b"\x00\x00\x00\x18ftypmp42") == "MP4/MOV"
    assert sniff_video(b"\x1a\x45\xdf\xa3\x01\x00") == "WebM/MKV"
    assert sniff_video(b"RIFF\x10\x00\x00\x00AVI LIST") == "AVI"
    for header in (b"RIFF\x10\x00\x00\x00WEBPVP8 ", b"\x89PNG\r\n\x1a\n", b"this is text", b""):
        assert sniff_video(header) is None


def test_video_uploads_within_the_caps_only(uploads, tmp_path):
    limits = ServingLimits()
    assert video_problem(uploads / "clip.mp4", limits) is None and upload_refusal(uploads / "clip.mp4",
                                                                                  limits) is None
    status, message = upload_refusal(uploads / "notes.mp4", limits)  # no video magic: judged as an image
    assert status == 415 and "not an image" in message
    assert "not a video" in video_problem(uploads / "notes.mp4", limits)
    assert "maximum file size for a video" in video_problem(uploads / "clip.mp4",
                                                            ServingLimits(video_max_bytes=100))
    assert upload_refusal(uploads / "clip.mp4", ServingLimits(video_max_bytes=100))[0] == 413
    assert "8 frames; the limit is 4" in video_problem(uploads / "clip.mp4",
                                                       ServingLimits(video_upload_max_frames=4))
    assert "MP" in video_problem(uploads / "clip.mp4", ServingLimits(video_max_pixels=1000))
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2000))  # the magic, then nothing decodable
    assert "could not be opened" in video_problem(fake, limits)
    big_image = tmp_path / "big.png"
    big_image.write_bytes(b"\x89PNG" + bytes(26 * 2**20))
    status, message = upload_refusal(big_image, limits)
    assert status == 413 and "maximum file size for an image" in message


def test_guard_keeps_video_uploads_and_deletes_renamed_text(uploads, tmp_path):
    video = tmp_path / "v" / "clip.mp4"
    text = tmp_path / "t" / "notes.mp4"
    for path, source in ((video, uploads / "clip.mp4"), (text, uploads / "notes.mp4")):
        path.parent.mkdir()
        path.write_bytes(source.read_bytes())
    upload_app = stored_upload_app({"video": str(video), "text": str(text)})
    limits = ServingLimits(body_max_bytes=10)  # an upload's body cap is the video cap, not this
    status, body = run_asgi(RequestGuard(upload_app, limits, UploadLedger()), "POST", "/gradio_api/upload",
                            b"video")
    assert status == 200 and json.loads(body) == [str(video)]
    status, body = run_asgi(RequestGuard(upload_app, limits, UploadLedger()), "POST", "/gradio_api/upload",
                            b"text")
    assert status == 415 and b"not an image" in body and not text.exists()
    status, body = run_asgi(RequestGuard(upload_app, limits, UploadLedger()), "POST",
                            "/gradio_api/queue/join",
                            b"x" * 11)
    assert status == 413


# ------------------------------------------------------------------ served: upload -> analyse -> export
def test_analyze_video_api_through_gradio_client(server, uploads, tmp_path):
    client = Client(server, verbose=False, download_files=tmp_path)
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/predict", "/analyze_video"} <= set(api) <= {"/predict", "/trace", "/export", "/inspect_token",
                                                          "/analyze_video"}
    mp4, frames = client.predict(handle_file(uploads / "clip.mp4"), 0.5, api_name="/analyze_video")
    assert Path(mp4).suffix == ".mp4" and count_frames(mp4) == 8
    assert next(iter_frames(mp4)).shape == (64, 96, 3)
    assert [f["frame"] for f in frames] == list(range(8)) and all(RECORD_KEYS <= set(f) for f in frames)
    assert all(f["xi"] == 0.5 and f["dense_gflops"] >= f["gflops"] > 0 for f in frames)
    with pytest.raises(Exception, match="xi must be"):
        client.predict(handle_file(uploads / "clip.mp4"), 2.0, api_name="/analyze_video")


def test_served_upload_route_refuses_renamed_text_and_takes_webm(server, tmp_path):
    response = httpx.post(f"{server}gradio_api/upload", timeout=60,
                          files={"files": ("movie.mp4", b"this is a text file renamed to .mp4")})
    assert response.status_code == 415
    webm = tmp_path / "clip.webm"
    with FrameWriter(webm, 10) as writer:
        for frame in iter_frames(synthetic_video(tmp_path / "clip.mp4", count=4)):
            writer.write(frame)
    response = httpx.post(
        f"{server}gradio_api/upload", files={"files": ("clip.webm", webm.read_bytes())}, timeout=60
    )
    assert response.status_code == 200, response.text
