"""The app's event handlers, bound to one Predictor: plain values in, plain values / gr.update out.

They call the pure modules (analysis, charts, readouts, images, controls; ``dovit.drawing`` draws) and turn bad input into
``gr.Error`` messages for the user, logged as one line each. Layout and wiring are in ``app.ui``.

Sharing: the Predictor is behind ``ModelGate`` (interactive calls before sweep steps) and every model
event is admitted per session and client address (``Admission``, as the event's gradio validator) and
finished by its handler.
"""
from __future__ import annotations

import logging
import numbers
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder

from dovit import CheckpointError, Predictor, drawing
from dovit.familiarity import ConfidenceRange
from dovit.core.predictor import check_xi

from . import controls
from .analysis import Views, analyse, run_sweep, to_working_size
from .charts import sweep_figure
from .examples import ASSETS_DIR, default_examples_dir
from .images import DecodedImage, ImageInputError, load_image_file
from .header import header_markdown
from .limits import Admission, LimitError, ModelGate, ServingLimits
from .models import RUNTIMES, ModelShelf
from .readouts import agreement_markdown, prediction_summary, readouts_markdown
from .runtime import trim_heap
from .state import Session, ViewSlots

LIVE_REFRESH_MAX_MS = 250.0  # while dragging, redraw every view only if a full refresh is this fast
logger = logging.getLogger("app.studio")


def log_user_errors_to_stderr() -> None:
    """One line per refused request on stderr ("time app.studio refused: message"), once per process."""
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # one line, whatever the root logger does


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (as logging's last resort does)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def user_error(message: str) -> gr.Error:
    """A gr.Error for whoever sent the request: shown to them, and one line (no traceback) in the log."""
    logger.warning("refused: %s", message)
    return gr.Error(message, print_exception=False)


def user_number(value: object, check: Callable[[float], float], expected: str) -> float:
    """A user or API value that must be a real number (not a bool or a string) that ``check`` accepts
    (its ValueError's message is shown), or a gr.Error; ``expected`` says what was expected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise user_error(f"{expected}, got {value!r}")
    try:
        return check(value)
    except ValueError as error:
        raise user_error(str(error)) from None


def default_image_dirs() -> list[Path]:
    """Where images may be read from: gradio's upload folder, assets/ and the default example folder."""
    return [Path(get_upload_folder()), ASSETS_DIR, *filter(None, [default_examples_dir()])]


class Studio:
    """The handlers, bound to one Predictor. Each returns plain values / gr.update for its outputs.

    image_dirs: the only folders images are read from (``default_image_dirs()`` when None).
    """

    def __init__(self, predictor: Predictor, image_dirs: Sequence[str | Path] | None = None,
                 limits: ServingLimits | None = None, models: ModelShelf | None = None,
                 examples: Sequence[Path] = ()) -> None:
        self.predictor = predictor  # the default model: the APIs use it
        self.examples = [Path(p) for p in examples]  # the gallery's, in order (deep links name them by index)
        self.models = models or ModelShelf.build(predictor, None, root=None)
        self.config = predictor.config
        self.patch = int(predictor.model.patch_size)
        self.default_size = tuple(int(v) for v in self.config.input_size)
        self.default_size_value = f"{self.default_size[0]}x{self.default_size[1]}"
        self.image_dirs = [Path(d) for d in (default_image_dirs() if image_dirs is None else image_dirs)]
        self.limits = limits or ServingLimits()
        self.gate = ModelGate()
        self.admission = Admission(self.limits)
        self.refresh_ms: deque[float] = deque(maxlen=9)
        self.num_groups = self.models.max_groups  # view slots: a model with fewer groups hides the rest

    def warm_up(self) -> None:
        """One forward at the default working size, so that the first user's image is not the one that
        pays torch's first-call costs (and its prefix/dense timings, measured once per image, are fair)."""
        image = np.full((*self.default_size, 3), 127, np.uint8)
        with self.model_call():
            self.predictor.predict(image, xi=self.config.default_xi, size=self.default_size)

    @contextmanager
    def model_call(self, background: bool = False) -> Iterator[None]:
        """One caller at a time on the Predictor (it caches one image's state), interactive callers before
        ``background`` ones; afterwards the forward's freed memory goes back to the OS, so that serving
        many images does not grow the process."""
        with self.gate.hold(background):
            try:
                yield
            finally:
                trim_heap()

    # ------------------------------------------------------------------ admission
    def admit(self, kind: str = "model"):
        """The gradio validator of a model event: admits the call for its session and client address, or
        refuses it before it is queued. Its handler calls ``finished`` when it ends."""
        def validator(request: gr.Request, *inputs) -> tuple:
            try:
                self.admission.admit(request.session_hash or "", _client(request), kind)
            except LimitError as error:
                raise user_error(str(error)) from None
            return (None,) * len(inputs)  # gradio wants one value per input: None is "valid"
        return validator

    @contextmanager
    def finished(self, request: gr.Request | None, kind: str = "model") -> Iterator[None]:
        """Around a handler's work: frees its admission when it ends (None: called directly, not admitted),
        and after a refusal gives the request's freed memory back to the OS (as ``model_call`` does)."""
        try:
            yield
        except BaseException:
            trim_heap()
            raise
        finally:
            if request is not None:
                self.admission.finish(request.session_hash or "", kind)

    def forget_sweep(self, request: gr.Request | None) -> None:
        """The session's sweep was cancelled (Stop, a new image or size): if it was still queued its
        handler never runs, so its admission is freed here (a no-op when the sweep had started)."""
        if request is not None:
            self.admission.finish(request.session_hash or "", "sweep")

    # ------------------------------------------------------------------ shared pieces
    def view_names(self) -> list[str]:
        """The view outputs every refreshing handler returns, in order (one image per group/decision)."""
        return self.empty_views().names()

    def empty_views(self, message: str = "Upload an image, take a webcam snapshot or pick an example.") -> ViewSlots:
        return ViewSlots.filled(None, self.num_groups, readouts=message, legend="", halting_legend="", agreement="")

    def predictor_for(self, session: Session | None) -> Predictor:
        """The model and runtime the session picked (the default model on PyTorch before any pick)."""
        if session is None:
            return self.model_named(None)
        return self.model_named(session.model, session.runtime, session.size)

    def picked(self, label: str | None, runtime_label: str | None) -> Predictor:
        """The Predictor the page's Model and Runtime pickers name (what the Video and Data set tabs run), at
        the model's input size; None: the default model, on PyTorch."""
        return self.model_named(label, self.runtime_named(runtime_label or "PyTorch"))

    def runtime_named(self, runtime_label: str) -> str:
        """The runtime ("pytorch" or "onnxruntime") of a Runtime picker label, or a gr.Error naming the choices."""
        runtime = RUNTIMES.get(runtime_label)
        if runtime is None:
            raise user_error(f"unknown runtime {runtime_label!r}; choose one of: {', '.join(RUNTIMES)}")
        return runtime

    def picked_name(self, label: str | None, runtime_label: str | None) -> str:
        """What ``picked`` runs, in words for a summary line: "<model label> on <runtime label>"."""
        return f"{label or self.models.default_label} on {runtime_label or 'PyTorch'}"

    def model_named(self, label: str | None, runtime: str = "pytorch", size: tuple[int, int] | None = None) -> Predictor:
        """The Predictor of a model picker label (None: the default) on ``runtime``, or a gr.Error saying why not."""
        try:
            return self.models.get(label, runtime, size)
        except (ValueError, OSError, CheckpointError) as error:
            raise user_error(str(error)) from None

    def render(self, session: Session, xi: float, opacity: float) -> ViewSlots:
        """Run the forward at ξ and draw every view (the slider-to-all-views handler's work)."""
        start = time.perf_counter()
        predictor = self.predictor_for(session)
        with self.model_call():
            result: Views = analyse(predictor, session.working, xi, opacity, session.palette)
        session.color_mask, session.prediction = result.color_mask, result.prediction
        values = ViewSlots(
            readouts=readouts_markdown(result.summary),
            tokens_plot=result.tokens_figure,
            groups=_shown(result.group_overlays, self.num_groups),
            confidences=_shown(result.heatmaps, self.num_groups - 1),
            mask_overlay=result.mask_overlay,
            legend=result.legend,
            color_mask=result.color_mask,
            halting=result.halting,
            halting_legend=result.halting_legend,
            dense_mask=result.dense_color_mask,
            disagreement=result.disagreement,
            agreement=agreement_markdown(result.summary),
            sweep_plot=self.sweep_plot(session, xi),
        )
        self.refresh_ms.append((time.perf_counter() - start) * 1000.0)
        return values

    def sweep_plot(self, session: Session | None, xi: float):
        """The sweep figure with ξ marked, if this image has a sweep (None otherwise)."""
        return sweep_figure(session.sweep, xi) if session is not None and session.sweep else None

    def live_refresh_is_fast(self) -> bool:
        return bool(self.refresh_ms) and statistics.median(self.refresh_ms) <= LIVE_REFRESH_MAX_MS

    def user_xi(self, value: object) -> float:
        """ξ from a user or API value (a real number, not a bool or a string), or a gr.Error."""
        return user_number(value, check_xi, "xi must be a number in [0, 1]")

    def user_image(self, source: str | bytes | None) -> DecodedImage:
        """The decoded upload, or a gr.Error saying what was wrong (not an image, empty, too small...)."""
        try:
            return load_image_file(source, self.image_dirs, min_side=self.patch)
        except ImageInputError as error:
            raise user_error(str(error)) from None

    # ------------------------------------------------------------------ handlers
    def on_image(self, source: str | bytes | None, size_value: str, xi: float, opacity: float,
                 session: Session | None, model: str | None = None, runtime_label: str | None = None,
                 palette: str | None = None, request: gr.Request = None) -> list:
        """New upload / snapshot / example: decode, pick the working size, refresh every view (with the
        picked ``model``, a ``ModelShelf`` label, on ``runtime_label``, a ``RUNTIMES`` label, masks in ``palette``;
        None keeps the session's)."""
        self.forget_sweep(request)
        with self.finished(request):
            if source is None:
                choices = controls.working_size_choices(self.default_size, self.patch)
                return [None, "", gr.update(choices=choices), *self.empty_views().flat()]
            decoded = self.user_image(source)
            height, width = decoded.rgb.shape[:2]
            for notice in decoded.notices:
                gr.Info(notice)
            choices = controls.working_size_choices(self.default_size, self.patch, (height, width))
            if size_value not in [value for _, value in choices]:
                size_value = self.default_size_value
            size = controls.parse_size(size_value, self.default_size)
            model = model if model is not None else (session.model if session is not None else None)
            runtime = RUNTIMES.get(runtime_label) or (session.runtime if session is not None else "pytorch")
            session = Session(image=decoded.rgb, size=size, working=to_working_size(decoded.rgb, size), model=model,
                              runtime=runtime, example=self.example_index(source),
                              palette=palette if palette in drawing.PALETTES else
                              (session.palette if session is not None else "dataset"))
            notices = " · ".join([f"Image {width}×{height} px"] + decoded.notices)
            return [session, notices, gr.update(choices=choices, value=size_value),
                    *self.render(session, self.user_xi(xi), opacity).flat()]

    def example_index(self, source: str | bytes | None) -> int | None:
        """The gallery index of an example the user clicked (gradio hands over a cached copy of it, so by
        file name and size), None for an upload."""
        if not isinstance(source, str) or not Path(source).is_file():
            return None
        name, size = Path(source).name, Path(source).stat().st_size
        return next((i for i, p in enumerate(self.examples) if p.name == name and p.stat().st_size == size), None)

    def on_size(self, size_value: str, xi: float, opacity: float, session: Session | None,
                request: gr.Request = None) -> list:
        """New working resolution: resize the image once, refresh every view."""
        self.forget_sweep(request)
        with self.finished(request):
            if session is None:
                return [session, *self.empty_views().flat()]
            try:
                size = controls.parse_size(size_value, self.default_size)
            except ValueError as error:
                raise user_error(str(error)) from None
            session.size, session.working = size, to_working_size(session.image, size)
            session.sweep = session.prediction = session.policies = None
            return [session, *self.render(session, self.user_xi(xi), opacity).flat()]

    def on_drag(self, position: float, opacity: float, session: Session | None, request: gr.Request = None) -> list:
        """While dragging: ξ readout always; views too when a refresh is fast enough."""
        with self.finished(request):
            xi = controls.xi_from_position(position)
            if session is None or not self.live_refresh_is_fast():
                return [xi, session, *ViewSlots.filled(gr.skip(), self.num_groups).flat()]
            return [xi, session, *self.render(session, xi, opacity).flat()]

    def on_release(self, position: float, opacity: float, session: Session | None,
                   request: gr.Request = None) -> list:
        """Slider released at ``position``: ξ from the slider scale, refresh every view."""
        with self.finished(request):
            xi = controls.xi_from_position(position)
            if session is None:
                return [xi, session, *self.empty_views().flat()]
            return [xi, session, *self.render(session, xi, opacity).flat()]

    def on_xi_box(self, xi: float, opacity: float, session: Session | None, request: gr.Request = None) -> list:
        """ξ typed: move the slider to it, refresh every view."""
        with self.finished(request):
            xi = self.user_xi(xi)
            position = controls.position_from_xi(xi)
            if session is None:
                return [position, session, *self.empty_views().flat()]
            return [position, session, *self.render(session, xi, opacity).flat()]

    def on_reset(self, opacity: float, session: Session | None, request: gr.Request = None) -> list:
        with self.finished(request):
            xi = self.predictor_for(session).config.default_xi
            return [xi, *self.on_xi_box(xi, opacity, session)]

    def on_model(self, label: str, opacity: float, session: Session | None, request: gr.Request = None) -> list:
        """A model picked for this session: header, ξ at its default, and every view with it.
        Returns [header, ξ box, slider position, reset button, session, *views]."""
        self.forget_sweep(request)
        with self.finished(request):
            predictor = self.model_named(label)
            xi = float(predictor.config.default_xi)
            head = [header_markdown(predictor), xi, controls.position_from_xi(xi),
                    gr.update(value=f"Reset ξ to {xi:g}")]
            if session is None:
                return [*head, None, *self.empty_views().flat()]
            session.model = label
            session.sweep = session.prediction = session.policies = None
            return [*head, session, *self.render(session, xi, opacity).flat()]

    def on_runtime(self, runtime_label: str, xi: float, opacity: float, session: Session | None,
                   request: gr.Request = None) -> list:
        """PyTorch or ONNX Runtime picked for this session (the first ONNX use of a model exports it):
        every view again at this ξ. Returns [session, *views]."""
        self.forget_sweep(request)
        with self.finished(request):
            runtime = self.runtime_named(runtime_label)
            if session is None:
                return [None, *self.empty_views().flat()]
            session.runtime = runtime
            session.sweep = session.prediction = session.policies = None
            return [session, *self.render(session, self.user_xi(xi), opacity).flat()]

    def on_palette(self, palette: str, xi: float, opacity: float, session: Session | None,
                   request: gr.Request = None) -> list:
        """The masks' colours (the checkpoint's or colour-blind safe) for this session. Returns [session, *views]."""
        with self.finished(request):
            if palette not in drawing.PALETTES:
                raise user_error(f"unknown palette {palette!r}; choose one of: {', '.join(drawing.PALETTES)}")
            if session is None:
                return [None, *self.empty_views().flat()]
            session.palette = palette
            return [session, *self.render(session, self.user_xi(xi), opacity).flat()]

    def on_opacity(self, opacity: float, session: Session | None) -> np.ndarray | None:
        """Re-blend the last mask over the image: no forward needed."""
        if session is None or session.color_mask is None:
            return None
        return drawing.blend(session.working, session.color_mask, opacity)

    def on_sweep(self, xi: float, session: Session | None, request: gr.Request = None,
                 progress=gr.Progress()) -> Iterator[list]:
        """FLOPs and agreement at ``controls.sweep_values()`` for the current image, with a progress bar.

        A generator: one ξ per model turn, behind any interactive call (``model_call(background=True)``),
        so it can be cancelled between steps (the Stop button) and stops after ``limits.sweep_budget_s``
        with the points it has. Yields [sweep figure, session] once, at the end.
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
                    gr.Warning(f"The ξ sweep stopped after {self.limits.sweep_budget_s:.0f} s with {len(points)} "
                               f"of {len(xis)} values (a smaller working resolution sweeps faster).")
                    break
                with self.model_call(background=True):
                    points += run_sweep(self.predictor_for(session), session.working, [value])
                progress((len(points), len(xis)), desc="ξ sweep")
                yield [gr.skip(), gr.skip()]  # a point where gradio can cancel the sweep
            session.sweep = points
            yield [sweep_figure(points, xi), session]

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
                prediction = self.predictor.predict(decoded.rgb, xi=xi, size=self.default_size)
            summary = prediction_summary(prediction, ConfidenceRange.from_metadata(
                self.predictor.model.checkpoint_metadata)).to_dict() | {"notices": decoded.notices}
            return drawing.colorize_mask(prediction.mask, self.config.class_colors), summary


    def api_trace(self, image: str | bytes | None, xi: float | None, request: gr.Request = None) -> dict:
        """(image file, ξ) -> the token pass as JSON (``dovit.Trace.to_json``) at the default working size."""
        with self.finished(request):
            xi = self.config.default_xi if xi is None else self.user_xi(xi)
            decoded = self.user_image(image)
            with self.model_call():
                prediction = self.predictor.predict(decoded.rgb, xi=xi, size=self.default_size)
            return {**prediction.trace.to_json(), "notices": decoded.notices}


def _shown(images: list[tuple[np.ndarray, str]], slots: int) -> list[dict]:
    """Updates for ``slots`` image slots: each (image, caption) shown, the slots beyond them (a model with
    fewer token groups than the page has slots for) emptied and hidden."""
    shown = [gr.update(value=image, label=caption, visible=True) for image, caption in images]
    return shown + [gr.update(value=None, visible=False)] * (slots - len(shown))


def _client(request: gr.Request) -> str:
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"
