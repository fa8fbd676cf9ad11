"""The image's view tabs (token pass, confidence, segmentation, halting depth, dense vs DoViT, ξ sweep):
layout only; ``app.studio.Studio`` fills them through the page's ``ViewSlots`` (``app.ui.build_views``)."""
from __future__ import annotations

import gradio as gr

from dovit.viz import drawing


def image_grid(labels: list[str], elem_prefix: str, per_row: int = 2) -> list[gr.Image]:
    """Output images in rows of ``per_row``; handlers replace each label with the view's caption."""
    images = []
    for start in range(0, len(labels), per_row):
        with gr.Row(equal_height=True):
            for index, label in enumerate(labels[start:start + per_row], start=start + 1):
                images.append(gr.Image(label=label, format="jpeg", interactive=False,
                                       elem_id=f"{elem_prefix}-{index}", buttons=["fullscreen", "download"]))
    return images


def token_pass_tab(groups: int) -> list[gr.Image]:
    with gr.Tab("Token pass", id="token-pass"):
        gr.Markdown("Each group B_g of blocks runs only on the clear tokens. Shaded tokens stopped "
                    "earlier (hatched \\\\); **orange** tokens (hatched /) were stopped by the decision just "
                    "before this group.")
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
