"""Gradio layout and wiring of DoViT Studio: components, events, the /predict API and launching.
The handlers are ``app.studio.Studio``'s methods; all computing and drawing is in the pure modules.

One Predictor serves every session, behind ``Studio.gate`` (it caches one image's ξ-independent state
between calls). Model events run in three queues of one slot each, so that none waits behind another's
backlog: the page's events (``PAGE_QUEUE``), the /predict API (``PREDICT_QUEUE``) and ξ sweeps
(``SWEEP_QUEUE``, cancellable, and yielding the model to the other two between steps). Each model event is
admitted per session and client address before it is queued (``Studio.admit``). The APIs offered are
/predict, /trace, /export, /inspect_token (in the /predict queue) and the Video tab's /analyze_video. The
Policies tab runs like a sweep (``app.tabs.policies``); the token inspector's side panel reads the session's
last forward and never runs the model (``app.tabs.inspector``). Deep links and exports: ``app.sharing``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder
from starlette.middleware import Middleware

from dovit import Predictor

from . import controls, sharing
from .api import add_api_endpoints, upload_image
from .examples import find_examples
from .guard import RequestGuard
from .header import header_markdown, help_markdown
from .image_cache import write_image_outputs_atomically
from .images import MAX_UPLOAD_BYTES
from .limits import ServingLimits
from .links import UPLOAD_NOTE
from .models import RUNTIMES, ModelShelf, onnxruntime_installed
from .page import ImageRefresh, ModelRefresh, Refresh, ResetRefresh, SliderRefresh, SweepResult, XiBoxRefresh
from .runtime import limit_heap_growth
from .slots import connect
from .state import ViewSlots
from .studio import Studio, log_user_errors_to_stderr
from .tabs import compare as compare_tab
from .tabs import dataset as dataset_tab
from .tabs import inspector as inspector_tab
from .tabs import lesson as lesson_tab
from .tabs import live as live_tab
from .tabs import policies as policies_tab
from .tabs import video as video_tab
from .tabs import views as view_tabs
from .uploads import UploadLedger

PAGE_QUEUE, SWEEP_QUEUE = "page", "sweep"  # the /predict queue: app.api.PREDICT_QUEUE
CACHE_SWEEP_EVERY_S, CACHE_MAX_AGE_S = 600, 1800  # gradio's delete_cache: uploads and outputs by age
SESSION_TTL_S = 3600
MAX_SESSIONS = 100  # sessions kept in memory (each holds its image, a few MB); the oldest go first
STATIC = Path(__file__).with_name("static")  # the page's CSS and the scripts of its head


@dataclass
class StudioApp:
    """What ``build_demo`` returns and ``serve`` launches: the page, the handlers bound to the Predictor,
    the folders images may be read from besides uploads, and the serving caps."""

    blocks: gr.Blocks
    studio: Studio
    example_dirs: list[str]
    limits: ServingLimits

    def close(self) -> None:
        self.blocks.close()


@dataclass
class PageControls:
    """The left column (model, image, size, ξ, link) and the readouts above the tabs."""

    header: gr.Markdown
    model: gr.Dropdown
    runtime: gr.Radio
    image: gr.Image
    notices: gr.Markdown
    size: gr.Dropdown
    xi_slider: gr.Slider
    xi_box: gr.Number
    reset: gr.Button
    copy_link: gr.Button
    link_box: gr.Textbox
    link_note: gr.Markdown
    readouts: gr.Markdown
    tokens_plot: gr.Plot
    export_button: gr.Button
    export_file: gr.File


@dataclass
class PageViews:
    """The view tabs: the image views, the sweep, and the Policies and Compare tabs' components."""

    tabs: gr.Tabs
    slots: ViewSlots  # every image view, in Studio's output order
    opacity: gr.Slider
    palette: gr.Radio
    sweep_button: gr.Button
    stop_sweep: gr.Button
    policies: policies_tab.PoliciesTab
    comparison: compare_tab.CompareTab
    videos: video_tab.VideoTab  # the Video tab's handlers (/analyze_video's too)
    pass_player: view_tabs.PassPlayer
    lesson: lesson_tab.LessonSlots


def build_demo(predictor: Predictor, examples_dir: str | Path | None = None,
               limits: ServingLimits | None = None, frame_roots: Sequence[str | Path] = (),
               models: ModelShelf | None = None) -> StudioApp:
    """The whole app for one ``dovit.Predictor`` (the default model; ``models`` adds a per-session model
    picker); ``examples_dir`` adds its images to the gallery; the Video and Data set tabs offer the image
    folders in the example folders and ``frame_roots``."""
    limits = limits or ServingLimits()
    examples = find_examples(examples_dir)
    example_dirs = sorted({str(p.parent) for p in examples})
    studio = Studio(predictor, image_dirs=[get_upload_folder(), *example_dirs], limits=limits, models=models,
                    examples=examples)
    studio.warm_up()
    with gr.Blocks(title="DoViT Studio", analytics_enabled=False,
                   delete_cache=(CACHE_SWEEP_EVERY_S, CACHE_MAX_AGE_S)) as demo:
        session = gr.State(None, time_to_live=SESSION_TTL_S)  # holds images: free them after an idle hour
        page = build_controls(studio, examples)
        views = build_views(studio, page, frame_folders=video_tab.frame_folders([*example_dirs,
                                                                                 *frame_roots]))
        panel = inspector_tab.build_panel()
        inspector = inspector_tab.TokenInspector(studio)
        exports = sharing.ExportHandlers(studio)
        wire_page(demo, studio, session, page, views, panel, inspector, exports)
        add_api_endpoints(studio, inspector, exports, views.videos, limits)
    demo.queue(default_concurrency_limit=1, max_size=limits.queue_size)
    return StudioApp(blocks=demo, studio=studio, example_dirs=example_dirs, limits=limits)


def build_controls(studio: Studio, examples: list[Path]) -> PageControls:
    """The header, the left column of inputs and the readouts column beside it."""
    config = studio.predictor.config
    header = gr.Markdown(header_markdown(studio.predictor), elem_id="header")
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(studio.models.labels, value=studio.models.default_label, elem_id="model",
                                label="Model (checkpoints/ and each --checkpoint; switched for this tab "
                                      "only)",
                                visible=len(studio.models.labels) > 1)
            runtime = gr.Radio(list(RUNTIMES), value="PyTorch", elem_id="runtime",
                               label="Runtime (ONNX Runtime: the model's ONNX export, made on first use)",
                               visible=onnxruntime_installed())
            image = upload_image(label="Input image (PNG, JPEG, WebP, BMP)", sources=["upload", "webcam",
                                                                                      "clipboard"],
                                 elem_id="input-image", height=320)
            notices = gr.Markdown(elem_id="notices")
            size = gr.Dropdown(controls.working_size_choices(studio.default_size, studio.patch),
                               value=studio.default_size_value,
                               label="Working resolution (height × width) the model sees",
                               elem_id="working-size")
            xi_slider = gr.Slider(0.0, 1.0, value=controls.position_from_xi(config.default_xi),
                                  step=controls.SLIDER_STEP,
                                  elem_id="xi-slider", label="ξ — token-pass threshold (finer steps near 1)",
                                  buttons=[])
            gr.HTML(controls.xi_ticks_html())
            with gr.Row():
                xi_box = gr.Number(value=config.default_xi, label="ξ (type a value, Enter)", minimum=0.0,
                                   maximum=1.0, step=0.0001, elem_id="xi-number", scale=2)
                reset = gr.Button(f"Reset ξ to {config.default_xi:g}", elem_id="xi-reset", scale=1)
            with gr.Row():
                copy_link = gr.Button("Copy link", elem_id="copy-link", scale=1)
                link_box = gr.Textbox(label="Link to this view (example, ξ, size, tab, token)",
                                      interactive=False,
                                      elem_id="page-link", scale=3, buttons=["copy"])
            link_note = gr.Markdown(UPLOAD_NOTE, elem_id="link-note")
            if examples:
                gr.Examples([[str(p)] for p in examples], inputs=[image], label="Examples",
                            examples_per_page=8, api_visibility="private")
        with gr.Column(scale=3):
            readouts = gr.Markdown(studio.empty_views().readouts, elem_id="readouts")
            tokens_plot = gr.Plot(label="Tokens and FLOPs per block (paper Fig. 6)", elem_id="tokens-plot")
            with gr.Row():
                export_button = gr.Button("Export ZIP: every view (PNG), charts (PNG, HTML), token trace "
                                          "(JSON, CSV)", elem_id="export-zip", scale=2)
                export_file = gr.File(label="Export", elem_id="export-file", interactive=False, scale=1)
    return PageControls(header, model, runtime, image, notices, size, xi_slider, xi_box, reset, copy_link,
                        link_box,
                        link_note, readouts, tokens_plot, export_button, export_file)


def build_views(studio: Studio, page: PageControls, frame_folders: list[str]) -> PageViews:
    """The view tabs, then the Policies, Compare, help, Video, Data set and Live tabs: one builder each."""
    # wrap, not gradio's default overflow menu: a tab that does not fit (narrow window, inspector open)
    # goes to a second row instead of hiding behind a "…" button, so Video and Data set stay in view
    with gr.Tabs(overflow_behavior="wrap", elem_id="view-tabs") as tabs:
        token_images, pass_player = view_tabs.token_pass_tab(studio.num_groups)
        heatmap_images = view_tabs.confidence_tab(studio.num_groups - 1)
        opacity, palette, legend, mask_overlay, raw_mask = view_tabs.segmentation_tab()
        halting_legend, halting, halting_by_class = view_tabs.halting_tab()
        dense_mask, disagreement, agreement = view_tabs.dense_tab()
        sweep_button, stop_sweep, sweep_plot = view_tabs.sweep_tab()
        lesson = lesson_tab.build()
        policies = policies_tab.build()
        comparison = compare_tab.build(studio.models.labels, studio.predictor.config.default_xi)
        with gr.Tab("What the views teach", id="help"):
            gr.Markdown(help_markdown())
        pickers = [page.model, page.runtime]
        videos = video_tab.build(studio, [get_upload_folder()], frame_folders, pickers=pickers)
        dataset_tab.build(studio, frame_folders, pickers=pickers)
        live_tab.build(studio, pickers=[page.model])
    slots = ViewSlots(
        readouts=page.readouts, tokens_plot=page.tokens_plot, groups=token_images, confidences=heatmap_images,
        mask_overlay=mask_overlay, legend=legend, color_mask=raw_mask, halting=halting,
        halting_legend=halting_legend, dense_mask=dense_mask, disagreement=disagreement, agreement=agreement,
        sweep_plot=sweep_plot, halting_by_class=halting_by_class)
    return PageViews(tabs, slots, opacity, palette, sweep_button, stop_sweep, policies, comparison, videos,
                     pass_player, lesson)


def wire_page(demo: gr.Blocks, studio: Studio, session: gr.State, page: PageControls, views: PageViews,
              panel: inspector_tab.InspectorPanel, inspector: inspector_tab.TokenInspector,
              exports: sharing.ExportHandlers) -> None:
    """The page's events: model, runtime, image, size, ξ, opacity, sweep, the tabs, inspector, links,
    export."""
    opacity, refresh = views.opacity, Refresh(session, views.slots)
    page_event = dict(concurrency_id=PAGE_QUEUE, concurrency_limit=1, api_visibility="private",
                      validator=studio.admit())
    sweep_event = connect(views.sweep_button.click, studio.on_sweep, [page.xi_box, session],
                          SweepResult(views.slots.sweep_plot, session), concurrency_id=SWEEP_QUEUE,
                          concurrency_limit=1, api_visibility="private", validator=studio.admit("sweep"))
    views.stop_sweep.click(studio.on_stop_sweep, None, None, cancels=[sweep_event], api_visibility="private")
    compare_tab.wire(views.comparison, compare_tab.CompareHandlers(studio), opacity, session, page_event)
    policy_handlers = policies_tab.PolicyHandlers(studio)
    policy_event = policies_tab.wire(views.policies, policy_handlers, session, SWEEP_QUEUE,
                                     clear_on=[page.image.change, page.size.input, page.model.input,
                                               page.runtime.input])
    restart = dict(cancels=[sweep_event, policy_event], **page_event)
    view_tabs.wire_pass_player(views.pass_player, view_tabs.PassPlayerHandlers(studio),
                               [page.xi_box, session], page_event,
                               clear_on=[page.image.change, page.size.input, page.model.input])
    connect(page.model.input, studio.on_model, [page.model, opacity, session],
            ModelRefresh(page.header, page.xi_box, page.xi_slider, page.reset, refresh), **restart)
    connect(page.runtime.input, studio.on_runtime, [page.runtime, page.xi_box, opacity, session], refresh,
            **restart)
    connect(views.palette.input, studio.on_palette, [views.palette, page.xi_box, opacity, session], refresh,
            **page_event)
    connect(page.image.change, studio.on_image, [page.image, page.size, page.xi_box, opacity, session,
                                                 page.model, page.runtime, views.palette],
            ImageRefresh(session, page.notices, page.size, views.slots), **restart)
    connect(page.size.input, studio.on_size, [page.size, page.xi_box, opacity, session], refresh, **restart)
    connect(page.xi_slider.input, studio.on_drag, [page.xi_slider, opacity, session],
            SliderRefresh(page.xi_box, refresh), trigger_mode="always_last", show_progress="hidden",
            **page_event)
    connect(page.xi_slider.release, studio.on_release, [page.xi_slider, opacity, session],
            SliderRefresh(page.xi_box, refresh), show_progress="minimal", **page_event)
    for event in (page.xi_box.submit, page.xi_box.blur):
        connect(event, studio.on_xi_box, [page.xi_box, opacity, session],
                XiBoxRefresh(page.xi_slider, refresh), show_progress="minimal", **page_event)
    connect(page.reset.click, studio.on_reset, [opacity, session],
            ResetRefresh(page.xi_box, page.xi_slider, refresh), **page_event)
    opacity.input(studio.on_opacity, [opacity, session], views.slots.mask_overlay, show_progress="hidden",
                  api_visibility="private")
    inspected = [(view, inspector_tab.view_content) for view in views.slots.working_images()]
    inspected += zip(views.policies.masks + views.policies.stop_maps, policy_handlers.views(), strict=False)
    inspector_tab.wire(panel, inspector, session, inspected, refresh_on=page.readouts.change)
    open_tab = gr.State("token-pass")
    linked = sharing.LinkedState(page.image, page.size, page.xi_box, page.xi_slider, views.tabs, open_tab,
                                 panel.row, panel.col, page.notices, views.lesson.step)
    lesson_tab.wire(views.lesson, lesson_tab.LessonHandlers(studio), views.tabs, open_tab, page.xi_box,
                    opacity, session, page.readouts.change, page_event)
    copied = sharing.CopiedLink(page.link_box, page.link_note)
    sharing.wire(demo, sharing.LinkHandlers(studio), linked, copied, page.copy_link, session)
    page.export_button.click(exports.on_export, [page.xi_box, opacity, session], page.export_file,
                             **page_event)


def serve(app: StudioApp, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          block: bool = True) -> None:
    """Launch ``app`` (from ``build_demo``) with the app's settings: upload cap, request guard (body cap,
    image-only uploads, per-client upload budget, cache size sweep), only user errors shown, no SSR."""
    limit_heap_growth()  # big request bodies go back to the OS when freed
    write_image_outputs_atomically()  # identical outputs of concurrent calls share one cache file
    log_user_errors_to_stderr()
    guard = Middleware(RequestGuard, limits=app.limits, ledger=UploadLedger())
    app.blocks.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
        show_error=False,  # gradio's own exception texts name server paths; user errors (gr.Error) still show
        # images: 25 MB, checked by the guard
        max_file_size=max(MAX_UPLOAD_BYTES, app.limits.video_max_bytes),
        state_session_capacity=MAX_SESSIONS, css_paths=[STATIC / "studio.css"],
        allowed_paths=app.example_dirs, ssr_mode=False, mcp_server=False, quiet=True,
        head_paths=[STATIC / "head.html"],
        footer_links=["api", "settings"], app_kwargs={"middleware": [guard]},
    )
