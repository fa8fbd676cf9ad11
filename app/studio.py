"""The app's event handlers, bound to one Predictor: plain values in, plain values / gr.update out.

They call the pure modules (analysis, views, charts, readouts, images, controls) and turn bad input into
``gr.Error`` messages for the user. Layout and wiring are in ``app.ui``.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import gradio as gr
import numpy as np

from dovit import Predictor
from dovit.predictor import check_xi

from . import controls, views
from .analysis import Views, analyse, run_sweep, to_working_size
from .charts import sweep_figure
from .images import DecodedImage, ImageInputError, load_image_file
from .readouts import agreement_markdown, prediction_summary, readouts_markdown
from .runtime import trim_heap

LIVE_REFRESH_MAX_MS = 250.0  # while dragging, redraw every view only if a full refresh is this fast


class Studio:
    """The handlers, bound to one Predictor. Each returns plain values / gr.update for its outputs.

    Session state (a dict per browser tab): image (H0, W0, 3) uint8 as decoded, size (H, W) working
    resolution, working (H, W, 3) uint8, color_mask of the last forward, sweep points or None.
    """

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.config = predictor.config
        self.patch = int(predictor.model.patch_size)
        self.default_size = tuple(int(v) for v in self.config.input_size)
        self.default_size_value = f"{self.default_size[0]}x{self.default_size[1]}"
        self.lock = threading.Lock()
        self.refresh_ms: deque[float] = deque(maxlen=9)
        self.num_groups = len(predictor.model.decision_layers) + 1

    def warm_up(self) -> None:
        """One forward at the default working size, so that the first user's image is not the one that
        pays torch's first-call costs (and its prefix/dense timings, measured once per image, are fair)."""
        image = np.full((*self.default_size, 3), 127, np.uint8)
        with self.model_call():
            self.predictor.predict(image, xi=self.config.default_xi, size=self.default_size)

    @contextmanager
    def model_call(self) -> Iterator[None]:
        """One caller at a time on the Predictor (it caches one image's state); afterwards the forward's
        freed memory goes back to the OS, so that serving many images does not grow the process."""
        with self.lock:
            try:
                yield
            finally:
                trim_heap()

    # ------------------------------------------------------------------ shared pieces
    def view_names(self) -> list[str]:
        """The view outputs every refreshing handler returns, in order (one image per group/decision)."""
        groups = [f"group_{g}" for g in range(1, self.num_groups + 1)]
        decisions = [f"confidence_{d}" for d in range(1, self.num_groups)]
        return ["readouts", "tokens_plot", *groups, *decisions, "mask_overlay", "legend", "color_mask",
                "halting", "halting_legend", "dense_mask", "disagreement", "agreement", "sweep_plot"]

    def empty_views(self, message: str = "Upload an image, take a webcam snapshot or pick an example.") -> list:
        values = dict.fromkeys(self.view_names())
        values.update(readouts=message, legend="", halting_legend="", agreement="")
        return list(values.values())

    def render(self, session: dict, xi: float, opacity: float) -> list:
        """Run the forward at ξ and draw every view (the slider-to-all-views handler's work)."""
        start = time.perf_counter()
        with self.model_call():
            result: Views = analyse(self.predictor, session["working"], xi, opacity)
        session["color_mask"] = result.color_mask
        values = {
            "readouts": readouts_markdown(result.summary),
            "tokens_plot": result.tokens_figure,
            "mask_overlay": result.mask_overlay,
            "legend": result.legend,
            "color_mask": result.color_mask,
            "halting": result.halting,
            "halting_legend": result.halting_legend,
            "dense_mask": result.dense_color_mask,
            "disagreement": result.disagreement,
            "agreement": agreement_markdown(result.summary),
            "sweep_plot": self.sweep_plot(session, xi),
        }
        for prefix, captioned in (("group", result.group_overlays), ("confidence", result.heatmaps)):
            for index, (image, caption) in enumerate(captioned, start=1):
                values[f"{prefix}_{index}"] = gr.update(value=image, label=caption)
        self.refresh_ms.append((time.perf_counter() - start) * 1000.0)
        return [values[name] for name in self.view_names()]

    def sweep_plot(self, session: dict | None, xi: float):
        """The sweep figure with ξ marked, if this image has a sweep (None otherwise)."""
        points = (session or {}).get("sweep")
        return sweep_figure(points, xi) if points else None

    def live_refresh_is_fast(self) -> bool:
        return bool(self.refresh_ms) and statistics.median(self.refresh_ms) <= LIVE_REFRESH_MAX_MS

    def user_xi(self, value: object) -> float:
        """ξ from a user or API value, or a gr.Error saying what was wrong."""
        try:
            return check_xi(value)
        except ValueError as error:
            raise gr.Error(str(error)) from None

    def user_image(self, source: str | bytes | None) -> DecodedImage:
        """The decoded upload, or a gr.Error saying what was wrong (not an image, empty, too small...)."""
        try:
            return load_image_file(source, min_side=self.patch)
        except ImageInputError as error:
            raise gr.Error(str(error)) from None

    # ------------------------------------------------------------------ handlers
    def on_image(self, source: str | bytes | None, size_value: str, xi: float, opacity: float,
                 session: dict | None) -> list:
        """New upload / snapshot / example: decode, pick the working size, refresh every view."""
        if source is None:
            choices = controls.working_size_choices(self.default_size, self.patch)
            return [None, "", gr.update(choices=choices), *self.empty_views()]
        decoded = self.user_image(source)
        height, width = decoded.rgb.shape[:2]
        for notice in decoded.notices:
            gr.Info(notice)
        choices = controls.working_size_choices(self.default_size, self.patch, (height, width))
        if size_value not in [value for _, value in choices]:
            size_value = self.default_size_value
        size = controls.parse_size(size_value, self.default_size)
        session = {"image": decoded.rgb, "size": size, "working": to_working_size(decoded.rgb, size), "sweep": None}
        notices = " · ".join([f"Image {width}×{height} px"] + decoded.notices)
        return [session, notices, gr.update(choices=choices, value=size_value),
                *self.render(session, self.user_xi(xi), opacity)]

    def on_size(self, size_value: str, xi: float, opacity: float, session: dict | None) -> list:
        """New working resolution: resize the image once, refresh every view."""
        if session is None:
            return [session, *self.empty_views()]
        try:
            size = controls.parse_size(size_value, self.default_size)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        session.update(size=size, working=to_working_size(session["image"], size), sweep=None)
        return [session, *self.render(session, self.user_xi(xi), opacity)]

    def on_drag(self, position: float, opacity: float, session: dict | None) -> list:
        """While dragging: ξ readout always; views too when a refresh is fast enough."""
        xi = controls.xi_from_position(position)
        if session is None or not self.live_refresh_is_fast():
            return [xi, session, *[gr.skip()] * len(self.empty_views())]
        return [xi, session, *self.render(session, xi, opacity)]

    def on_release(self, position: float, opacity: float, session: dict | None) -> list:
        """Slider released at ``position``: ξ from the slider scale, refresh every view."""
        xi = controls.xi_from_position(position)
        if session is None:
            return [xi, session, *self.empty_views()]
        return [xi, session, *self.render(session, xi, opacity)]

    def on_xi_box(self, xi: float, opacity: float, session: dict | None) -> list:
        """ξ typed: move the slider to it, refresh every view."""
        xi = self.user_xi(xi)
        position = controls.position_from_xi(xi)
        if session is None:
            return [position, session, *self.empty_views()]
        return [position, session, *self.render(session, xi, opacity)]

    def on_reset(self, opacity: float, session: dict | None) -> list:
        xi = self.config.default_xi
        return [xi, *self.on_xi_box(xi, opacity, session)]

    def on_opacity(self, opacity: float, session: dict | None) -> np.ndarray | None:
        """Re-blend the last mask over the image: no forward needed."""
        if session is None or session.get("color_mask") is None:
            return None
        return views.blend(session["working"], session["color_mask"], opacity)

    def on_sweep(self, xi: float, session: dict | None, progress=gr.Progress()) -> list:
        """FLOPs and agreement at ``controls.sweep_values()`` for the current image, with a progress bar."""
        if session is None:
            raise gr.Error("Upload an image first: the sweep runs on the current image.")
        xis = controls.sweep_values()
        progress((0, len(xis)), desc="ξ sweep")
        with self.model_call():
            points = run_sweep(self.predictor, session["working"], xis,
                               on_step=lambda done, total: progress((done, total), desc="ξ sweep"))
        session["sweep"] = points
        return [sweep_figure(points, self.user_xi(xi)), session]

    def api_predict(self, image: str | bytes | None, xi: float | None) -> tuple[np.ndarray, dict]:
        """(image file, ξ) -> (colour mask at the image's resolution, summary dict). ξ None = default."""
        xi = self.config.default_xi if xi is None else self.user_xi(xi)
        decoded = self.user_image(image)
        with self.model_call():
            prediction = self.predictor.predict(decoded.rgb, xi=xi, size=self.default_size)
        summary = prediction_summary(prediction)
        summary["notices"] = decoded.notices
        return views.colorize_mask(prediction.mask, self.config.class_colors), summary
