"""app.lesson: the Lesson tab's steps, each a view and text quoting this image's own numbers."""
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from app import lesson
from app.analysis import render_views, run_sweep
from dovit import Predictor
from dovit.core.predictor import default_checkpoint

STREET = Path(__file__).resolve().parent.parent / "assets" / "synthetic_street.png"


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_checkpoint(default_checkpoint())


@pytest.fixture(scope="module")
def street():
    return cv2.cvtColor(cv2.imread(str(STREET)), cv2.COLOR_BGR2RGB)


def context_for(predictor, image, xi, sweep=False):
    size = tuple(predictor.config.input_size)
    working = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)
    views = render_views(predictor, working, xi)
    points = run_sweep(predictor, working, [0.5, 0.8, 1.0]) if sweep else None
    config = predictor.config
    return lesson.LessonContext(views=views, working_image=working, image_size=image.shape[:2],
                                class_names=list(config.class_names), patch=predictor.model.patch_size,
                                stem=config.stem, embed_dim=predictor.model.embed_dim, sweep=points)


def test_every_step_has_a_view_text_and_its_place(predictor, street):
    context = context_for(predictor, street, 0.6, sweep=True)
    steps = [lesson.lesson_step(context, n) for n in range(1, len(lesson.STEPS) + 1)]
    assert len(steps) >= 6 and len({step.title for step in steps}) == len(steps)
    for number, step in enumerate(steps, start=1):
        assert step.heading.startswith(f"Step {number} of {len(steps)}: ")
        assert (step.picture is None) != (step.figure is None), step.title  # exactly one view
        assert len(re.findall(r"[.!?](\s|$)", step.text)) >= 2, step.text  # two or three sentences at least
        if step.picture is not None:
            assert step.picture.dtype == np.uint8 and step.picture.ndim == 3


def test_steps_quote_this_images_numbers(predictor, street):
    context = context_for(predictor, street, 0.6, sweep=True)
    trace, prediction = context.trace, context.views.prediction
    assert f"**{trace.num_tokens} tokens**" in lesson.lesson_step(context, 1).text
    rule = lesson.lesson_step(context, 3).text
    first = trace.decisions[0]
    assert f"**{int(first.stopped_here.sum())} of {trace.num_tokens}**" in rule and "ξ = 0.6" in rule
    assert f"**{trace.flops / 1e9:.2f} GFLOPs**" in lesson.lesson_step(context, 5).text
    assert f"**{100 * prediction.agreement_with_dense:.1f} %**" in lesson.lesson_step(context, 6).text
    last = lesson.lesson_step(context, len(lesson.STEPS))
    assert last.figure is not None and "ξ = 0.5 costs" in last.text


def test_stop_summaries_add_up_to_the_trace(predictor, street):
    trace = context_for(predictor, street, 0.6).trace
    summaries = lesson.stop_summaries(trace, list(predictor.config.class_names))
    assert len(summaries) == len(trace.decisions)
    for summary, decision in zip(summaries, trace.decisions, strict=True):
        assert summary.stopped_here == int(decision.stopped_here.sum())
        assert sum(count for _, count, _ in summary.classes) == summary.stopped_here
        assert all(0.6 < sure <= 1.0 for _, _, sure in summary.classes)  # they stopped because q > ξ (Eq. 4)
    assert summaries[-1].stopped_so_far == trace.num_tokens - trace.groups[-1].tokens


def test_at_xi_one_nothing_stops_and_the_mask_is_the_dense_one(predictor, street):
    context = context_for(predictor, street, 1.0)
    assert "**0 of" in lesson.lesson_step(context, 3).text
    assert "not one pixel differs" in lesson.lesson_step(context, 6).text


def test_step_numbers_are_clamped():
    assert lesson.clamp_step(None) == 1 and lesson.clamp_step(0) == 1 and lesson.clamp_step(-3) == 1
    assert lesson.clamp_step(3) == 3 and lesson.clamp_step(99) == len(lesson.STEPS)


# ------------------------------------------------------------------ the tab's handlers (app.tabs.lesson)
@pytest.fixture(scope="module")
def tab(tiny_model, tmp_path_factory):
    from app.studio import Studio
    from app.tabs.lesson import LessonHandlers

    folder = tmp_path_factory.mktemp("lesson")
    image = folder / "street.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (54, 96, 3), dtype=np.uint8))
    studio = Studio(Predictor(tiny_model), image_dirs=[folder])
    session = studio.on_image(str(image), "", 0.9, 0.5, None).session
    return LessonHandlers(studio), session


def test_back_and_next_walk_the_steps_and_stop_at_the_ends(tab):
    import gradio as gr

    handlers, session = tab
    shown = handlers.show(1, 0.9, 0.5, session)
    assert shown.step == 1 and shown.heading.startswith(f"### Step 1 of {len(lesson.STEPS)}: ")
    assert shown.back == gr.update(interactive=False) and shown.forward == gr.update(interactive=True)
    headings = [shown.heading]
    for _ in range(len(lesson.STEPS) + 2):  # Next past the end stays on the last step
        shown = handlers.on_next(shown.step, 0.9, 0.5, session)
        headings.append(shown.heading)
    assert shown.step == len(lesson.STEPS) and shown.forward == gr.update(interactive=False)
    assert len(set(headings)) == len(lesson.STEPS)
    assert shown.figure["visible"] and not shown.picture["visible"]  # the trade-off curve, no picture
    assert handlers.on_back(shown.step, 0.9, 0.5, session).step == len(lesson.STEPS) - 1


def test_without_an_image_the_step_says_what_to_do(tab):
    handlers, _ = tab
    shown = handlers.show(3, 0.9, 0.5, None)
    assert shown.heading == f"### Step 3 of {len(lesson.STEPS)}" and "Upload an image" in shown.text


def test_other_tabs_and_closed_lesson_leave_it_alone(tab):
    from types import SimpleNamespace

    import gradio as gr

    from app.tabs.lesson import LessonSlots

    handlers, session = tab
    skipped = LessonSlots.filled(gr.skip())
    assert handlers.on_refresh("token-pass", 2, 0.9, 0.5, session) == skipped
    assert handlers.on_open(2, 0.9, 0.5, session, SimpleNamespace(value="Compare")) == skipped
    assert handlers.on_refresh("lesson", 2, 0.9, 0.5, session).step == 2
    assert handlers.on_open(4, 0.9, 0.5, session, SimpleNamespace(value="Lesson")).step == 4


def test_the_lesson_draws_the_pages_last_forward_without_running_the_model_again(tab, monkeypatch):
    handlers, session = tab
    assert session.prediction is not None and session.prediction.xi == 0.9  # the page's forward, at 0.9
    predictor = handlers.studio.predictor_for(session)
    forwards = []
    monkeypatch.setattr(predictor, "predict", lambda *a, **k: forwards.append(k) or pytest.fail("a forward"))
    shown = handlers.show(4, 0.9, 0.5, session)
    assert shown.step == 4 and forwards == []
    monkeypatch.undo()
    assert handlers.show(4, 0.5, 0.5, session).step == 4  # another ξ than the page's: its own forward
