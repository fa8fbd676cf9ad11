"""app.slots: outputs flatten in declared order (lists and nested slots too), one value fills a list or nested
field, a wrong count or a plain list is refused, and a wrapped handler keeps what gradio reads from it (its
annotations are strings here, as in app/, which gradio resolves in the handler's module, not app.slots)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generic

import gradio as gr
import pytest
from gradio.helpers import special_args

from app.slots import Slots, T, connect, slotted


@dataclass
class Head(Slots, Generic[T]):
    title: T
    images: list[T]


@dataclass
class Page(Slots, Generic[T]):
    session: T
    head: Head[T]
    notes: T


COMPONENTS = Page("session", Head("title", ["image 1", "image 2"]), "notes")


def test_nested_slots_and_lists_flatten_in_declared_order():
    assert COMPONENTS.flat() == ["session", "title", "image 1", "image 2", "notes"]
    values = Page(1, Head(2, [3, 4]), 5)
    assert COMPONENTS.values(values) == values.flat() == [1, 2, 3, 4, 5]


def test_one_value_fills_a_list_or_a_nested_field():
    skip = gr.skip()
    assert COMPONENTS.values(Page.filled(skip)) == [skip] * len(COMPONENTS.flat())
    assert COMPONENTS.values(Page.filled(skip, session="kept")) == ["kept", *[skip] * 4]
    assert COMPONENTS.values(Page(1, Head(2, None), 5)) == [1, 2, None, None, 5]


def test_a_wrong_count_or_a_positional_list_is_refused():
    with pytest.raises(ValueError, match="Head.images: 3 values for 2 outputs"):
        COMPONENTS.values(Page(1, Head(2, [3, 4, 5]), 6))
    with pytest.raises(TypeError, match="wired to Page returned list"):
        COMPONENTS.values([1, 2, 3, 4, 5])


class Handlers:
    def on_click(self, text: str, request: gr.Request, progress=gr.Progress()) -> Page:
        """Reads the request gradio passes by its annotation."""
        return Page(text, Head(request.session_hash, ["a", "b"]), "done")

    def on_stream(self, text: str, request: gr.Request = None):
        yield Page.filled(gr.skip())
        yield Page(text, Head("title", ["a", "b"]), "done")


def test_a_wrapped_handler_keeps_its_signature_so_gradio_injects_the_request():
    wrapped = slotted(Handlers().on_click, COMPONENTS)
    assert wrapped.__name__ == "on_click" and wrapped.__doc__ == Handlers.on_click.__doc__
    request = gr.Request(session_hash="tab-1")
    inputs, progress_index, _, _ = special_args(wrapped, ["hello"], request=request)
    assert inputs[1] is request and progress_index == 2
    assert wrapped(*inputs) == ["hello", "tab-1", "a", "b", "done"]


def test_a_wrapped_generator_stays_a_generator_and_yields_lists():
    import inspect

    wrapped = slotted(Handlers().on_stream, COMPONENTS)
    assert inspect.isgeneratorfunction(wrapped)
    assert list(wrapped("hi")) == [[gr.skip()] * 5, ["hi", "title", "a", "b", "done"]]


def test_closing_a_wrapped_generator_runs_the_handlers_cleanup_at_once():
    """gradio closes a cancelled event's generator: the handler's ``finally`` (freeing its admission) runs
    then."""
    cleaned = []

    def handler():
        try:
            yield Page.filled(gr.skip())
            yield Page.filled(None)
        finally:
            cleaned.append(True)

    stream = slotted(handler, COMPONENTS)()
    next(stream)
    stream.close()
    assert cleaned == [True]


def test_connect_gives_the_trigger_the_flat_outputs_and_the_wrapped_handler():
    calls = []

    def click(fn, inputs, outputs, **kwargs):
        calls.append((fn, inputs, outputs, kwargs))
        return "event"

    event = connect(click, Handlers().on_click, ["box"], COMPONENTS, queue=False)
    (fn, inputs, outputs, kwargs), = calls
    assert event == "event" and inputs == ["box"] and outputs == COMPONENTS.flat()
    assert kwargs == {"queue": False}
    assert fn("x", gr.Request(session_hash="s")) == ["x", "s", "a", "b", "done"]


def test_a_wired_page_event_passes_the_request_through_gradio(tiny_model):
    """The real thing: build_demo's page-load event (a link's state) gets its request the way gradio passes
    it, and fills each of its outputs."""
    from app.ui import build_demo
    from dovit import Predictor

    app = build_demo(Predictor(tiny_model))
    try:
        names = {getattr(fn.fn, "__name__", None): fn for fn in app.blocks.fns.values()}
        on_load = names["on_load"]
        inputs, _, _, _ = special_args(on_load.fn, [], request=gr.Request(query_params={"xi": "0.5"}))
        values = on_load.fn(*inputs)
        assert len(values) == len(on_load.outputs) and values[2] == 0.5  # the ξ box, after image and size
    finally:
        app.close()
