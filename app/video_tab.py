"""The Video tab and the /analyze_video API: DoViT over a video, frame by frame, with a compute timeline.

Sources: an uploaded video (MP4/MOV, WebM/MKV, AVI; decoded with OpenCV), a clip recorded from the webcam
(gradio's ``gr.Video`` webcam source records in the browser and uploads a WebM when recording stops: a
recorded clip, not a live stream), or a folder of frames the operator allowed (the example folders and
the sub-folders of ``--frames-root``, offered by name in a dropdown; no path ever comes from the user).

A job runs the model and runtime picked on the page and streams (``analyse_to_disk``): one frame is decoded,
analysed and annotated while the job holds the model (``Studio.model_call(background=True)``, so the page
and /predict go first between frames), then written to an MP4 (mp4v, the download) and, for the page, a
smaller WebM (VP8, what a browser plays: this OpenCV has no H.264 encoder); only the per-frame
``FrameRecord``s stay in memory. The scrubber decodes the one frame it points at from the MP4. Jobs stop
after ``ServingLimits.video_max_frames`` frames or ``video_budget_s`` seconds, frames are shrunk to
``video_max_side``, each with a notice.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import gradio as gr

from dovit import Predictor
from dovit.data.datasets import read_rgb
from dovit.report.figures import timeline_figure
from dovit.video import (FrameRecord, FrameWriter, analyze_video, count_frames, frame_rate, image_files,
                         read_frame, write_records_csv, write_records_json)

from .guard import video_problem
from .images import NOT_UPLOADED, fit_within
from .limits import RUN_MAX_AGE_S, ServingLimits, new_run_folder
from .studio import Studio, user_error

VIDEO_QUEUE = "video"
OVERLAY_CHOICES = [("Segmentation mask", "mask"), ("Token pass per group (B1…B4 tiles)", "tokens"),
                   ("Halting depth", "halting"), ("Dense vs DoViT disagreement (runs dense too)", "disagreement"),
                   ("None (frame only)", "none")]
PLAYBACK_MAX_SIDE = 320  # the player's WebM: VP8 costs ~15x mp4v per pixel, and the player is 300 px high


@dataclass
class VideoRun:
    """One finished job: its files on disk and the per-frame records (a few numbers per frame).

    folder: the job's own folder; mp4 the annotated video (download; mp4v), webm the same for the player
    (None for API jobs), csv / json the records. source: the server path analysed (never shown).
    """

    folder: Path
    mp4: Path
    webm: Path | None
    csv: Path
    json: Path
    records: list[FrameRecord]
    fps: float
    source: Path
    label: str
    xi: float
    overlay: str
    notices: list[str] = field(default_factory=list)
    model_name: str = ""  # what ran ("<model> on <runtime>"), for the summary line


def frame_folders(roots: Sequence[str | Path], depth: int = 2) -> dict[str, Path]:
    """{label: folder} of every folder holding images at most ``depth`` levels below each root (the root
    included), labelled by its path below the root's parent and its frame count, e.g. 'camvid/val (101
    frames)'; label folders (``is_label_folder``) are left out."""
    found: dict[str, Path] = {}
    for root in (Path(r).resolve() for r in roots):
        if not root.is_dir():
            continue
        candidates = [root] + [p for level in range(1, depth + 1) for p in sorted(root.glob("/".join(["*"] * level)))]
        for folder in candidates:
            if folder.is_dir() and not folder.is_symlink() and not is_label_folder(folder):
                count = len(image_files(folder))
                if count:
                    found.setdefault(f"{folder.relative_to(root.parent)} ({count} frames)", folder)
    return found


def is_label_folder(folder: Path) -> bool:
    """A CamVid-layout label folder (``<split>annot`` beside ``<split>``): label maps, not frames."""
    return folder.name.endswith("annot") and (folder.parent / folder.name.removesuffix("annot")).is_dir()


def checked_video(path: str | Path | None, upload_dirs: Sequence[str | Path], limits: ServingLimits) -> Path:
    """The uploaded video at ``path`` when it lies in ``upload_dirs`` (symbolic links resolved) and passes
    ``guard.video_problem``; ValueError with a message for the user otherwise (a path elsewhere gets the
    same answer as a missing file, so nothing is learnt about the server's files)."""
    if path is None:
        raise ValueError("No video given: upload a video or record one with the webcam.")
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(Path(d).resolve()) for d in upload_dirs) or not resolved.is_file():
        raise ValueError(NOT_UPLOADED)
    problem = video_problem(resolved, limits)
    if problem:
        raise ValueError(problem)
    return resolved


def source_notices(source: Path, limits: ServingLimits) -> tuple[list[str], int | None]:
    """(notices about the caps this source meets, frames that will be analysed or None if unknown)."""
    count = count_frames(source)
    if source.is_dir():
        height, width = read_rgb(image_files(source)[0]).shape[:2]
    else:
        capture = cv2.VideoCapture(str(source))
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        capture.release()
    notices = []
    if count is not None and count > limits.video_max_frames:
        notices.append(f"Only the first {limits.video_max_frames} of {count} frames are analysed.")
    if max(height, width) > limits.video_max_side:
        notices.append(f"Frames of {width}×{height} px are shrunk to at most {limits.video_max_side} px a side.")
    return notices, None if count is None else min(count, limits.video_max_frames)


def analyse_to_disk(studio: Studio, source: Path, xi: float, overlay: str, folder: Path, label: str = "",
                    playback: bool = True, limits: ServingLimits | None = None,
                    clock: Callable[[], float] = time.monotonic, predictor: Predictor | None = None,
                    model_name: str = "") -> Iterator[tuple[int, int | None, VideoRun | None]]:
    """Run DoViT over ``source`` (a video file or an image folder) into ``folder``, streaming.

    Yields (frames done, frames expected or None, None) after each frame and finally (done, expected,
    the ``VideoRun``). Each frame's decode, forward and overlay run holding the model as background work
    (``studio.model_call(background=True)``), so interactive calls go first between frames; encoding
    runs without it. ``playback`` also writes the WebM a browser plays, at most ``PLAYBACK_MAX_SIDE`` px a
    side (the MP4 keeps the frames' size). ``predictor``: the model to run (default: the studio's default
    model), called ``model_name`` in the summary. Raises ValueError for a source that holds no decodable frame.
    """
    limits = limits or studio.limits
    notices, expected = source_notices(source, limits)
    folder.mkdir(parents=True, exist_ok=True)
    fps = frame_rate(source)
    run = VideoRun(folder, folder / "annotated.mp4", folder / "annotated.webm" if playback else None,
                   folder / "frames.csv", folder / "frames.json", [], fps, source, label, xi, overlay, notices,
                   model_name)
    frames = analyze_video(predictor or studio.predictor, source, xi=xi, overlay=overlay,
                           max_frames=limits.video_max_frames, max_side=limits.video_max_side)
    start = clock()
    try:
        with FrameWriter(run.mp4, fps) as mp4, (FrameWriter(run.webm, fps) if playback else nullcontext()) as webm:
            while True:
                with studio.model_call(background=True):
                    item = next(frames, None)
                if item is None:
                    break
                record, annotated = item
                run.records.append(record)
                mp4.write(annotated)
                if webm is not None:
                    webm.write(fit_within(annotated, PLAYBACK_MAX_SIDE)[0])
                if clock() - start > limits.video_budget_s:
                    notices.append(f"Stopped after {limits.video_budget_s:.0f} s with {len(run.records)} frames.")
                    yield len(run.records), expected, None
                    break
                yield len(run.records), expected, None
    finally:
        frames.close()
    write_records_csv(run.records, run.csv)
    write_records_json(run.records, run.json)
    yield len(run.records), expected, run


def scrubber_frame(position: float | None, frames: int) -> int:
    """The frame (0-based) at ``position`` % of a run of ``frames`` frames. The scrubber is in % because
    gradio 6 does not move a slider's range when an event changes its maximum."""
    fraction = min(max(float(position or 0.0), 0.0), 100.0) / 100.0
    return int(round(fraction * (frames - 1)))


def api_records(records: Sequence[FrameRecord]) -> list[dict]:
    """The per-frame JSON list of /analyze_video: frame, gflops, dense_gflops, kept_tokens, latency_ms,
    name, xi per frame (``FrameRecord``'s fields)."""
    return [asdict(record) for record in records]


def frame_markdown(run: VideoRun, index: int) -> str:
    """One frame's numbers under the scrubber."""
    record = run.records[index]
    kept = " · ".join(f"B{g + 1}: {tokens}" for g, tokens in enumerate(record.kept_tokens))
    share = 100.0 * record.gflops / record.dense_gflops if record.dense_gflops else float("nan")
    return (f"**Frame {record.frame}** {record.name} · {record.gflops:.2f} of {record.dense_gflops:.2f} dense GFLOPs "
            f"({share:.0f}%) · kept tokens {kept} · {record.latency_ms:.0f} ms")


def run_summary(run: VideoRun) -> str:
    """The notice line above the player: what ran, how many frames, mean cost, and the caps met."""
    count = len(run.records)
    mean = sum(r.gflops for r in run.records) / max(count, 1)
    dense = sum(r.dense_gflops for r in run.records) / max(count, 1)
    latency = sorted(r.latency_ms for r in run.records)[count // 2] if count else 0.0
    model = f" with {run.model_name}" if run.model_name else ""
    parts = [f"{run.label}{model}: {count} frames at ξ = {run.xi:g} · mean {mean:.2f} GFLOPs vs {dense:.2f} dense "
             f"({100 * mean / dense if dense else 0:.0f}%) · median latency {latency:.0f} ms"] + run.notices
    return " · ".join(parts)


class VideoTab:
    """The Video tab's handlers and the /analyze_video handler, bound to a Studio.

    upload_dirs: where uploaded videos may be read (gradio's upload folder); folders: {label: folder}
    offered in the frame-folder dropdown (``frame_folders``); work_root: where job folders are written.
    """

    def __init__(self, studio: Studio, upload_dirs: Sequence[str | Path], folders: dict[str, Path],
                 work_root: str | Path | None = None) -> None:
        self.studio = studio
        self.limits = studio.limits
        self.upload_dirs = [Path(d) for d in upload_dirs]
        self.folders = dict(folders)
        self.work_root = Path(work_root or Path(tempfile.gettempdir()) / "dovit-video")

    # ------------------------------------------------------------------ jobs and their folders
    def new_folder(self) -> Path:
        return new_run_folder(self.work_root)

    def folder_source(self, label: str | None) -> Path:
        if label not in self.folders:
            raise user_error("Choose a frame folder from the list.")
        return self.folders[label]

    def upload_source(self, path: str | None) -> Path:
        try:
            return checked_video(path, self.upload_dirs, self.limits)
        except ValueError as error:
            raise user_error(str(error)) from None

    def outputs(self, run: VideoRun | None, message: str = "") -> list:
        """[player, timeline, scrubber, frame image, frame readout, downloads, notices, state]."""
        if run is None or not run.records:
            return [None, None, 0, None, "", None, message, run]
        return [str(run.webm) if run.webm else None, timeline_figure(run.records, 0),
                0, read_frame(run.mp4, 0), frame_markdown(run, 0),
                [str(p) for p in (run.mp4, run.webm, run.csv, run.json) if p is not None], run_summary(run), run]

    def job(self, source: Path, label: str, xi: float, overlay: str, previous: VideoRun | None,
            request: gr.Request | None, progress, model: str | None = None,
            runtime: str | None = None) -> Iterator[list]:
        """The page's job with the model and runtime picked on the page: progress per frame, a cancellation
        point per frame, then every output."""
        with self.studio.finished(request, "video"):
            xi = self.studio.user_xi(xi)
            predictor = self.studio.picked(model, runtime)
            if overlay not in {value for _, value in OVERLAY_CHOICES}:
                raise user_error("Choose an overlay from the list.")
            folder = self.new_folder()
            done = False
            try:
                for count, expected, run in analyse_to_disk(self.studio, source, xi, overlay, folder, label,
                                                            predictor=predictor,
                                                            model_name=self.studio.picked_name(model, runtime)):
                    # a webcam recording's WebM does not say how many frames it has: a bare count then
                    progress((count, expected) if expected else None, desc=f"{label}: frame {count}", unit="frames")
                    if run is None:
                        yield [gr.skip()] * 8  # a point where gradio can cancel the job
                done = True
            except FileNotFoundError:
                raise user_error("The video is no longer on the server (uploads are kept 30 minutes); "
                                 "upload it again.") from None
            except ValueError as error:
                raise user_error(str(error)) from None
            finally:
                if not done:  # cancelled or failed: its folder is of no use
                    shutil.rmtree(folder, ignore_errors=True)
            if previous is not None and previous.folder != folder:
                shutil.rmtree(previous.folder, ignore_errors=True)
            for notice in run.notices:
                gr.Info(notice)
            yield self.outputs(run)

    # ------------------------------------------------------------------ page handlers
    def on_upload(self, path: str | None, xi: float, overlay: str, previous: VideoRun | None,
                  model: str | None = None, runtime: str | None = None, request: gr.Request = None,
                  progress=gr.Progress()) -> Iterator[list]:
        """A video uploaded or recorded: analyse it with the picked ``model`` on ``runtime`` (picker labels)."""
        if path is None:  # the input was cleared: keep the last run
            if request is not None:
                self.studio.admission.finish(request.session_hash or "", "video")
            yield [gr.skip()] * 8
            return
        source = self.upload_source(path) if request is None else self._admitted(request, self.upload_source, path)
        yield from self.job(source, "uploaded video", xi, overlay, previous, request, progress, model, runtime)

    def on_folder(self, label: str | None, xi: float, overlay: str, previous: VideoRun | None,
                  model: str | None = None, runtime: str | None = None, request: gr.Request = None,
                  progress=gr.Progress()) -> Iterator[list]:
        """A frame folder chosen: analyse it as a video."""
        source = self.folder_source(label) if request is None else self._admitted(request, self.folder_source, label)
        yield from self.job(source, label.rsplit(" (", 1)[0], xi, overlay, previous, request, progress, model,
                            runtime)

    def on_rerun(self, xi: float, overlay: str, previous: VideoRun | None, model: str | None = None,
                 runtime: str | None = None, request: gr.Request = None, progress=gr.Progress()) -> Iterator[list]:
        """ξ or the overlay changed (or Analyse again): recompute the last source with the picked model."""
        if previous is None:
            if request is not None:
                self.studio.admission.finish(request.session_hash or "", "video")
            yield [gr.skip()] * 6 + ["Upload a video, record one or choose a frame folder first.", None]
            return
        yield from self.job(previous.source, previous.label, xi, overlay, previous, request, progress, model,
                            runtime)

    def _admitted(self, request: gr.Request, check: Callable, value) -> Path:
        """``check(value)``, freeing the call's admission when it refuses (the job never starts)."""
        try:
            return check(value)
        except gr.Error:
            self.studio.admission.finish(request.session_hash or "", "video")
            raise

    def on_stop(self, request: gr.Request = None) -> str:
        """Stop: gradio cancels the job; this frees its admission if it was still queued."""
        if request is not None:
            self.studio.admission.finish(request.session_hash or "", "video")
        return "Stopped."

    def on_scrub(self, position: float, run: VideoRun | None) -> list:
        """The scrubber moved to ``position`` (% of the run): that frame of the annotated video, the timeline
        marked there, its numbers, and the player moved to its time."""
        if run is None or not run.records:
            return [None, None, "", gr.skip()]
        index = scrubber_frame(position, len(run.records))
        try:
            frame = read_frame(run.mp4, index)
        except (FileNotFoundError, IndexError, ValueError):
            raise user_error("This run's video is gone from the server (runs are kept 30 minutes); "
                             "press Analyse again.") from None
        return [frame, timeline_figure(run.records, index), frame_markdown(run, index),
                gr.update(playback_position=index / run.fps)]

    # ------------------------------------------------------------------ API
    def api_analyze_video(self, path: str | None, xi: float | None, request: gr.Request = None) -> tuple[str, list]:
        """(video file, ξ) -> (annotated MP4 (mp4v, mask overlay), per-frame list of dicts with frame, gflops,
        dense_gflops, kept_tokens, latency_ms). ξ None: the checkpoint's default."""
        with self.studio.finished(request, "video"):
            xi = self.studio.config.default_xi if xi is None else self.studio.user_xi(xi)
            source = self.upload_source(path)
            run = None
            try:
                for _, _, run in analyse_to_disk(self.studio, source, xi, "mask", self.new_folder(), "API video",
                                                 playback=False):
                    pass
            except ValueError as error:
                raise user_error(str(error)) from None
            return str(run.mp4), api_records(run.records)


def raw_value(component):
    """``component`` whose value reaches the handler as sent: a file's path (gradio's own Video
    preprocessing would run ffmpeg, absent here, on webcam clips), a number unconverted."""
    def preprocess(payload):
        return getattr(payload, "path", payload) if payload is not None else None
    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


def build(studio: Studio, upload_dirs: Sequence[str | Path], folders: dict[str, Path],
          work_root: str | Path | None = None, pickers: Sequence[gr.components.Component] = ()) -> VideoTab:
    """The Video tab (call inside ``gr.Tabs``) with the hidden /analyze_video API; returns the handlers.
    folders: the frame folders offered (``frame_folders`` of the operator's folders); pickers: the page's
    Model and Runtime dropdowns, whose choice the tab runs (none: the default model on PyTorch)."""
    tab = VideoTab(studio, upload_dirs, folders, work_root)
    limits, default_xi = studio.limits, studio.config.default_xi
    with gr.Tab("Video", id="video"):
        gr.Markdown(f"Play a video with DoViT's compute per frame. Upload a video (MP4, MOV, WebM, MKV, AVI; at "
                    f"most {limits.video_max_bytes / 2**20:.0f} MB), record a clip with the webcam, or pick a "
                    f"folder of frames. At most {limits.video_max_frames} frames, shrunk to "
                    f"{limits.video_max_side} px a side. Downloads: the annotated MP4 (mp4v: desktop players; "
                    "browsers play the WebM) and the per-frame CSV/JSON.")
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                video_in = raw_value(gr.Video(label="Video (upload, or record with the webcam)",
                                              sources=["upload", "webcam"], elem_id="video-input", height=240,
                                              include_audio=False, webcam_options=gr.WebcamOptions(mirror=False)))
                folder_in = gr.Dropdown(list(tab.folders), value=None, label="…or a folder of frames on the server",
                                        elem_id="video-folder", interactive=bool(tab.folders))
                overlay = gr.Dropdown(OVERLAY_CHOICES, value="mask", label="Overlay", elem_id="video-overlay")
                xi = gr.Slider(0.0, 1.0, value=default_xi, step=0.005, label="ξ (release to recompute)",
                               elem_id="video-xi")
                with gr.Row():
                    rerun = gr.Button("Analyse again", elem_id="video-run", scale=3)
                    stop = gr.Button("Stop", elem_id="video-stop", scale=1)
                notices = gr.Markdown(elem_id="video-notices")
            with gr.Column(scale=3):
                player = gr.Video(label="Annotated video (WebM)", interactive=False, elem_id="video-player",
                                  autoplay=False, loop=True, height=300)
                timeline = gr.Plot(label="GFLOPs per frame against dense, with latency", elem_id="video-timeline")
        scrubber = gr.Slider(0, 100, value=0, step=0.1, label="Position in the video (%): release to jump to its frame",
                             elem_id="video-scrubber")
        with gr.Row():
            frame_view = gr.Image(label="Frame at the scrubber", format="jpeg", interactive=False,
                                  elem_id="video-frame")
            with gr.Column():
                frame_readout = gr.Markdown(elem_id="video-frame-readout")
                downloads = gr.File(label="Downloads: annotated MP4, WebM, per-frame CSV and JSON",
                                    file_count="multiple", interactive=False, elem_id="video-downloads")
        state = gr.State(None, time_to_live=RUN_MAX_AGE_S)
        with gr.Row(visible=False):  # the /analyze_video API's own components (not part of the page)
            api_video = raw_value(gr.File(label="video", file_types=["video"]))
            api_xi = raw_value(gr.Number(value=default_xi, label="xi"))
            api_annotated = gr.File(label="annotated MP4")
            api_frames = gr.JSON(label="frames")
            api_trigger = gr.Button("analyze_video")
    outputs = [player, timeline, scrubber, frame_view, frame_readout, downloads, notices, state]
    job = dict(concurrency_id=VIDEO_QUEUE, concurrency_limit=1, api_visibility="private",
               validator=studio.admit("video"))
    pickers = list(pickers)
    events = [video_in.change(tab.on_upload, [video_in, xi, overlay, state, *pickers], outputs, **job),
              folder_in.input(tab.on_folder, [folder_in, xi, overlay, state, *pickers], outputs, **job)]
    for trigger in (xi.release, overlay.input, rerun.click):
        events.append(trigger(tab.on_rerun, [xi, overlay, state, *pickers], outputs, **job))
    stop.click(tab.on_stop, None, notices, cancels=events, api_visibility="private")
    scrubber.release(tab.on_scrub, [scrubber, state], [frame_view, timeline, frame_readout, player],
                     api_visibility="private", show_progress="minimal")

    api_trigger.click(tab.api_analyze_video, [api_video, api_xi], [api_annotated, api_frames],
                      api_name="analyze_video", concurrency_id=VIDEO_QUEUE, concurrency_limit=1,
                      validator=studio.admit("video"),
                      api_description="Run DoViT over a video (MP4/MOV, WebM/MKV, AVI, at most "
                      f"{limits.video_max_bytes / 2**20:.0f} MB) at token-pass threshold xi in [0, 1] (None: the "
                      "checkpoint's default). Returns the annotated MP4 (mp4v; segmentation mask overlay) and a "
                      "list with one dict per frame: frame, gflops, dense_gflops, kept_tokens (per group), "
                      f"latency_ms. At most {limits.video_max_frames} frames (the first), shrunk to "
                      f"{limits.video_max_side} px a side, {limits.video_budget_s:.0f} s; one video job per "
                      "session at a time.")
    return tab

