"""The API-only endpoints (/predict, /export, /trace, /inspect_token, /analyze_video) and the input components
whose values reach the handlers untouched, so that ``app.images`` and ``Studio.user_xi`` judge them."""
from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

from .images import ImageInputError, decode_data_url
from .limits import ServingLimits
from .sharing import ExportHandlers
from .studio import Studio, user_error
from .tabs.inspector import TokenInspector

if TYPE_CHECKING:
    from .tabs.video import VideoTab

PREDICT_QUEUE = "predict"
VIDEO_QUEUE = "video"  # the Video tab's jobs and /analyze_video: one at a time


def upload_image(**kwargs) -> gr.Image:
    """A gr.Image whose value reaches the handler untouched: the upload's path (bytes for a data URL).

    gradio's own Image preprocessing opens the file with PIL, so a corrupt upload would fail inside
    gradio with a generic error; here decoding, EXIF, bit depth and messages are ``app.images``' job.
    The instance's preprocess is replaced (a gr.Image subclass would make gradio write a .pyi stub
    next to this file).
    """
    component = gr.Image(type="filepath", image_mode=None, **kwargs)
    component.preprocess = _raw_upload  # type: ignore[method-assign]
    return component


def _raw_upload(payload):
    """The upload's path as sent (``Studio.user_image`` decides whether it may be read) or, for a data:
    URL, its bytes under the same size cap as a file."""
    if payload is None:
        return None
    if payload.url and payload.url.startswith("data:"):
        try:
            return decode_data_url(payload.url)
        except ImageInputError as error:
            raise user_error(str(error)) from None
    return payload.path


def raw_number(**kwargs) -> gr.Number:
    """A gr.Number whose value reaches the handler as sent (gradio's own preprocessing turns True and
    "0.5" into floats; ``Studio.user_xi`` refuses anything but a number)."""
    component = gr.Number(**kwargs)
    component.preprocess = lambda payload: payload  # type: ignore[method-assign]
    return component


def add_api_endpoints(studio: Studio, inspector: TokenInspector, exports: ExportHandlers, videos: VideoTab,
                      limits: ServingLimits) -> None:
    """/predict, /export, /trace and /inspect_token: API-only endpoints in the /predict queue; /analyze_video
    in the Video tab's queue, admitted as the session's one video job."""
    default_xi = studio.predictor.config.default_xi

    def image_and_xi() -> list:
        return [upload_image(label="image"), raw_number(value=default_xi, label="xi")]

    api_endpoint("predict", studio.api_predict, image_and_xi,
                 lambda: [gr.Image(format="png", label="colour mask"), gr.JSON(label="summary")], studio,
                 "Segment an image at token-pass threshold xi in [0, 1] (None: checkpoint default), at its "
                 "own aspect with the checkpoint's token budget. Returns the colour mask at the image's "
                 "resolution (images over "
                 "2048 px are downscaled first, see summary['notices']) and a summary with gflops, "
                 "dense_gflops, kept_tokens per group, latency_ms, dense_latency_ms, xi. At most "
                 f"{limits.pending_per_session} calls per client session may wait or run at a time.")
    api_endpoint("export", exports.api_export, image_and_xi, lambda: gr.File(label="zip"), studio,
                 "Every view of an image at threshold xi (None: checkpoint default), at its own aspect with "
                 "the checkpoint's token budget, as one ZIP: the views as PNG, the charts as PNG and "
                 "interactive HTML, the "
                 "per-token trace as JSON and CSV, and a README (model, xi, working size, GFLOPs, latency). "
                 "Admitted like /predict.")
    api_endpoint("trace", studio.api_trace, image_and_xi, lambda: gr.JSON(label="trace"), studio,
                 "The token pass of an image at threshold xi (None: checkpoint default), at its own aspect "
                 "with the checkpoint's token budget, as JSON: grid [rows, cols], decision_layers, "
                 "confidence (decisions x rows x "
                 "cols, the aux heads' q_l), halting_group (rows x cols: the group after which each token "
                 "stopped; the number of groups when it ran every block), kept_tokens per group, gflops, "
                 "dense_gflops, halting_by_class ({class name: tokens stopped after each group, the last "
                 "= ran every block}, summing to the grid's tokens). Admitted like /predict.")
    api_endpoint("inspect_token", inspector.api_inspect_token,
                 lambda: [*image_and_xi(), raw_number(value=0, label="row"), raw_number(value=0,
                                                                                        label="col")],
                 lambda: gr.JSON(label="token"), studio,
                 "One token's story at token-pass threshold xi (None: checkpoint default), at the image's "
                 "own aspect with the checkpoint's token budget: row and col index its token grid. "
                 "Returns JSON: confidences (q "
                 "at each decision layer, in decision order), aux_heads (top3 classes per head), decoder "
                 "top3 (at the token's centre pixel), halting_group, dense_class, dovit_class, grid. "
                 "Admitted like /predict.")
    api_endpoint("analyze_video", videos.api_analyze_video,
                 lambda: [raw_value(gr.File(label="video", file_types=["video"])),
                          raw_value(gr.Number(value=default_xi, label="xi"))],
                 lambda: [gr.File(label="annotated MP4"), gr.JSON(label="frames")], studio,
                 "Run DoViT over a video (MP4/MOV, WebM/MKV, AVI, at most "
                 f"{limits.video_max_bytes / 2**20:.0f} MB) at token-pass threshold xi in [0, 1] "
                 "(None: the checkpoint's default). Returns the annotated MP4 (mp4v; segmentation "
                 "mask overlay) and a list with one dict per frame: frame, gflops, dense_gflops, "
                 f"kept_tokens (per group), latency_ms. At most {limits.video_max_frames} frames "
                 f"(the first), shrunk to {limits.video_max_side} px a side, "
                 f"{limits.video_budget_s:.0f} s; one video job per session at a time.",
                 queue=VIDEO_QUEUE, kind="video")


def api_endpoint(name: str, fn, make_inputs, make_outputs, studio: Studio, description: str,
                 queue: str = PREDICT_QUEUE, kind: str = "model") -> None:
    """An API-only endpoint ``/name``: its own components in a hidden row (not part of the page) and a button
    that only gradio_client and HTTP calls reach, in ``queue``, admitted as a ``kind`` of call."""
    with gr.Row(visible=False):
        inputs, outputs, trigger = make_inputs(), make_outputs(), gr.Button(name)
    trigger.click(fn, inputs=inputs, outputs=outputs, api_name=name, concurrency_id=queue,
                  concurrency_limit=1, validator=studio.admit(kind), api_description=description)


def raw_value(component):
    """``component`` whose value reaches the handler as sent: a file's path (gradio's own Video
    preprocessing would run ffmpeg, absent here, on webcam clips), a number unconverted."""
    def preprocess(payload):
        return getattr(payload, "path", payload) if payload is not None else None
    component.preprocess = preprocess  # type: ignore[method-assign]
    return component
