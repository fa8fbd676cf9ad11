"""The page's event handlers (image, size, ξ, model, runtime, palette, opacity, sweep) and the /predict and
/trace APIs, as ``Studio``'s methods (``PageEvents`` is its base): plain values in, plain values out. Each
event's outputs are one ``app.slots.Slots`` below (``app.ui`` wires them), every view a ``ViewSlots``."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic

import gradio as gr
import numpy as np

from dovit.evaluation.confidence_range import ConfidenceRange
from dovit.viz import drawing

from . import controls
from .analysis import run_sweep
from .charts import sweep_figure
from .errors import user_error
from .header import header_markdown
from .models import RUNTIMES
from .readouts import prediction_summary
from .slots import Slots, T
from .state import Session, ViewSlots


@dataclass
class Refresh(Slots, Generic[T]):
    """A new forward (size, runtime, palette): the session, then every view."""

    session: T
    views: ViewSlots[T]


@dataclass
class ImageRefresh(Slots, Generic[T]):
    """A new image: the session, its notices, the working sizes it offers, every view."""

    session: T
    notices: T
    size: T
    views: ViewSlots[T]


@dataclass
class SliderRefresh(Slots, Generic[T]):
    """The ξ slider moved: the ξ box follows it; session and views."""

    xi_box: T
    refresh: Refresh[T]


@dataclass
class XiBoxRefresh(Slots, Generic[T]):
    """ξ typed in its box: the slider follows it; session and views."""

    xi_slider: T
    refresh: Refresh[T]


@dataclass
class ResetRefresh(Slots, Generic[T]):
    """ξ reset to the model's default: both ξ controls, session and views."""

    xi_box: T
    xi_slider: T
    refresh: Refresh[T]


@dataclass
class ModelRefresh(Slots, Generic[T]):
    """A model picked: its header, its default ξ in both controls and on the reset button; session, views."""

    header: T
    xi_box: T
    xi_slider: T
    reset: T
    refresh: Refresh[T]


@dataclass
class SweepResult(Slots, Generic[T]):
    """A ξ sweep's figure and the session that keeps its points."""

    sweep_plot: T
    session: T


class PageEvents:
    """``Studio``'s page handlers; they use its model access, admission and rendering."""

    def on_image(self, source: str | bytes | None, size_value: str, xi: float, opacity: float,
                 session: Session | None, model: str | None = None, runtime_label: str | None = None,
                 palette: str | None = None, request: gr.Request = None) -> ImageRefresh:
        """New upload / snapshot / example: decode, pick the working size, refresh every view (with the
        picked ``model``, a ``ModelShelf`` label, on ``runtime_label``, a ``RUNTIMES`` label, masks in
        ``palette``; None keeps the session's)."""
        self.forget_sweep(request)
        with self.finished(request):
            if source is None:
                choices = controls.working_size_choices(self.default_size, self.patch)
                return ImageRefresh(None, "", gr.update(choices=choices), self.empty_views())
            decoded = self.user_image(source)
            height, width = decoded.rgb.shape[:2]
            for notice in decoded.notices:
                gr.Info(notice)
            choices = controls.working_size_choices(self.default_size, self.patch, (height, width))
            # a scale picked by hand stays; otherwise the image's own aspect at the same token budget
            if size_value not in [value for _, value in choices] or size_value == self.default_size_value:
                size_value = controls.default_size_value(self.default_size, self.patch, (height, width))
            size = controls.parse_size(size_value, self.default_size)
            model = model if model is not None else (session.model if session is not None else None)
            runtime = RUNTIMES.get(runtime_label) or (session.runtime if session is not None else "pytorch")
            session = Session.of_image(decoded.rgb, size, model=model, runtime=runtime,
                                       example=self.example_index(source),
                                       palette=palette if palette in drawing.PALETTES else
                                       (session.palette if session is not None else "dataset"))
            notices = " · ".join([f"Image {width}×{height} px"] + decoded.notices)
            return ImageRefresh(session, notices, gr.update(choices=choices, value=size_value),
                                self.render(session, self.user_xi(xi), opacity))

    def example_index(self, source: str | bytes | None) -> int | None:
        """The gallery index of an example the user clicked (gradio hands over a cached copy of it, so by
        file name and size), None for an upload."""
        if not isinstance(source, str) or not Path(source).is_file():
            return None
        name, size = Path(source).name, Path(source).stat().st_size
        return next((i for i, p in enumerate(self.examples) if p.name == name and p.stat().st_size == size),
                    None)

    def on_size(self, size_value: str, xi: float, opacity: float, session: Session | None,
                request: gr.Request = None) -> Refresh:
        """New working resolution: resize the image once, refresh every view."""
        self.forget_sweep(request)
        with self.finished(request):
            if session is None:
                return Refresh(session, self.empty_views())
            try:
                size = controls.parse_size(size_value, self.default_size)
            except ValueError as error:
                raise user_error(str(error)) from None
            session.resize(size)
            session.sweep = session.prediction = session.policies = None
            return self.refresh(session, self.user_xi(xi), opacity)

    def on_drag(self, position: float, opacity: float, session: Session | None,
                request: gr.Request = None) -> SliderRefresh:
        """While dragging: ξ readout always; views too when a refresh is fast enough."""
        with self.finished(request):
            xi = controls.xi_from_position(position)
            if session is None or not self.live_refresh_is_fast():
                return SliderRefresh(xi, Refresh(session, ViewSlots.filled(gr.skip(), self.num_groups)))
            return SliderRefresh(xi, self.refresh(session, xi, opacity))

    def on_release(self, position: float, opacity: float, session: Session | None,
                   request: gr.Request = None) -> SliderRefresh:
        """Slider released at ``position``: ξ from the slider scale, refresh every view."""
        with self.finished(request):
            xi = controls.xi_from_position(position)
            return SliderRefresh(xi, self.refresh(session, xi, opacity))

    def on_xi_box(self, xi: float, opacity: float, session: Session | None,
                  request: gr.Request = None) -> XiBoxRefresh:
        """ξ typed: move the slider to it, refresh every view."""
        with self.finished(request):
            xi = self.user_xi(xi)
            position = controls.position_from_xi(xi)
            return XiBoxRefresh(position, self.refresh(session, xi, opacity))

    def on_reset(self, opacity: float, session: Session | None, request: gr.Request = None) -> ResetRefresh:
        with self.finished(request):
            xi = self.predictor_for(session).config.default_xi
            typed = self.on_xi_box(xi, opacity, session)
            return ResetRefresh(xi, typed.xi_slider, typed.refresh)

    def on_model(self, label: str, opacity: float, session: Session | None,
                 request: gr.Request = None) -> ModelRefresh:
        """A model picked for this session: header, ξ at its default, and every view with it."""
        self.forget_sweep(request)
        with self.finished(request):
            predictor = self.model_named(label)
            xi = float(predictor.config.default_xi)
            if session is not None:
                session.model = label
                session.sweep = session.prediction = session.policies = None
            return ModelRefresh(header_markdown(predictor), xi, controls.position_from_xi(xi),
                                gr.update(value=f"Reset ξ to {xi:g}"), self.refresh(session, xi, opacity))

    def on_runtime(self, runtime_label: str, xi: float, opacity: float, session: Session | None,
                   request: gr.Request = None) -> Refresh:
        """PyTorch or ONNX Runtime picked for this session (the first ONNX use of a model exports it):
        every view again at this ξ."""
        self.forget_sweep(request)
        with self.finished(request):
            runtime = self.runtime_named(runtime_label)
            if session is None:
                return Refresh(None, self.empty_views())
            session.runtime = runtime
            session.sweep = session.prediction = session.policies = None
            return self.refresh(session, self.user_xi(xi), opacity)

    def on_palette(self, palette: str, xi: float, opacity: float, session: Session | None,
                   request: gr.Request = None) -> Refresh:
        """The masks' colours (the checkpoint's or colour-blind safe) for this session."""
        with self.finished(request):
            if palette not in drawing.PALETTES:
                raise user_error(f"unknown palette {palette!r}; choose one of: {', '.join(drawing.PALETTES)}")
            if session is None:
                return Refresh(None, self.empty_views())
            session.palette = palette
            return self.refresh(session, self.user_xi(xi), opacity)

    def refresh(self, session: Session | None, xi: float, opacity: float) -> Refresh:
        """The session and every view at ξ (``render``), or the empty views without a session."""
        return Refresh(session, self.empty_views() if session is None else self.render(session, xi, opacity))

    def on_opacity(self, opacity: float, session: Session | None) -> np.ndarray | None:
        """Re-blend the last mask over the image: no forward needed."""
        if session is None or session.color_mask is None:
            return None
        return drawing.blend(session.display, session.color_mask, opacity)

    def on_sweep(self, xi: float, session: Session | None, request: gr.Request = None,
                 progress=gr.Progress()) -> Iterator[SweepResult]:
        """FLOPs and agreement at ``controls.sweep_values()`` for the current image, with a progress bar.

        A generator: one ξ per model turn, behind any interactive call (``model_call(background=True)``),
        so it can be cancelled between steps (the Stop button) and stops after ``limits.sweep_budget_s``
        with the points it has. Yields the figure and the session once, at the end.
        """
        with self.finished(request, "sweep"):
            if session is None:
                raise user_error("Upload an image first: the sweep runs on the current image.")
            xi = self.user_xi(xi)
            xis = controls.sweep_values()
            progress((0, len(xis)), desc="ξ sweep")
            points, start = [], time.monotonic()
            for value in xis:
                if points and time.monotonic() - start > self.limits.sweep_budget_s:
                    gr.Warning(f"The ξ sweep stopped after {self.limits.sweep_budget_s:.0f} s with "
                               f"{len(points)} of {len(xis)} values (a smaller working resolution sweeps "
                               "faster).")
                    break
                with self.model_call(background=True):
                    points += run_sweep(self.predictor_for(session), session.display, [value],
                                        working_size=session.size)
                progress((len(points), len(xis)), desc="ξ sweep")
                yield SweepResult.filled(gr.skip())  # a point where gradio can cancel the sweep
            session.sweep = points
            yield SweepResult(sweep_figure(points, xi), session)

    def on_stop_sweep(self, request: gr.Request = None) -> None:
        """The Stop button: gradio cancels the sweep event; this frees its admission if it was queued."""
        self.forget_sweep(request)

    def api_predict(self, image: str | bytes | None, xi: float | None,
                    request: gr.Request = None) -> tuple[np.ndarray, dict]:
        """(image file, ξ) -> (colour mask at the image's resolution, summary dict). ξ None = default."""
        with self.finished(request):
            xi = self.config.default_xi if xi is None else self.user_xi(xi)
            decoded = self.user_image(image)
            with self.model_call():
                prediction = self.predictor.predict(decoded.rgb, xi=xi)  # at the image's own aspect
            summary = prediction_summary(prediction, ConfidenceRange.from_metadata(
                self.predictor.model.checkpoint_metadata)).to_dict() | {"notices": decoded.notices}
            return drawing.colorize_mask(prediction.mask, self.config.class_colors), summary


    def api_trace(self, image: str | bytes | None, xi: float | None, request: gr.Request = None) -> dict:
        """(image file, ξ) -> the token pass as JSON (``dovit.Trace.to_json``) at the image's default
        working size (its own aspect at the checkpoint's token budget)."""
        with self.finished(request):
            xi = self.config.default_xi if xi is None else self.user_xi(xi)
            decoded = self.user_image(image)
            with self.model_call():
                prediction = self.predictor.predict(decoded.rgb, xi=xi)  # at the image's own aspect
            return {**prediction.trace.to_json(), "notices": decoded.notices}

