"""The "Lesson" tab: "how a token pass decides", step by step over the current image (an example or the
learner's upload), each step one view and its own numbers (``app.lesson``). Back and Next move through the
steps; ``?lesson=N`` opens step N (``app.links``). Layout (``build``), handlers (``LessonHandlers``) and
wiring (``wire``); it runs in the page's queue and re-reads the image when the page's views change.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import controls, lesson
from ..analysis import Views, draw_views, render_views, run_sweep
from ..slots import Slots, connect
from ..state import Session
from ..studio import Studio

INTRO = ("A guided walk through one token pass, on the image you picked or uploaded: what the model does "
         "with it, step by step, with this image's own numbers. Move ξ or change the image at any step; "
         "the step follows.")
EMPTY = "Upload an image, take a webcam snapshot or pick an example: the lesson walks through that image."
SWEEP_POINTS = 9  # ξ values of the last step's trade-off curve (each one forward from the cached prefix)


@dataclass
class LessonSlots(Slots):
    """The tab's outputs: the step number (state), where we are, the buttons, the text and the one view."""

    step: object
    heading: object
    back: object
    forward: object
    text: object
    picture: object
    figure: object


def build() -> LessonSlots:
    """The tab (call inside the page's ``gr.Tabs``); its components, as the handlers' outputs."""
    with gr.Tab("Lesson", id="lesson", elem_id="lesson-tab"):
        gr.Markdown(INTRO)
        heading = gr.Markdown(f"### Step 1 of {len(lesson.STEPS)}", elem_id="lesson-heading")
        with gr.Row(equal_height=True):
            back = gr.Button("← Back", elem_id="lesson-back", interactive=False, min_width=100)
            forward = gr.Button("Next →", elem_id="lesson-next", variant="primary", min_width=100)
        text = gr.Markdown(EMPTY, elem_id="lesson-text")
        picture = gr.Image(label="This step's view", format="jpeg", interactive=False,
                           elem_id="lesson-picture", buttons=["fullscreen", "download"])
        figure = gr.Plot(label="This step's chart", elem_id="lesson-plot", visible=False)
        step = gr.State(1)
    return LessonSlots(step, heading, back, forward, text, picture, figure)


@dataclass
class LessonHandlers:
    studio: Studio

    def on_back(self, step: int, xi: float, opacity: float, session: Session | None,
                request: gr.Request = None) -> LessonSlots:
        return self.show(lesson.clamp_step(step) - 1, xi, opacity, session, request)

    def on_next(self, step: int, xi: float, opacity: float, session: Session | None,
                request: gr.Request = None) -> LessonSlots:
        return self.show(lesson.clamp_step(step) + 1, xi, opacity, session, request)

    def on_refresh(self, open_tab: str, step: int, xi: float, opacity: float,
                   session: Session | None) -> LessonSlots:
        """The page's views changed (image, ξ, model…): redraw the step if the lesson is open."""
        if open_tab != "lesson":
            return LessonSlots.filled(gr.skip())
        return self.show(step, xi, opacity, session)  # not admitted (see ``wire``): nothing to release

    def on_open(self, step: int, xi: float, opacity: float, session: Session | None,
                event: gr.SelectData) -> LessonSlots:
        """A tab was picked: draw the step if it is the lesson."""
        if event.value != "Lesson":
            return LessonSlots.filled(gr.skip())
        return self.show(step, xi, opacity, session)  # not admitted (see ``wire``): nothing to release

    def show(self, step: int, xi: float, opacity: float, session: Session | None,
             request: gr.Request = None) -> LessonSlots:
        """Step ``step`` (clamped) over the session's image at ``xi``."""
        number, studio = lesson.clamp_step(step), self.studio
        with studio.finished(request):
            if session is None:
                return _slots(number, EMPTY)
            predictor = studio.predictor_for(session)
            views = self._views(predictor, session, studio.user_xi(xi), opacity,
                                sweep=number == lesson.SWEEP_STEP)
        context = lesson.LessonContext(
            views=views, working_image=session.working, image_size=session.image.shape[:2],
            class_names=list(predictor.config.class_names), patch=predictor.model.patch_size,
            stem=predictor.config.stem, embed_dim=predictor.model.embed_dim, sweep=session.sweep)
        shown = lesson.lesson_step(context, number)
        return _slots(number, shown.text, shown)

    def _views(self, predictor, session: Session, xi: float, opacity: float, sweep: bool) -> Views:
        """The views of the page's last forward when it ran at ``xi`` (the page draws first and the lesson
        follows it: no second forward), else of a forward. ``sweep``: also the trade-off curve's ξ sweep, when
        the image has none yet."""
        page = session.prediction
        views = None
        if page is not None and page.xi == xi:
            views = draw_views(predictor, page, session.display, opacity, session.palette, session.size)
        if views is None or (sweep and not session.sweep):
            with self.studio.model_call():
                views = views or render_views(predictor, session.display, xi, opacity, session.palette,
                                              session.size)
                if sweep and not session.sweep:
                    session.sweep = run_sweep(predictor, session.display, controls.sweep_values(SWEEP_POINTS),
                                              working_size=session.size)
        return views


def _slots(number: int, text: str, shown: lesson.LessonStep | None = None) -> LessonSlots:
    """The outputs for step ``number``: its heading, buttons (Back off on the first, Next on the last), text,
    and its one view (the other hidden)."""
    total = len(lesson.STEPS)
    heading = f"### {shown.heading}" if shown else f"### Step {number} of {total}"
    picture = shown.picture if shown is not None else None
    figure = shown.figure if shown is not None else None
    return LessonSlots(
        step=number, heading=heading, text=text,
        back=gr.update(interactive=number > 1), forward=gr.update(interactive=number < total),
        picture=gr.update(value=picture, visible=figure is None),
        figure=gr.update(value=figure, visible=figure is not None),
    )


def wire(tab: LessonSlots, handlers: LessonHandlers, tabs: gr.Tabs, open_tab: gr.State, xi: gr.Number,
         opacity: gr.Slider, session: gr.State, views_changed, page_event: dict) -> None:
    """Back and Next (page events: admitted and queued), opening the tab, and ``views_changed`` (the page's
    views were redrawn) redraw the step. The last two fire on every tab pick and every forward of the page,
    mostly with the lesson closed, where they only skip: so they are neither admitted nor queued (a plain
    request, as the token inspector's), or a slider drag would fill the session's admission with them; with
    the lesson open their forward waits for the Predictor's gate like any other."""
    inputs = [tab.step, xi, opacity, session]
    connect(tab.back.click, handlers.on_back, inputs, tab, **page_event)
    connect(tab.forward.click, handlers.on_next, inputs, tab, **page_event)
    passive = dict(queue=False, api_visibility="private", trigger_mode="always_last", show_progress="hidden")
    connect(tabs.select, handlers.on_open, inputs, tab, **passive)
    connect(views_changed, handlers.on_refresh, [open_tab, *inputs], tab, **passive)
