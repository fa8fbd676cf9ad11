"""The Video tab and the /analyze_video API's handler: DoViT over a video, frame by frame, with a compute
timeline (the job itself, its sources and limits: ``app.video_runs``; the API's endpoint: ``app.api``)."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic

import gradio as gr

from dovit.report.figures import timeline_figure
from dovit.viz.video import read_frame

from ..api import VIDEO_QUEUE, raw_value
from ..limits import RUN_MAX_AGE_S, new_run_folder
from ..slots import Slots, T, connect
from ..studio import Studio, user_error
from ..video_runs import (
    VideoRun,
    analyse_to_disk,
    api_records,
    checked_video,
    frame_folders,  # noqa: F401 (the tab's name for it: app.ui and the tests use video_tab.frame_folders)
    frame_markdown,
    run_summary,
    scrubber_frame,
)

OVERLAY_CHOICES = [("Segmentation mask", "mask"), ("Token pass per group (B1…B4 tiles)", "tokens"),
                   ("Halting depth", "halting"),
                   ("Dense vs DoViT disagreement (runs dense too)", "disagreement"),
                   ("None (frame only)", "none")]


@dataclass
class JobSlots(Slots, Generic[T]):
    """What every job event fills: the annotated video, the compute timeline, the scrubber, the frame at it
    and its numbers, the downloads, the run's summary and the run itself."""

    player: T
    timeline: T
    scrubber: T
    frame_view: T
    frame_readout: T
    downloads: T
    notices: T
    state: T


@dataclass
class ScrubSlots(Slots, Generic[T]):
    """The scrubber released: the frame there, the timeline marked there, its numbers, the player's time."""

    frame_view: T
    timeline: T
    frame_readout: T
    player: T


@dataclass
class VideoViews:
    """The Video tab's components, each named once: the inputs, and what the job events fill (``job``)."""

    video_in: gr.Video
    folder_in: gr.Dropdown
    overlay: gr.Dropdown
    xi: gr.Slider
    rerun: gr.Button
    stop: gr.Button
    job: JobSlots[gr.components.Component]

    def scrub_outputs(self) -> ScrubSlots:
        return ScrubSlots(self.job.frame_view, self.job.timeline, self.job.frame_readout, self.job.player)


def layout(tab: VideoTab) -> VideoViews:
    limits, default_xi = tab.studio.limits, tab.studio.config.default_xi
    with gr.Tab("Video", id="video"):
        gr.Markdown("Play a video with DoViT's compute per frame. Upload a video (MP4, MOV, WebM, MKV, AVI; "
                    f"at most {limits.video_max_bytes / 2**20:.0f} MB), record a clip with the webcam, or "
                    f"pick a folder of frames. At most {limits.video_max_frames} frames, shrunk to "
                    f"{limits.video_max_side} px a side. Downloads: the annotated MP4 (mp4v: desktop "
                    "players; browsers play the WebM) and the per-frame CSV/JSON.")
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                video_in = raw_value(gr.Video(label="Video (upload, or record with the webcam)",
                                              sources=["upload", "webcam"], elem_id="video-input", height=240,
                                              include_audio=False,
                                              webcam_options=gr.WebcamOptions(mirror=False)))
                folder_in = gr.Dropdown(list(tab.folders), value=None,
                                        label="…or a folder of frames on the server",
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
                timeline = gr.Plot(label="GFLOPs per frame against dense, with latency",
                                   elem_id="video-timeline")
        scrubber = gr.Slider(0, 100, value=0, step=0.1,
                             label="Position in the video (%): release to jump to its frame",
                             elem_id="video-scrubber")
        with gr.Row():
            frame_view = gr.Image(label="Frame at the scrubber", format="jpeg", interactive=False,
                                  elem_id="video-frame")
            with gr.Column():
                frame_readout = gr.Markdown(elem_id="video-frame-readout")
                downloads = gr.File(label="Downloads: annotated MP4, WebM, per-frame CSV and JSON",
                                    file_count="multiple", interactive=False, elem_id="video-downloads")
        state = gr.State(None, time_to_live=RUN_MAX_AGE_S)
    return VideoViews(video_in, folder_in, overlay, xi, rerun, stop, JobSlots(
        player, timeline, scrubber, frame_view, frame_readout, downloads, notices, state))


class VideoTab:
    """The Video tab's handlers and the /analyze_video handler, bound to a Studio.

    upload_dirs: where uploaded videos may be read (gradio's upload folder); folders: {label: folder}
    offered in the frame-folder dropdown (``frame_folders``); work_root: where job folders are written.
    """

    def __init__(self, studio: Studio, upload_dirs: Sequence[str | Path], folders: dict[str, Path],
                 work_root: str | Path | None = None) -> None:
        self.studio, self.limits = studio, studio.limits
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

    def outputs(self, run: VideoRun | None, message: str = "") -> JobSlots:
        """A finished run's outputs (empty ones with ``message`` for none or one without frames)."""
        if run is None or not run.records:
            return JobSlots(None, None, 0, None, "", None, message, run)
        return JobSlots(str(run.webm) if run.webm else None, timeline_figure(run.records, 0),
                        0, read_frame(run.mp4, 0), frame_markdown(run, 0),
                        [str(p) for p in (run.mp4, run.webm, run.csv, run.json) if p is not None],
                        run_summary(run), run)

    def job(self, source: Path, label: str, xi: float, overlay: str, previous: VideoRun | None,
            request: gr.Request | None, progress, model: str | None = None,
            runtime: str | None = None) -> Iterator[JobSlots]:
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
                                                            model_name=self.studio.picked_name(model,
                                                                                               runtime)):
                    # a webcam recording's WebM does not say how many frames it has: a bare count then
                    progress((count, expected) if expected else None, desc=f"{label}: frame {count}",
                             unit="frames")
                    if run is None:
                        yield JobSlots.filled(gr.skip())  # a point where gradio can cancel the job
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
                  progress=gr.Progress()) -> Iterator[JobSlots]:
        """A video uploaded or recorded: analyse it with the picked ``model`` on ``runtime``."""
        if path is None:  # the input was cleared: keep the last run
            self.studio.release(request, "video")
            yield JobSlots.filled(gr.skip())
            return
        source = self._admitted(request, self.upload_source, path)
        yield from self.job(source, "uploaded video", xi, overlay, previous, request, progress, model,
                            runtime)

    def on_folder(self, label: str | None, xi: float, overlay: str, previous: VideoRun | None,
                  model: str | None = None, runtime: str | None = None, request: gr.Request = None,
                  progress=gr.Progress()) -> Iterator[JobSlots]:
        """A frame folder chosen: analyse it as a video."""
        source = self._admitted(request, self.folder_source, label)
        yield from self.job(source, label.rsplit(" (", 1)[0], xi, overlay, previous, request, progress, model,
                            runtime)

    def on_rerun(self, xi: float, overlay: str, previous: VideoRun | None, model: str | None = None,
                 runtime: str | None = None, request: gr.Request = None,
                 progress=gr.Progress()) -> Iterator[JobSlots]:
        """ξ or the overlay changed (or Analyse again): recompute the last source with the picked model."""
        if previous is None:
            self.studio.release(request, "video")
            yield JobSlots.filled(gr.skip(), state=None,
                                  notices="Upload a video, record one or choose a frame folder first.")
            return
        yield from self.job(previous.source, previous.label, xi, overlay, previous, request, progress, model,
                            runtime)

    def _admitted(self, request: gr.Request | None, check: Callable, value) -> Path:
        """``check(value)``, freeing the call's admission when it refuses (the job never starts)."""
        try:
            return check(value)
        except gr.Error:
            self.studio.release(request, "video")
            raise

    def on_stop(self, request: gr.Request = None) -> str:
        """Stop: gradio cancels the job; this frees its admission if it was still queued."""
        self.studio.release(request, "video")
        return "Stopped."

    def on_scrub(self, position: float, run: VideoRun | None) -> ScrubSlots:
        """The scrubber moved to ``position`` (% of the run): that frame of the annotated video, the timeline
        marked there, its numbers, and the player moved to its time."""
        if run is None or not run.records:
            return ScrubSlots(None, None, "", gr.skip())
        index = scrubber_frame(position, len(run.records))
        try:
            frame = read_frame(run.mp4, index)
        except (FileNotFoundError, IndexError, ValueError):
            raise user_error("This run's video is gone from the server (runs are kept 30 minutes); "
                             "press Analyse again.") from None
        return ScrubSlots(frame, timeline_figure(run.records, index), frame_markdown(run, index),
                          gr.update(playback_position=index / run.fps))

    # ------------------------------------------------------------------ API
    def api_analyze_video(self, path: str | None, xi: float | None,
                          request: gr.Request = None) -> tuple[str, list]:
        """(video file, ξ) -> (annotated MP4 (mp4v, mask overlay), per-frame list of dicts with frame, gflops,
        dense_gflops, kept_tokens, latency_ms). ξ None: the checkpoint's default."""
        with self.studio.finished(request, "video"):
            xi = self.studio.config.default_xi if xi is None else self.studio.user_xi(xi)
            source = self.upload_source(path)
            run = None
            try:
                frames = analyse_to_disk(self.studio, source, xi, "mask", self.new_folder(), "API video",
                                         playback=False)
                for _, _, run in frames:  # noqa: B007 (the last run is read below)
                    pass
            except ValueError as error:
                raise user_error(str(error)) from None
            return str(run.mp4), api_records(run.records)


def wire(tab: VideoTab, views: VideoViews, studio: Studio, pickers: list) -> None:
    outputs = views.job
    job = dict(concurrency_id=VIDEO_QUEUE, concurrency_limit=1, api_visibility="private",
               validator=studio.admit("video"))
    state, xi, overlay = views.job.state, views.xi, views.overlay
    events = [connect(views.video_in.change, tab.on_upload, [views.video_in, xi, overlay, state, *pickers],
                      outputs, **job),
              connect(views.folder_in.input, tab.on_folder, [views.folder_in, xi, overlay, state, *pickers],
                      outputs, **job)]
    for trigger in (xi.release, overlay.input, views.rerun.click):
        events.append(connect(trigger, tab.on_rerun, [xi, overlay, state, *pickers], outputs, **job))
    views.stop.click(tab.on_stop, None, views.job.notices, cancels=events, api_visibility="private")
    connect(views.job.scrubber.release, tab.on_scrub, [views.job.scrubber, state], views.scrub_outputs(),
            api_visibility="private", show_progress="minimal")

def build(studio: Studio, upload_dirs: Sequence[str | Path], folders: dict[str, Path],
          work_root: str | Path | None = None, pickers: Sequence[gr.components.Component] = ()) -> VideoTab:
    """The Video tab (call inside ``gr.Tabs``); returns the handlers (the /analyze_video API's too).
    folders: the frame folders offered (``frame_folders`` of the operator's folders); pickers: the page's
    Model and Runtime dropdowns, whose choice the tab runs (none: the default model on PyTorch)."""
    tab = VideoTab(studio, upload_dirs, folders, work_root)
    wire(tab, layout(tab), studio, list(pickers))
    return tab
