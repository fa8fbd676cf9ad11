"""The Live tab: the webcam (or any browser video source) through the int8 student frame by frame.

Plain Gradio streaming: the browser sends a frame every ``STREAM_EVERY`` s; the event has concurrency 1 and
``trigger_mode="always_last"``, so while a frame runs only the newest one waits and older ones are dropped,
never queued. ``LiveStream`` also drops a frame that arrives while one of its session runs. Each frame
is shrunk to the model's working size, segmented at the ξ of the slider (movable while it runs), and drawn
twice: where each token stopped (``dovit.viz.video.overlay_frame`` "halting") and the mask; the readout gives
the frames per second over the last frames, the FLOPs of this frame against dense and the kept share.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic

import cv2
import gradio as gr
import numpy as np

from dovit.core.stopwatch import Stopwatch
from dovit.viz.video import overlay_frame

from ..models import RUNTIMES, onnxruntime_installed
from ..slots import Slots, T, connect
from ..studio import Studio

STREAM_EVERY = 0.04  # s between frames the browser sends (25 fps at most)
FPS_WINDOW = 20  # frames the fps readout averages over
LIVE_RUNTIME = "ONNX Runtime int8"
LIVE_QUEUE = "live"


@dataclass
class LiveFrame:
    """One processed frame: the two pictures and what the readout says."""

    tokens: np.ndarray  # (H, W, 3) uint8: the frame, each token coloured by the group after which it stopped
    mask: np.ndarray  # (H, W, 3) uint8: the mask over the frame
    fps: float  # frames finished per second over the last FPS_WINDOW
    model_ms: float  # this frame's forward
    flops: int
    dense_flops: int
    kept: float  # share of patch tokens run through the last group
    xi: float
    runtime: str
    frames: int  # frames processed in this stream
    dropped: int  # frames refused because one was running

    def readout(self) -> str:
        return (
            f"**{self.fps:.{1 if self.fps >= 1 else 2}f} fps** · {self.flops / 1e9:.2f} GFLOPs per frame "
            f"(dense {self.dense_flops / 1e9:.2f}, {self.flops / max(self.dense_flops, 1):.0%}) · kept to "
            f"the end {self.kept:.0%} · ξ {self.xi:g} · model {self.model_ms:.0f} ms · {self.runtime} · "
            f"{self.frames} frames, {self.dropped} dropped"
        )


@dataclass
class LiveStream:
    """One browser session's stream: a frame at a time, the finish times for the fps."""

    finished: deque = field(default_factory=lambda: deque(maxlen=FPS_WINDOW))
    frames: int = 0
    dropped: int = 0
    busy: threading.Lock = field(default_factory=threading.Lock)
    clock: Stopwatch = field(default_factory=Stopwatch)

    @property
    def fps(self) -> float:
        if len(self.finished) < 2:
            return 0.0
        return (len(self.finished) - 1) / max(self.finished[-1] - self.finished[0], 1e-9)

    def process(self, predictor, frame: np.ndarray, xi: float, opacity: float = 0.5) -> LiveFrame | None:
        """``frame`` (H, W, 3) uint8 RGB through ``predictor`` at ``xi``; None (dropped) while one runs."""
        if not self.busy.acquire(blocking=False):
            self.dropped += 1
            return None
        try:
            height, width = predictor.working_size(image_size=frame.shape[:2])  # the frame's own aspect
            if frame.shape[:2] != (height, width):
                frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
            start = Stopwatch()
            prediction = predictor.predict_batch([frame], xi=xi, batch_size=1, dense=False)[0]
            model_ms = start.ms()
            trace, patch, size = prediction.trace, predictor.model.patch_size, prediction.working_size
            tokens = overlay_frame(frame, "halting", trace, size, patch, opacity=opacity)
            mask = overlay_frame(frame, "mask", trace, size, patch, prediction.mask,
                                 predictor.config.class_colors, opacity=opacity)
            self.frames += 1
            self.finished.append(self.clock.seconds())
            return LiveFrame(tokens, mask, self.fps, model_ms, trace.flops, trace.dense_flops,
                             trace.groups[-1].tokens / max(trace.num_tokens, 1), xi, prediction.runtime,
                             self.frames, self.dropped)
        finally:
            self.busy.release()


def live_runtime_choices() -> list[str]:
    """The Runtime choices of the tab, int8 first where onnxruntime is installed."""
    if not onnxruntime_installed():
        return ["PyTorch"]
    return [LIVE_RUNTIME] + [label for label in RUNTIMES if label != LIVE_RUNTIME]


@dataclass
class FrameSlots(Slots, Generic[T]):
    """What every camera frame fills: where each token stopped, the mask, the readout, this session's
    stream."""

    tokens: T
    mask: T
    readout: T
    stream: T


@dataclass
class LiveViews:
    """The Live tab's components, each named once; ``outputs`` is what every frame fills."""

    camera: gr.Image
    runtime: gr.Radio
    xi: gr.Slider
    readout: gr.Markdown
    tokens: gr.Image
    mask: gr.Image
    stream: gr.State  # this session's LiveStream, made on its first frame (gr.State cannot deepcopy a lock)

    def outputs(self) -> FrameSlots:
        return FrameSlots(self.tokens, self.mask, self.readout, self.stream)


def layout(studio: Studio) -> LiveViews:
    choices = live_runtime_choices()
    gr.Markdown(
        "The webcam (or any video source the browser offers as a camera) through the model frame by "
        "frame, int8 on ONNX Runtime by default: where each token stopped and the mask on every frame, "
        "the frame rate and FLOPs per frame beside it. Move ξ while it runs. A frame that arrives while "
        "one is being segmented is dropped, never queued. Press the camera's record button to start.")
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera",
                              elem_id="live-camera", webcam_options=gr.WebcamOptions(mirror=False))
            runtime = gr.Radio(choices, value=choices[0], label="Runtime", elem_id="live-runtime")
            xi = gr.Slider(0.0, 1.0, value=studio.config.default_xi, step=0.005,
                           label="ξ (moves while it runs)", elem_id="live-xi")
        with gr.Column(scale=3):
            readout = gr.Markdown("Start the camera to see the frame rate.", elem_id="live-readout")
            with gr.Row():
                tokens = gr.Image(label="Where each token stopped", interactive=False, elem_id="live-tokens")
                mask = gr.Image(label="Mask", interactive=False, elem_id="live-mask")
    return LiveViews(camera, runtime, xi, readout, tokens, mask, gr.State(None))


class LiveTab:
    """The Live tab's handler, bound to a Studio."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def on_frame(self, frame: np.ndarray | None, xi: float, runtime_label: str, live: LiveStream | None,
                 model_label: str | None = None) -> FrameSlots:
        """One camera frame's pictures and readout; skips them while the session's last one runs."""
        if frame is None:
            return FrameSlots.filled(gr.skip(), stream=live)
        predictor = self.studio.picked(model_label, runtime_label)
        live = live or LiveStream()
        result = live.process(predictor, frame, self.studio.user_xi(xi))
        if result is None:  # dropped: another frame of this session is running
            return FrameSlots.filled(gr.skip(), stream=live)
        return FrameSlots(result.tokens, result.mask, result.readout(), live)


def wire(tab: LiveTab, views: LiveViews, pickers: list) -> None:
    inputs = [views.camera, views.xi, views.runtime, views.stream, *pickers[:1]]
    connect(views.camera.stream, tab.on_frame, inputs, views.outputs(), stream_every=STREAM_EVERY,
            concurrency_limit=1, concurrency_id=LIVE_QUEUE, trigger_mode="always_last",
            api_visibility="private", show_progress="hidden")


def build(studio: Studio, pickers: Sequence[gr.components.Component] = ()) -> LiveTab:
    """The Live tab (call inside ``gr.Tabs``); returns the handler. pickers: the page's Model dropdown, whose
    model it runs (its own Runtime choice replaces the page's)."""
    tab = LiveTab(studio)
    with gr.Tab("Live", id="live"):
        views = layout(studio)
    wire(tab, views, list(pickers))
    return tab
