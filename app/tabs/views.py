"""The image's view tabs (token pass, confidence, segmentation, halting depth, dense vs DoViT, ξ sweep):
layout; ``app.studio.Studio`` fills them through the page's ``ViewSlots`` (``app.ui.build_views``). The one
handler here is the Token pass tab's "Play the token pass" (``PassPlayer``: layout, handler, wiring)."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from dovit.viz import drawing
from dovit.viz.animation import gif_bytes, render_pass

from ..limits import new_run_folder
from ..state import Session
from ..studio import Studio, user_error

ANIMATION_ROOT = Path(tempfile.gettempdir()) / "dovit-animation"


@dataclass
class PassPlayer:
    """The Token pass tab's button and the animated GIF it renders (gr.Image plays GIFs)."""

    play: gr.Button
    animation: gr.Image


@dataclass
class PassPlayerHandlers:
    studio: Studio

    def on_play(self, xi: float, session: Session | None, request: gr.Request = None) -> str:
        """The token pass of the session's image at ξ as an animated GIF (``dovit.viz.animation``): its
        path, in a fresh run folder."""
        with self.studio.finished(request):
            if session is None:
                raise user_error("Upload an image first: the animation plays the current image's token pass.")
            xi = self.studio.user_xi(xi)
            predictor = self.studio.predictor_for(session)
            with self.studio.model_call():
                frames = render_pass(predictor, session.display, xi, session.palette,
                                     working_size=session.size)
            path = new_run_folder(ANIMATION_ROOT) / f"token_pass_xi{xi:g}.gif"
            path.write_bytes(gif_bytes(frames))
            return str(path)

    @staticmethod
    def on_clear() -> None:
        return None


def wire_pass_player(player: PassPlayer, handlers: PassPlayerHandlers, inputs: list, event: dict,
                     clear_on: list) -> None:
    """Play renders the GIF from ``inputs`` = [ξ box, session] (``event``: the page's event settings); each
    event of ``clear_on`` (a new image, size or model) empties it."""
    player.play.click(handlers.on_play, inputs, player.animation, **event)
    for clear in clear_on:
        clear(handlers.on_clear, None, player.animation, api_visibility="private", show_progress="hidden")


def image_grid(labels: list[str], elem_prefix: str, per_row: int = 2) -> list[gr.Image]:
    """Output images in rows of ``per_row``; handlers replace each label with the view's caption."""
    images = []
    for start in range(0, len(labels), per_row):
        with gr.Row(equal_height=True):
            for index, label in enumerate(labels[start:start + per_row], start=start + 1):
                images.append(gr.Image(label=label, format="jpeg", interactive=False,
                                       elem_id=f"{elem_prefix}-{index}", buttons=["fullscreen", "download"]))
    return images


def token_pass_tab(groups: int) -> tuple[list[gr.Image], PassPlayer]:
    """One image per group B_g, then the animation of the whole pass."""
    with gr.Tab("Token pass", id="token-pass"):
        gr.Markdown("Each group B_g of blocks runs only on the clear tokens. Shaded tokens stopped "
                    "earlier (hatched \\\\); **orange** tokens (hatched /) were stopped by the decision just "
                    "before this group.")
        images = image_grid([f"B{g}" for g in range(1, groups + 1)], "token-group")
        play = gr.Button("Play the token pass", elem_id="play-pass")
        animation = gr.Image(label="The token pass, group by group: stopped tokens fade to their class "
                                   "colour", type="filepath", interactive=False, elem_id="pass-animation",
                             buttons=["fullscreen", "download"])
    return images, PassPlayer(play, animation)


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


def halting_tab() -> tuple[gr.HTML, gr.Image, gr.Plot]:
    """The legend, the map of the group after which each token stopped, and the halting-by-class bars."""
    with gr.Tab("Halting depth", id="halting-depth"):
        legend = gr.HTML()
        halting = gr.Image(label="Group after which each token stopped", format="jpeg", interactive=False,
                           elem_id="halting-map")
        gr.Markdown("**Halting by class**: for each class of the final mask, its tokens by the group after "
                    "which they stopped — which classes stop early, which run to the end.")
        by_class = gr.Plot(label="Tokens per class by halting group", elem_id="halting-by-class")
    return legend, halting, by_class


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
