"""The token inspector's gradio side: a side panel (``build_panel``), the handlers that fill it from the
session's cached forward (``TokenInspector``), their wiring to every view image (``wire``) and the
/inspect_token API's handler. The computing and drawing is in ``app.inspector`` (pure).

A click, an arrow key or a typed row/col never runs the model: the panel reads ``Session.prediction``,
the forward behind the views on the page. Only /inspect_token, which gets an image and ξ of its own,
runs a forward, through ``Studio`` like /predict (and keeps its last one, so asking about many tokens of
one image at one ξ runs it once).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic

import gradio as gr
import numpy as np

from dovit.core.predictor import image_key

from .. import inspector, inspector_drawing
from ..analysis import to_working_size
from ..slots import Slots, T, connect
from ..state import Session
from ..studio import Studio, user_error

EMPTY_PANEL = "Click any token on any view (or type a row and column) to follow it through the network."


@dataclass
class PanelSlots(Slots, Generic[T]):
    """What every inspector event fills: the token's row and col, its story, its confidence chart, where it is
    in the image, and the side panel (opened on a pick)."""

    row: T
    col: T
    text: T
    chart: T
    marker: T
    sidebar: T


@dataclass
class InspectorPanel:
    """The side panel's components; ``outputs()`` is what every inspector event fills."""

    sidebar: gr.Sidebar
    row: gr.Number
    col: gr.Number
    text: gr.Markdown
    chart: gr.HTML
    marker: gr.Image
    moves: dict[str, gr.Button]

    def outputs(self) -> PanelSlots:
        return PanelSlots(self.row, self.col, self.text, self.chart, self.marker, self.sidebar)


def build_panel() -> InspectorPanel:
    """The inspector's side panel (right, closed until a token is picked). Call inside the gr.Blocks."""
    with gr.Sidebar(label="Token inspector", open=False, position="right", width=420,
                    elem_id="inspector") as sidebar:
        with gr.Row():
            row = gr.Number(label="row", precision=0, minimum=0, elem_id="inspect-row", min_width=80)
            col = gr.Number(label="col", precision=0, minimum=0, elem_id="inspect-col", min_width=80)
        with gr.Row():
            moves = {direction: gr.Button(symbol, size="sm", min_width=40, elem_id=f"inspect-{direction}")
                     for direction, symbol in (("left", "←"), ("up", "↑"), ("down", "↓"), ("right", "→"))}
        text = gr.Markdown(EMPTY_PANEL, elem_id="inspector-panel")
        chart = gr.HTML(elem_id="inspector-chart")
        marker = gr.Image(label="where the token is", format="jpeg", interactive=False, height=180,
                          elem_id="inspector-marker", buttons=[])
    return InspectorPanel(sidebar, row, col, text, chart, marker, moves)


class TokenInspector:
    """The inspector's handlers, bound to the app's ``Studio`` (its Predictor, checks and admission)."""

    def __init__(self, studio: Studio) -> None:
        self.studio = studio
        self.patch = studio.patch
        self.class_names = list(studio.config.class_names)
        self._api_cache: tuple[tuple, object] | None = None  # (image hash, size, ξ) -> Prediction

    # ------------------------------------------------------------------ the panel
    def panel(self, session: Session | None, row: object, col: object,
              open_panel: bool = False) -> PanelSlots:
        """The panel's values for token (row, col) of the session's forward (clamped to its grid)."""
        skip_open = gr.Sidebar(open=True) if open_panel else gr.skip()
        prediction = session.prediction if session is not None else None
        if prediction is None or row is None or col is None:
            return PanelSlots.filled(gr.skip(), row=row, col=col, sidebar=skip_open,
                                     text=EMPTY_PANEL if prediction is None else gr.skip())
        grid = prediction.trace.grid
        row = min(max(int(row), 0), grid[0] - 1)
        col = min(max(int(col), 0), grid[1] - 1)
        report = inspector.token_report(prediction, row, col,
                                        self.studio.predictor_for(session).config.class_names,
                                        self.patch)
        return PanelSlots(row, col, inspector.panel_markdown(report, self.policy_lines(session, row, col)),
                          inspector_drawing.confidence_svg(report),
                          inspector_drawing.token_marker(session.display, row, col, self.patch,
                                                         prediction.working_size), skip_open)

    def policy_lines(self, session: Session, row: int, col: int) -> list[str]:
        """The Policies tab's stop depths of this token, when the tab has run on this image."""
        run = session.policies
        if run is None or not run.results:
            return []
        depths = []
        for result in run.results:
            depth = np.asarray(result.halting_depth)
            if depth.shape == tuple(session.prediction.trace.grid):
                depths.append(f"{result.name} B{int(depth[row, col])}")
        return ["", f"<sub>Stopped after, under the Policies tab's {run.budget:g} budget: "
                + " · ".join(depths) + "</sub>"] if depths else []

    def on_select(self, content_size: Callable[[Session], tuple[int, int] | None]):
        """The .select handler of a view whose image shows the photo at ``content_size(session)``
        (height, width; None: the view is not of this session's image) from its top-left corner: opens the
        panel on the clicked token."""
        def handler(session: Session | None, evt: gr.SelectData) -> PanelSlots:
            if session is None or session.prediction is None or evt is None or evt.index is None:
                return PanelSlots.filled(gr.skip())
            size = content_size(session)
            hit = None if size is None else inspector.token_at(evt.index, size,
                                                               session.prediction.working_size,
                                                               self.patch)
            if hit is None:  # a colour bar, or a view of an earlier run
                return PanelSlots.filled(gr.skip())
            return self.panel(session, *hit, open_panel=True)
        return handler

    def on_move(self, direction: str):
        """An arrow button / key: the neighbouring token in ``direction``."""
        def handler(session: Session | None, row: float | None, col: float | None) -> PanelSlots:
            if session is None or session.prediction is None or row is None or col is None:
                return PanelSlots.filled(gr.skip())
            return self.panel(session, *inspector.move_token(int(row), int(col), direction,
                                                             session.prediction.trace.grid))
        return handler

    def on_typed(self, session: Session | None, row: float | None, col: float | None) -> PanelSlots:
        return self.panel(session, row, col, open_panel=True)

    def on_refresh(self, session: Session | None, row: float | None, col: float | None) -> PanelSlots:
        """A new forward on the page (image, size or ξ): the same token, in the new forward."""
        return self.panel(session, row, col)

    # ------------------------------------------------------------------ the /inspect_token API
    def api_inspect_token(self, image: str | bytes | None, xi: object, row: object, col: object,
                          request: gr.Request = None) -> dict:
        """(image file, ξ, row, col) -> ``inspector.token_report`` of that token of the image at ξ, at the
        checkpoint's working size. ξ None = the checkpoint's default."""
        studio = self.studio
        with studio.finished(request):
            xi = studio.config.default_xi if xi is None else studio.user_xi(xi)
            decoded = studio.user_image(image)
            size = studio.predictor.working_size(image_size=decoded.rgb.shape[:2])  # the image's own aspect
            working = to_working_size(decoded.rgb, size)
            grid = tuple(-(-side // self.patch) for side in size)
            try:
                row, col = inspector.check_token(row, col, grid)
            except ValueError as error:
                raise user_error(str(error)) from None
            key = (image_key(working, size), xi)
            with studio.model_call():
                if self._api_cache is None or self._api_cache[0] != key:
                    self._api_cache = None  # never keep a stale forward if this one fails
                    prediction = studio.predictor.predict(working, xi=xi, size=size)
                    self._api_cache = (key, prediction)
                prediction = self._api_cache[1]
            report = inspector.token_report(prediction, row, col, self.class_names, self.patch)
            return report.to_dict() | {"notices": decoded.notices}


def wire(panel: InspectorPanel, handlers: TokenInspector, session: gr.State,
         views: list[tuple[gr.Image, Callable[[Session], tuple[int, int] | None]]], refresh_on) -> None:
    """Every (view image, its content size) opens the panel on a click; the arrow buttons, the row/col
    boxes and ``refresh_on`` (an event: a new forward on the page) keep it in sync.

    No model runs (a few ms of numpy and one JPEG per call), so these events are neither admitted nor
    queued: a plain request each (``queue=False``) answers about 80 ms sooner than joining the queue and
    reading its event stream (docs/benchmarks.md), and a burst of clicks or keys runs only its latest
    (``always_last``)."""
    common = dict(queue=False, api_visibility="private", trigger_mode="always_last", show_progress="hidden")
    outputs = panel.outputs()
    for image, content_size in views:
        connect(image.select, handlers.on_select(content_size), [session], outputs, **common)
    for direction, button in panel.moves.items():
        connect(button.click, handlers.on_move(direction), [session, panel.row, panel.col], outputs, **common)
    for box in (panel.row, panel.col):
        connect(box.submit, handlers.on_typed, [session, panel.row, panel.col], outputs, **common)
    connect(refresh_on, handlers.on_refresh, [session, panel.row, panel.col], outputs, **common)


def view_content(session: Session) -> tuple[int, int]:
    """Content size of a view drawn over the photo at its display size, as its masks are (token groups,
    confidence maps before their colour bar, masks, halting, dense vs DoViT)."""
    return tuple(session.prediction.mask.shape[:2])
