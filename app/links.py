"""Deep links: the page's state in its URL, ``/?example=1&xi=0.95&size=360x480&tab=confidence&token=12,20``
(TF Playground keeps its state the same way); ``?lesson=3`` opens the Lesson tab at step 3. Pure: parse a
query into a ``PageLink`` (with a notice per value it had to ignore) and write one back. Uploaded images
cannot travel in a link; examples go by their index in the gallery.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from .lesson import STEPS

# URL name -> the tab's label on the page (gr.Tab ids are the URL names)
TABS = {
    "token-pass": "Token pass", "confidence": "Confidence", "segmentation": "Segmentation",
    "halting-depth": "Halting depth", "dense-vs-dovit": "Dense vs DoViT", "xi-sweep": "ξ sweep",
    "policies": "Policies", "compare": "Compare", "help": "What the views teach", "video": "Video",
    "dataset": "Data set", "lesson": "Lesson",
}
LESSON_STEPS = len(STEPS)
UPLOAD_NOTE = "Uploaded images cannot travel in a link: the link reopens the settings, not your image."


@dataclass(frozen=True)
class PageLink:
    """What a link restores; None: not in the link (the page's default)."""

    example: int | None = None  # index in the example gallery
    xi: float | None = None
    size: tuple[int, int] | None = None  # working (height, width)
    tab: str | None = None  # a TABS key
    token: tuple[int, int] | None = None  # inspected token (row, col)
    lesson: int | None = None  # the Lesson tab's step (1-based); implies tab="lesson"


def parse_link(query: Mapping[str, str], num_examples: int) -> tuple[PageLink, list[str]]:
    """A page link from URL query parameters, and one notice per parameter it ignored (and why)."""
    notices: list[str] = []
    values = {}
    for key, parse in (("example", lambda v: _index(v, num_examples)), ("xi", _xi), ("size", _pair("x")),
                       ("tab", _tab), ("token", _pair(",")), ("lesson", _step)):
        if key not in query or query[key] == "":
            continue
        try:
            values[key] = parse(query[key])
        except ValueError as error:
            notices.append(f"Link: ignored {key}={query[key]!r} ({error}).")
    unknown = sorted(set(query) - {"example", "xi", "size", "tab", "token", "lesson"} - {"__theme", "view"})
    if unknown:
        notices.append(f"Link: ignored unknown parameter(s) {', '.join(unknown)}.")
    if "lesson" in values:
        values["tab"] = "lesson"
    return PageLink(**values), notices


def link_query(link: PageLink) -> str:
    """The query string (with its '?') that reopens ``link``; empty when it holds nothing."""
    fields = {"example": link.example, "xi": None if link.xi is None else f"{link.xi:.6g}",
              "size": None if link.size is None else f"{link.size[0]}x{link.size[1]}", "tab": link.tab,
              "token": None if link.token is None else f"{link.token[0]},{link.token[1]}",
              "lesson": link.lesson}
    query = urlencode({k: v for k, v in fields.items() if v is not None}, safe=",")
    return f"?{query}" if query else ""


def _index(value: str, count: int) -> int:
    if not value.isdigit() or int(value) >= count:
        raise ValueError(f"the gallery has examples 0 to {count - 1}" if count
                         else "this page has no examples")
    return int(value)


def _xi(value: str) -> float:
    try:
        xi = float(value)
    except ValueError:
        raise ValueError("ξ must be a number in [0, 1]") from None
    if not math.isfinite(xi) or not 0.0 <= xi <= 1.0:
        raise ValueError("ξ must be a number in [0, 1]")
    return xi


def _step(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= LESSON_STEPS:
        raise ValueError(f"the lesson has steps 1 to {LESSON_STEPS}")
    return int(value)


def _tab(value: str) -> str:
    if value not in TABS:
        raise ValueError(f"tabs are {', '.join(TABS)}")
    return value


def _pair(separator: str):
    def parse(value: str) -> tuple[int, int]:
        parts = value.lower().split(separator)
        if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
            raise ValueError(f"expected two whole numbers joined by {separator!r}")
        return int(parts[0]), int(parts[1])
    return parse
