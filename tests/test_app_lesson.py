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
