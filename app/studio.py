"""The app's event handlers, bound to one Predictor: plain values in, plain values / gr.update out.

They call the pure modules (analysis, charts, readouts, images, controls; ``dovit.viz.drawing`` draws) and
turn bad input into ``gr.Error`` messages for the user, logged as one line each. Layout and wiring are in
``app.ui``.

Sharing: the Predictor is behind ``ModelGate`` (interactive calls before sweep steps) and every model
event is admitted per session and client address (``Admission``, as the event's gradio validator) and
finished by its handler.
"""
from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder

from dovit import CheckpointError, Predictor
from dovit.core.predictor import check_xi
from dovit.core.stopwatch import Stopwatch

from .analysis import Views, render_views
from .charts import sweep_figure
from .errors import log_user_errors_to_stderr, user_error, user_number  # noqa: F401 (the app's names)
from .examples import ASSETS_DIR, default_examples_dir
from .images import DecodedImage, ImageInputError, load_image_file
from .limits import Admission, LimitError, ModelGate, ServingLimits
from .models import RUNTIMES, ModelShelf
from .page import PageEvents
from .readouts import agreement_markdown, readouts_markdown
from .runtime import trim_heap
from .state import Session, ViewSlots

LIVE_REFRESH_MAX_MS = 250.0  # while dragging, redraw every view only if a full refresh is this fast


def default_image_dirs() -> list[Path]:
    """Where images may be read from: gradio's upload folder, assets/ and the default example folder."""
    return [Path(get_upload_folder()), ASSETS_DIR, *filter(None, [default_examples_dir()])]


class Studio(PageEvents):
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
            self.release(request, kind)

    def release(self, request: gr.Request | None, kind: str = "model") -> None:
        """Free the admission of ``request``'s ``kind`` of call (None: not admitted; a no-op when none is
        held): the one place admissions end, from ``finished`` or from a handler that will not run its
        work."""
        if request is not None:
            self.admission.finish(request.session_hash or "", kind)

    def forget_sweep(self, request: gr.Request | None) -> None:
        """The session's sweep was cancelled (Stop, a new image or size): if it was still queued its
        handler never runs, so its admission is freed here (a no-op when the sweep had started)."""
        self.release(request, "sweep")

    # ------------------------------------------------------------------ shared pieces
    def view_names(self) -> list[str]:
        """The view outputs every refreshing handler returns, in order (one image per group/decision)."""
        return self.empty_views().names()

    def empty_views(self, message: str = "Upload an image, take a webcam snapshot or pick an "
                                         "example.") -> ViewSlots:
        return ViewSlots.filled(None, self.num_groups, readouts=message, legend="", halting_legend="",
                                agreement="")

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
        """The runtime ("pytorch" or "onnxruntime") of a Runtime picker label, or a gr.Error naming the
        choices."""
        runtime = RUNTIMES.get(runtime_label)
        if runtime is None:
            raise user_error(f"unknown runtime {runtime_label!r}; choose one of: {', '.join(RUNTIMES)}")
        return runtime

    def picked_name(self, label: str | None, runtime_label: str | None) -> str:
        """What ``picked`` runs, in words for a summary line: "<model label> on <runtime label>"."""
        return f"{label or self.models.default_label} on {runtime_label or 'PyTorch'}"

    def model_named(self, label: str | None, runtime: str = "pytorch",
                    size: tuple[int, int] | None = None) -> Predictor:
        """The Predictor of a model picker label (None: the default) on ``runtime``, or a gr.Error saying why
        not."""
        try:
            return self.models.get(label, runtime, size)
        except (ValueError, OSError, CheckpointError) as error:
            raise user_error(str(error)) from None

    def render(self, session: Session, xi: float, opacity: float) -> ViewSlots:
        """Run the forward at ξ and draw every view (the slider-to-all-views handler's work)."""
        start = Stopwatch()
        predictor = self.predictor_for(session)
        with self.model_call():
            result: Views = render_views(predictor, session.display, xi, opacity, session.palette,
                                         session.size)
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
            halting_by_class=result.halting_figure,
        )
        self.refresh_ms.append(start.ms())
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


def _shown(images: list[tuple[np.ndarray, str]], slots: int) -> list[dict]:
    """Updates for ``slots`` image slots: each (image, caption) shown, the slots beyond them (a model with
    fewer token groups than the page has slots for) emptied and hidden."""
    shown = [gr.update(value=image, label=caption, visible=True) for image, caption in images]
    return shown + [gr.update(value=None, visible=False)] * (slots - len(shown))


def _client(request: gr.Request) -> str:
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"
