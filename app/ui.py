"""Gradio layout and wiring of DoViT Studio: components, events, the /predict API and launching.
The handlers are ``app.studio.Studio``'s methods; all computing and drawing is in the pure modules.

One Predictor serves every session, behind ``Studio.gate`` (it caches one image's ξ-independent state
between calls). Model events run in three queues of one slot each, so that none waits behind another's
backlog: the page's events (``PAGE_QUEUE``), the /predict API (``PREDICT_QUEUE``) and ξ sweeps
(``SWEEP_QUEUE``, cancellable, and yielding the model to the other two between steps). Each model event is
admitted per session and client address before it is queued (``Studio.admit``). The APIs offered are
/predict, /trace, /export, /inspect_token (in the /predict queue) and the Video tab's /analyze_video. The
Policies tab runs like a sweep (``app.policies_tab``); the token inspector's side panel reads the session's last
forward and never runs the model (``app.inspector_tab``). Deep links and exports: ``app.sharing``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder
from starlette.middleware import Middleware

from dovit import Predictor, drawing

from . import compare_tab, controls, inspector_tab, policies_tab, sharing
from . import dataset_tab, video_tab
from .examples import find_examples
from .header import header_markdown
from .guard import RequestGuard, UploadLedger
from .image_cache import write_image_outputs_atomically
from .images import MAX_UPLOAD_BYTES, ImageInputError, decode_data_url
from .limits import ServingLimits
from .links import UPLOAD_NOTE
from .models import RUNTIMES, ModelShelf, onnxruntime_installed
from .runtime import limit_heap_growth
from .state import ViewSlots
from .studio import Studio, log_user_errors_to_stderr, user_error

PAGE_QUEUE, PREDICT_QUEUE, SWEEP_QUEUE = "page", "predict", "sweep"
CACHE_SWEEP_EVERY_S, CACHE_MAX_AGE_S = 600, 1800  # gradio's delete_cache: uploads and outputs by age
SESSION_TTL_S = 3600
MAX_SESSIONS = 100  # sessions kept in memory (each holds its image, a few MB); the oldest go first
HELP_PATH = Path(__file__).with_name("README_APP.md")
CSS = """
#xi-slider input[type=number] { display: none; }
.xi-ticks { position: relative; height: 1.4em; margin: -0.4em 0.6em 0.6em 0.6em; font-size: 0.75em; color: #666; }
.xi-ticks span { position: absolute; transform: translateX(-50%); white-space: nowrap; }
.dovit-legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 0.9em; }
/* WCAG AA contrast for gradio's own faint texts: the upload widget's "- or -" and the footer links */
.or, footer .show-api, footer .settings, footer .built-with { color: var(--body-text-color) !important; opacity: 1 !important; }
.legend-swatch { display: inline-block; width: 14px; height: 14px; margin-right: 4px; vertical-align: middle;
                 border: 1px solid rgba(0, 0, 0, 0.3); }
"""


# Names for what gradio renders without one (axe-core, WCAG 2 A/AA): the example gallery's buttons get the
# example's name, the "Empty value" placeholders (a div with aria-label, which ARIA does not allow on a plain
# div) become images, and a view's clickable image takes the view's caption as its name and alt text.
# Re-applied as gradio re-renders.
A11Y_JS = """<script>
(() => {
  const name = () => {
    document.querySelectorAll('button.gallery-item:not([aria-label])').forEach((button, index) => {
      const img = button.querySelector('img');
      const file = img && img.getAttribute('src') ? decodeURIComponent(img.getAttribute('src').split('/').pop()) : '';
      button.setAttribute('aria-label', `Example ${index + 1}${file ? ': ' + file : ''}`);
    });
    document.querySelectorAll('div.empty[aria-label]:not([role])').forEach(div => div.setAttribute('role', 'img'));
    // a view shown as a clickable image (token inspector): the button and its image take the view's caption
    // (only buttons gradio left unnamed, and those named here before: never the upload's own source buttons)
    document.querySelectorAll('.image-container button').forEach(button => {
      if (button.hasAttribute('aria-label') && !button.dataset.dovitNamed) return;
      button.dataset.dovitNamed = '1';
      const label = button.closest('.block')?.querySelector('[data-testid="block-label"]');
      const text = (label ? label.innerText.trim() : '') || 'view';
      if (button.getAttribute('aria-label') !== text) button.setAttribute('aria-label', text);
      const img = button.querySelector('img');
      if (img && img.alt !== text) img.alt = text;
    });
  };
  let queued = false;  // one pass per frame, however many nodes a re-render changes
  const schedule = () => { if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; name(); }); } };
  new MutationObserver(schedule).observe(document.documentElement, {childList: true, subtree: true});
  document.addEventListener('DOMContentLoaded', name);
})();
</script>"""
# Keyboard control of ξ: the slider's arrows, PageUp/PageDown, Home and End move it (the browser's own range input,
# which sends gradio's input event, so the ξ box follows); gradio's release event, which redraws the views, fires
# on pointerup only, so the key's release sends one.
XI_KEYBOARD_JS = """<script>
document.addEventListener('keyup', (event) => {
  const keys = ['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'PageUp', 'PageDown', 'Home', 'End'];
  const target = event.target;
  if (!keys.includes(event.key) || !(target instanceof HTMLInputElement) || target.type !== 'range'
      || !target.closest('#xi-slider')) return;
  target.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}));
});
</script>"""


def upload_image(**kwargs) -> gr.Image:
    """A gr.Image whose value reaches the handler untouched: the upload's path (bytes for a data URL).

    gradio's own Image preprocessing opens the file with PIL, so a corrupt upload would fail inside
    gradio with a generic error; here decoding, EXIF, bit depth and messages are ``app.images``' job.
    The instance's preprocess is replaced (a gr.Image subclass would make gradio write a .pyi stub
    next to this file).
    """
    component = gr.Image(type="filepath", image_mode=None, **kwargs)
    component.preprocess = _raw_upload  # type: ignore[method-assign]
    return component


def _raw_upload(payload):
    """The upload's path as sent (``Studio.user_image`` decides whether it may be read) or, for a data:
    URL, its bytes under the same size cap as a file."""
    if payload is None:
        return None
    if payload.url and payload.url.startswith("data:"):
        try:
            return decode_data_url(payload.url)
        except ImageInputError as error:
            raise user_error(str(error)) from None
    return payload.path


def raw_number(**kwargs) -> gr.Number:
    """A gr.Number whose value reaches the handler as sent (gradio's own preprocessing turns True and
    "0.5" into floats; ``Studio.user_xi`` refuses anything but a number)."""
    component = gr.Number(**kwargs)
    component.preprocess = lambda payload: payload  # type: ignore[method-assign]
    return component


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


def help_markdown() -> str:
    """The "What each view teaches" part of app/README_APP.md (the README's own copy of it)."""
    text = HELP_PATH.read_text() if HELP_PATH.exists() else ""
    marker = "## What each view teaches"
    return text[text.index(marker) + len(marker):].strip() if marker in text else "See README.md."


def xi_ticks_html() -> str:
    """Labels under the ξ slider at their (non-linear) slider positions."""
    spans = "".join(
        f'<span style="left: {100 * controls.position_from_xi(xi):.1f}%">{xi:g}</span>' for xi in controls.XI_TICKS
    ) + '<span style="left: 100%">1</span>'
    return f'<div class="xi-ticks">{spans}</div>'


def image_grid(labels: list[str], elem_prefix: str, per_row: int = 2) -> list[gr.Image]:
    """Output images in rows of ``per_row``; handlers replace each label with the view's caption."""
    images = []
    for start in range(0, len(labels), per_row):
        with gr.Row(equal_height=True):
            for index, label in enumerate(labels[start:start + per_row], start=start + 1):
                images.append(gr.Image(label=label, format="jpeg", interactive=False,
                                       elem_id=f"{elem_prefix}-{index}", buttons=["fullscreen", "download"]))
    return images


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
        views = build_views(studio, page, frame_folders=video_tab.frame_folders([*example_dirs, *frame_roots]))
        panel = inspector_tab.build_panel()
        inspector = inspector_tab.TokenInspector(studio)
        exports = sharing.ExportHandlers(studio)
        wire_page(demo, studio, session, page, views, panel, inspector, exports)
        add_api_endpoints(studio, inspector, exports, limits)
    demo.queue(default_concurrency_limit=1, max_size=limits.queue_size)
    return StudioApp(blocks=demo, studio=studio, example_dirs=example_dirs, limits=limits)


def build_controls(studio: Studio, examples: list[Path]) -> PageControls:
    """The header, the left column of inputs and the readouts column beside it."""
    config = studio.predictor.config
    header = gr.Markdown(header_markdown(studio.predictor), elem_id="header")
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(studio.models.labels, value=studio.models.default_label, elem_id="model",
                                label="Model (checkpoints/ and each --checkpoint; switched for this tab only)",
                                visible=len(studio.models.labels) > 1)
            runtime = gr.Radio(list(RUNTIMES), value="PyTorch", elem_id="runtime",
                               label="Runtime (ONNX Runtime: the model's ONNX export, made on first use)",
                               visible=onnxruntime_installed())
            image = upload_image(label="Input image (PNG, JPEG, WebP, BMP)", sources=["upload", "webcam", "clipboard"],
                                 elem_id="input-image", height=320)
            notices = gr.Markdown(elem_id="notices")
            size = gr.Dropdown(controls.working_size_choices(studio.default_size, studio.patch),
                               value=studio.default_size_value, label="Working resolution (height × width) the model sees",
                               elem_id="working-size")
            xi_slider = gr.Slider(0.0, 1.0, value=controls.position_from_xi(config.default_xi), step=controls.SLIDER_STEP,
                                  elem_id="xi-slider", label="ξ — token-pass threshold (finer steps near 1)", buttons=[])
            gr.HTML(xi_ticks_html())
            with gr.Row():
                xi_box = gr.Number(value=config.default_xi, label="ξ (type a value, Enter)", minimum=0.0,
                                   maximum=1.0, step=0.0001, elem_id="xi-number", scale=2)
                reset = gr.Button(f"Reset ξ to {config.default_xi:g}", elem_id="xi-reset", scale=1)
            with gr.Row():
                copy_link = gr.Button("Copy link", elem_id="copy-link", scale=1)
                link_box = gr.Textbox(label="Link to this view (example, ξ, size, tab, token)", interactive=False,
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
    return PageControls(header, model, runtime, image, notices, size, xi_slider, xi_box, reset, copy_link, link_box,
                        link_note, readouts, tokens_plot, export_button, export_file)


def build_views(studio: Studio, page: PageControls, frame_folders: list[str]) -> PageViews:
    """The view tabs, then the Policies, Compare, help, Video and Data set tabs: one builder each."""
    # wrap, not gradio's default overflow menu: a tab that does not fit (narrow window, inspector open)
    # goes to a second row instead of hiding behind a "…" button, so Video and Data set stay in view
    with gr.Tabs(overflow_behavior="wrap", elem_id="view-tabs") as tabs:
        token_images = token_pass_tab(studio.num_groups)
        heatmap_images = confidence_tab(studio.num_groups - 1)
        opacity, palette, legend, mask_overlay, raw_mask = segmentation_tab()
        halting_legend, halting = halting_tab()
        dense_mask, disagreement, agreement = dense_tab()
        sweep_button, stop_sweep, sweep_plot = sweep_tab()
        policies = policies_tab.build()
        comparison = compare_tab.build(studio.models.labels, studio.predictor.config.default_xi)
        with gr.Tab("What the views teach", id="help"):
            gr.Markdown(help_markdown())
        video_tab.build(studio, [get_upload_folder()], frame_folders, pickers=[page.model, page.runtime])
        dataset_tab.build(studio, frame_folders, pickers=[page.model, page.runtime])
    slots = ViewSlots(
        readouts=page.readouts, tokens_plot=page.tokens_plot, groups=token_images, confidences=heatmap_images,
        mask_overlay=mask_overlay, legend=legend, color_mask=raw_mask, halting=halting,
        halting_legend=halting_legend, dense_mask=dense_mask, disagreement=disagreement, agreement=agreement,
        sweep_plot=sweep_plot)
    return PageViews(tabs, slots, opacity, palette, sweep_button, stop_sweep, policies, comparison)


def token_pass_tab(groups: int) -> list[gr.Image]:
    with gr.Tab("Token pass", id="token-pass"):
        gr.Markdown("Each group B_g of blocks runs only on the clear tokens. Shaded tokens stopped "
                    "earlier (hatched \\\\); **orange** tokens (hatched /) were stopped by the decision just before "
                    "this group.")
        return image_grid([f"B{g}" for g in range(1, groups + 1)], "token-group")


def confidence_tab(decisions: int) -> list[gr.Image]:
    with gr.Tab("Confidence", id="confidence"):
        gr.Markdown("Aux-head confidence q_l = max_c softmax (Eq. 3) per decision layer. Inside the "
                    "white contour q_l > ξ: those tokens stop there (if still running).")
        return image_grid([f"decision {d}" for d in range(1, decisions + 1)], "confidence")


def segmentation_tab() -> tuple[gr.Slider, gr.Radio, gr.HTML, gr.Image, gr.Image]:
    """Opacity, palette, legend, the mask over the image and the colour mask."""
    with gr.Tab("Segmentation", id="segmentation"):
        with gr.Row():
            opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Mask opacity", elem_id="opacity")
            palette = gr.Radio(list(drawing.PALETTES), value="dataset", elem_id="palette",
                               label="Mask colours (the data set's, or colour-blind safe)")
        legend = gr.HTML(elem_id="legend")
        with gr.Row():
            mask_overlay = gr.Image(label="Mask over the image", format="jpeg", interactive=False)
            raw_mask = gr.Image(label="Colour mask", format="png", interactive=False)
    return opacity, palette, legend, mask_overlay, raw_mask


def halting_tab() -> tuple[gr.HTML, gr.Image]:
    with gr.Tab("Halting depth", id="halting-depth"):
        legend = gr.HTML()
        halting = gr.Image(label="Group after which each token stopped", format="jpeg", interactive=False,
                           elem_id="halting-map")
    return legend, halting


def dense_tab() -> tuple[gr.Image, gr.Image, gr.Markdown]:
    """The dense mask, the pixels where DoViT differs, and the agreement line."""
    with gr.Tab("Dense vs DoViT", id="dense-vs-dovit"):
        with gr.Row():
            dense_mask = gr.Image(label="Dense model's mask (ξ = 1)", format="png", interactive=False)
            disagreement = gr.Image(label="Pixels where DoViT differs from dense (magenta)",
                                    format="jpeg", interactive=False)
        agreement = gr.Markdown(elem_id="agreement")
    return dense_mask, disagreement, agreement


def sweep_tab() -> tuple[gr.Button, gr.Button, gr.Plot]:
    with gr.Tab("ξ sweep", id="xi-sweep"):
        with gr.Row():
            run = gr.Button("Run ξ sweep on this image", elem_id="sweep-button", scale=3)
            stop = gr.Button("Stop", elem_id="sweep-stop", scale=1)
        plot = gr.Plot(label="FLOPs and agreement with dense against ξ", elem_id="sweep-plot")
    return run, stop, plot


def wire_page(demo: gr.Blocks, studio: Studio, session: gr.State, page: PageControls, views: PageViews,
              panel: inspector_tab.InspectorPanel, inspector: inspector_tab.TokenInspector,
              exports: sharing.ExportHandlers) -> None:
    """The page's events: model, runtime, image, size, ξ, opacity, sweep, the tabs, inspector, links, export."""
    view_outputs, opacity, session_views = views.slots.flat(), views.opacity, [session, *views.slots.flat()]
    page_event = dict(concurrency_id=PAGE_QUEUE, concurrency_limit=1, api_visibility="private",
                      validator=studio.admit())
    sweep_event = views.sweep_button.click(studio.on_sweep, [page.xi_box, session], [views.slots.sweep_plot, session],
                                           concurrency_id=SWEEP_QUEUE, concurrency_limit=1, api_visibility="private",
                                           validator=studio.admit("sweep"))
    views.stop_sweep.click(studio.on_stop_sweep, None, None, cancels=[sweep_event], api_visibility="private")
    compare_tab.wire(views.comparison, compare_tab.CompareHandlers(studio), opacity, session, page_event)
    policy_handlers = policies_tab.PolicyHandlers(studio)
    policy_event = policies_tab.wire(views.policies, policy_handlers, session, SWEEP_QUEUE,
                                     clear_on=[page.image.change, page.size.input, page.model.input, page.runtime.input])
    restart = dict(cancels=[sweep_event, policy_event], **page_event)
    page.model.input(studio.on_model, [page.model, opacity, session],
                     [page.header, page.xi_box, page.xi_slider, page.reset, *session_views], **restart)
    page.runtime.input(studio.on_runtime, [page.runtime, page.xi_box, opacity, session], session_views, **restart)
    views.palette.input(studio.on_palette, [views.palette, page.xi_box, opacity, session], session_views, **page_event)
    page.image.change(studio.on_image, [page.image, page.size, page.xi_box, opacity, session, page.model, page.runtime,
                                        views.palette],
                      [session, page.notices, page.size, *view_outputs], **restart)
    page.size.input(studio.on_size, [page.size, page.xi_box, opacity, session], session_views, **restart)
    page.xi_slider.input(studio.on_drag, [page.xi_slider, opacity, session], [page.xi_box, *session_views],
                         trigger_mode="always_last", show_progress="hidden", **page_event)
    page.xi_slider.release(studio.on_release, [page.xi_slider, opacity, session], [page.xi_box, *session_views],
                           show_progress="minimal", **page_event)
    for event in (page.xi_box.submit, page.xi_box.blur):
        event(studio.on_xi_box, [page.xi_box, opacity, session], [page.xi_slider, *session_views],
              show_progress="minimal", **page_event)
    page.reset.click(studio.on_reset, [opacity, session], [page.xi_box, page.xi_slider, *session_views], **page_event)
    opacity.input(studio.on_opacity, [opacity, session], views.slots.mask_overlay, show_progress="hidden",
                  api_visibility="private")
    inspected = [(view, inspector_tab.working_content) for view in views.slots.working_images()]
    inspected += zip(views.policies.masks + views.policies.stop_maps, policy_handlers.views())
    inspector_tab.wire(panel, inspector, session, inspected, refresh_on=page.readouts.change)
    sharing.wire(demo, sharing.LinkHandlers(studio), views.tabs, page.copy_link, page.link_box, page.link_note,
                 dict(image=page.image, size=page.size, xi_box=page.xi_box, xi_slider=page.xi_slider, row=panel.row,
                      col=panel.col, notices=page.notices, session=session))
    page.export_button.click(exports.on_export, [page.xi_box, opacity, session], page.export_file, **page_event)


def add_api_endpoints(studio: Studio, inspector: inspector_tab.TokenInspector, exports: sharing.ExportHandlers,
                      limits: ServingLimits) -> None:
    """/predict, /export, /trace and /inspect_token: API-only endpoints in the /predict queue."""
    default_xi = studio.predictor.config.default_xi
    image_and_xi = lambda: [upload_image(label="image"), raw_number(value=default_xi, label="xi")]  # noqa: E731
    api_endpoint("predict", studio.api_predict, image_and_xi,
                 lambda: [gr.Image(format="png", label="colour mask"), gr.JSON(label="summary")], studio,
                 "Segment an image at token-pass threshold xi in [0, 1] (None: checkpoint default), at the "
                 "checkpoint's working size. Returns the colour mask at the image's resolution (images over 2048 px "
                 "are downscaled first, see summary['notices']) and a summary with gflops, dense_gflops, kept_tokens "
                 f"per group, latency_ms, dense_latency_ms, xi. At most {limits.pending_per_session} calls per "
                 "client session may wait or run at a time.")
    api_endpoint("export", exports.api_export, image_and_xi, lambda: gr.File(label="zip"), studio,
                 "Every view of an image at threshold xi (None: checkpoint default), at the checkpoint's working "
                 "size, as one ZIP: the views as PNG, the charts as PNG and interactive HTML, the per-token trace "
                 "as JSON and CSV, and a README (model, xi, working size, GFLOPs, latency). Admitted like /predict.")
    api_endpoint("trace", studio.api_trace, image_and_xi, lambda: gr.JSON(label="trace"), studio,
                 "The token pass of an image at threshold xi (None: checkpoint default), at the checkpoint's "
                 "working size, as JSON: grid [rows, cols], decision_layers, confidence (decisions x rows x cols, "
                 "the aux heads' q_l), halting_group (rows x cols: the group after which each token stopped; the "
                 "number of groups when it ran every block), kept_tokens per group, gflops, dense_gflops. "
                 "Admitted like /predict.")
    api_endpoint("inspect_token", inspector.api_inspect_token,
                 lambda: [*image_and_xi(), raw_number(value=0, label="row"), raw_number(value=0, label="col")],
                 lambda: gr.JSON(label="token"), studio,
                 "One token's story at token-pass threshold xi (None: checkpoint default), at the checkpoint's "
                 "working size: row and col index its token grid. Returns JSON: confidences (q at each decision "
                 "layer, in decision order), aux_heads (top3 classes per head), decoder top3 (at the token's "
                 "centre pixel), halting_group, dense_class, dovit_class, grid. Admitted like /predict.")


def api_endpoint(name: str, fn, make_inputs, make_outputs, studio: Studio, description: str) -> None:
    """An API-only endpoint ``/name``: its own components in a hidden row (not part of the page) and a button that
    only gradio_client and HTTP calls reach, in the /predict queue, admitted like the page's events."""
    with gr.Row(visible=False):
        inputs, outputs, trigger = make_inputs(), make_outputs(), gr.Button(name)
    trigger.click(fn, inputs=inputs, outputs=outputs, api_name=name, concurrency_id=PREDICT_QUEUE, concurrency_limit=1,
                  validator=studio.admit(), api_description=description)


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
        max_file_size=max(MAX_UPLOAD_BYTES, app.limits.video_max_bytes),  # images: 25 MB, checked by the guard
        state_session_capacity=MAX_SESSIONS, css=CSS,
        allowed_paths=app.example_dirs, ssr_mode=False, mcp_server=False, quiet=True,
        head=inspector_tab.KEYS_JS + A11Y_JS + XI_KEYBOARD_JS,
        footer_links=["api", "settings"], app_kwargs={"middleware": [guard]},
    )
