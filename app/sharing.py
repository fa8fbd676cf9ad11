"""Sharing what the page shows, in gradio: deep links (``app.links``: restore a link's state when the page
loads, follow the open tab, the "Copy link" button; no model runs, a linked example goes into the image input
and its usual change event renders it with the linked ξ and size) and exports (``app.bundle``: the "Export
ZIP" button and the /export API).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Generic

import cv2
import gradio as gr
import numpy as np

from dovit.viz import drawing
from dovit.viz.animation import pass_frames

from . import controls
from .analysis import display_image, render_views
from .bundle import build_zip
from .charts import sweep_figure
from .limits import new_run_folder
from .links import TABS, UPLOAD_NOTE, PageLink, link_query, parse_link
from .slots import Slots, T, connect
from .state import Session
from .studio import Studio, user_error

LABEL_TO_TAB = {label: slug for slug, label in TABS.items()}
# The js of the Copy link button: the page's own address replaces the last input (the server cannot know
# under which host name the user reached it), and the link goes to the clipboard when the browser allows.
PAGE_URL_JS = "(...args) => [...args.slice(0, -1), window.location.origin + window.location.pathname]"
# ZIPs, pruned like the video jobs (new_run_folder)
EXPORT_ROOT = Path(tempfile.gettempdir()) / "dovit-export"
CLIPBOARD_JS = (
    "(link) => { if (navigator.clipboard && link) navigator.clipboard.writeText(link).catch(() => {}); }"
)


@dataclass
class LinkedState(Slots, Generic[T]):
    """What a link sets as the page loads: the example image and its working size, ξ (box and slider),
    the open tab (the tabs and the state that follows them), the inspected token and the link's notices."""

    image: T
    size: T
    xi_box: T
    xi_slider: T
    tabs: T
    open_tab: T
    row: T
    col: T
    notices: T
    lesson: T  # the Lesson tab's step


@dataclass
class CopiedLink(Slots, Generic[T]):
    """The Copy link button's link and the note beside it."""

    link: T
    note: T


@dataclass
class LinkHandlers:
    studio: Studio

    def on_load(self, request: gr.Request) -> LinkedState:
        """The linked state (``gr.update()`` where the link says nothing)."""
        link, notices = parse_link(dict(request.query_params) if request is not None else {},
                                   len(self.studio.examples))
        image = size = gr.update()
        if link.lesson is not None and link.example is None and self.studio.examples:
            link = replace(link, example=0)  # a lesson link from a slide opens on an image, not on nothing
        if link.example is not None:
            path = self.studio.examples[link.example]
            image = gr.update(value=str(path))
            if link.size is not None:
                size, notice = self._size(link, path)
                notices += [notice] if notice else []
        elif link.size is not None:
            notices.append("Link: a working size needs an example image; ignored.")
        xi = link.xi if link.xi is not None else gr.update()
        slider = controls.position_from_xi(link.xi) if link.xi is not None else gr.update()
        tab = gr.update(selected=link.tab) if link.tab else gr.update()
        row, col = link.token if link.token else (gr.update(), gr.update())
        return LinkedState(image, size, xi, slider, tab, link.tab or "token-pass", row, col,
                           " · ".join(notices), link.lesson if link.lesson is not None else gr.update())

    def _size(self, link: PageLink, path) -> tuple:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        shape = image.shape[:2] if image is not None else None
        choices = controls.working_size_choices(self.studio.default_size, self.studio.patch, shape)
        value = f"{link.size[0]}x{link.size[1]}"
        if value not in [offered for _, offered in choices]:
            return gr.update(), f"Link: working size {value} is not offered for this example; ignored."
        return gr.update(choices=choices, value=value), None

    @staticmethod
    def on_tab(event: gr.SelectData) -> str:
        return LABEL_TO_TAB.get(event.value, "token-pass")

    def on_copy(self, xi: float, size_value: str, tab: str, row, col, lesson: int | None,
                session: Session | None, page_url: str) -> CopiedLink:
        """The link to what the page shows now, and its note."""
        example = session.example if session is not None else None
        token = (int(row), int(col)) if row not in (None, "") and col not in (None, "") else None
        size = controls.parse_size(size_value, self.studio.default_size) if size_value else None
        shape = session.image.shape[:2] if session is not None else None
        default = controls.default_size_value(self.studio.default_size, self.studio.patch, shape)
        link = PageLink(example=example, xi=self.studio.user_xi(xi), tab=tab if tab in TABS else None,
                        size=None if size is None or f"{size[0]}x{size[1]}" == default else size, token=token,
                        lesson=int(lesson) if tab == "lesson" and lesson else None)
        note = "Link copied." if session is None or example is not None else f"Link copied. {UPLOAD_NOTE}"
        return CopiedLink(f"{page_url or ''}{link_query(link)}", note)


def wire(blocks: gr.Blocks, handlers: LinkHandlers, linked: LinkedState, copied: CopiedLink,
         copy_button: gr.Button, session: gr.State) -> None:
    """Wire the load, tab and copy events: a link sets ``linked`` as the page loads; ``linked.open_tab`` (a
    gr.State) follows ``linked.tabs``; Copy link reads ξ, size, tab, token and ``session`` into ``copied``."""
    common = dict(queue=False, api_visibility="private", show_progress="hidden")
    connect(blocks.load, handlers.on_load, None, linked, **common)
    linked.tabs.select(handlers.on_tab, None, linked.open_tab, **common)
    page_url = gr.Textbox(visible=False)
    connect(copy_button.click, handlers.on_copy, [linked.xi_box, linked.size, linked.open_tab, linked.row,
                                                  linked.col, linked.lesson, session, page_url], copied,
            js=PAGE_URL_JS, **common).then(None, copied.link, None, js=CLIPBOARD_JS, **common)


@dataclass
class ExportHandlers:
    """The page's "Export ZIP" button and the /export API: every view of one forward in one ZIP
    (app.bundle)."""

    studio: Studio

    def on_export(self, xi: float, opacity: float, session: Session | None,
                  request: gr.Request = None) -> str:
        """The page's current image at ξ, with the session's model, runtime and ξ sweep."""
        with self.studio.finished(request):
            if session is None:
                raise user_error("Upload an image first: the export holds the views of the current image.")
            charts = {"xi_sweep": sweep_figure(session.sweep,
                                               self.studio.user_xi(xi))} if session.sweep else {}
            label = f"{session.model or self.studio.models.default_label} on {session.runtime}"
            return self._write(self.studio.predictor_for(session), session.display, session.size,
                               self.studio.user_xi(xi), opacity, label, charts)

    def api_export(self, image: str | bytes | None, xi: float | None, request: gr.Request = None) -> str:
        """(image file, ξ) -> the ZIP's path, at the default model's working size (ξ None = its default)."""
        with self.studio.finished(request):
            predictor = self.studio.predictor
            xi = predictor.config.default_xi if xi is None else self.studio.user_xi(xi)
            rgb = self.studio.user_image(image).rgb
            size = predictor.working_size(image_size=rgb.shape[:2])  # the photo's own aspect
            return self._write(predictor, display_image(rgb, size), size, xi, 0.5,
                               self.studio.models.default_label, {})

    def _write(self, predictor, image: np.ndarray, size: tuple[int, int], xi: float, opacity: float,
               label: str, charts: dict) -> str:
        """The ZIP of ``image`` (the photo at its display size) seen at working ``size``: its path."""
        with self.studio.model_call():
            views = render_views(predictor, image, xi, opacity, working_size=size)
        colors = drawing.class_palette(predictor.config.class_colors)
        frames = pass_frames(image, views.prediction.trace, views.prediction.mask, colors,
                             predictor.model.patch_size, working_size=size)
        data = build_zip(views, image, list(predictor.config.class_names),
                         f"{label} ({predictor.config.backbone})",
                         charts, frames)
        path = new_run_folder(EXPORT_ROOT) / f"dovit_xi{xi:g}_{size[0]}x{size[1]}.zip"
        path.write_bytes(data)
        return str(path)
