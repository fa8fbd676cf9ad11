"""An event's outputs, named once: a ``Slots`` dataclass per output shape. The wiring builds one of components
(gradio's ``outputs=``), the handler returns one of values, and ``connect`` flattens both the same way, so the
outputs of an event and the values of its handler cannot drift apart.

A field is one output, a list of outputs (one per token group, per policy…) or a nested ``Slots`` (a page
event's head before its views), flattened in declared order. In a handler's instance one value may stand
for a whole list or nested field (``filled(gr.skip())`` skips them all); the components say how many.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any, Self, TypeVar

T = TypeVar("T")  # a Slots field's type: a component in the wiring's instance, a value in a handler's


class Slots:
    """Base of a dataclass whose fields name an event's outputs, in output order."""

    def flat(self) -> list:
        """Every field's outputs in declared order: a list's items, a nested ``Slots``' own ``flat()``."""
        outputs: list = []
        for slot in fields(self):
            value = getattr(self, slot.name)
            if isinstance(value, Slots):
                outputs.extend(value.flat())
            elif isinstance(value, list):
                outputs.extend(value)
            else:
                outputs.append(value)
        return outputs

    def values(self, returned: Slots) -> list:
        """A handler's ``returned`` instance (this dataclass, of values) flattened like these components: a
        single value in a list or nested field stands for each of its outputs."""
        if type(returned) is not type(self):
            raise TypeError(f"a handler wired to {type(self).__name__} returned {type(returned).__name__}")
        values: list = []
        for slot in fields(self):
            component, value = getattr(self, slot.name), getattr(returned, slot.name)
            if isinstance(component, Slots):
                values.extend(component.values(value) if isinstance(value, Slots)
                              else [value] * len(component.flat()))
            elif isinstance(component, list):
                if isinstance(value, list) and len(value) != len(component):
                    raise ValueError(f"{type(self).__name__}.{slot.name}: {len(value)} values for "
                                     f"{len(component)} outputs")
                values.extend(value if isinstance(value, list) else [value] * len(component))
            else:
                values.append(value)
        return values

    @classmethod
    def filled(cls, value: Any, **overrides: Any) -> Self:
        """Every slot ``value`` (e.g. ``gr.skip()``), except the keyword ``overrides``."""
        return cls(**({slot.name: value for slot in fields(cls)} | overrides))


def slotted(handler: Callable[..., Any], outputs: Slots) -> Callable[..., Any]:
    """``handler`` returning (or yielding) gradio's list of values in ``outputs``' order. Its signature stays
    the handler's (functools.wraps), since gradio reads it to pass gr.Request, gr.Progress and gr.SelectData,
    and a generator stays a generator (gradio streams those)."""
    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def stream(*args: Any, **kwargs: Any) -> Iterator[list]:
            returned = handler(*args, **kwargs)
            try:
                for value in returned:
                    yield outputs.values(value)
            finally:
                returned.close()  # a cancelled event: the handler's own cleanup runs now
        return stream

    @functools.wraps(handler)
    def call(*args: Any, **kwargs: Any) -> list:
        return outputs.values(handler(*args, **kwargs))
    return call


def connect(trigger: Callable[..., Any], handler: Callable[..., Any], inputs: Any, outputs: Slots,
            **event: Any) -> Any:
    """``trigger`` (an event listener such as ``button.click``) running ``handler`` with ``outputs`` as its
    outputs and its returns flattened like them; returns the event (for ``cancels`` and ``.then``)."""
    return trigger(slotted(handler, outputs), inputs, outputs.flat(), **event)
