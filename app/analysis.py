"""What one slider move computes: a forward at ξ (the Predictor reuses the cached ξ-independent part)
and every view drawn from that one forward's trace. Also the ξ sweep. No gradio here."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from dovit.core.preprocess import resize_image
from dovit.evaluation.confidence_range import ConfidenceRange
from dovit.viz import drawing

from .charts import SweepPoint, halting_by_class_figure, tokens_flops_figure
from .readouts import PredictionSummary, prediction_summary

if TYPE_CHECKING:
    from dovit import Prediction, Predictor

# The views are drawn at the photo's own size, capped here on the longer side: a 2048-pixel upload would
# draw four times the pixels of a 1024-pixel one on every slider move.
DISPLAY_MAX_SIDE = 1024


@dataclass
class Views:
    """All views of one forward (``prediction``); images are (H, W, 3) uint8 RGB at the size of the image
    they were drawn over (``render_views``: the photo at its display size), its masks at that size too."""

    summary: PredictionSummary
    group_overlays: list[tuple[np.ndarray, str]]
    heatmaps: list[tuple[np.ndarray, str]]
    color_mask: np.ndarray
    mask_overlay: np.ndarray
    legend: str
    halting: np.ndarray
    halting_legend: str
    dense_color_mask: np.ndarray
    disagreement: np.ndarray
    tokens_figure: go.Figure
    prediction: Prediction | None = None
    halting_figure: go.Figure | None = None  # tokens per class and halting group


def to_working_size(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (H, W, 3) uint8 to the working (height, width) with the Predictor's own resize."""
    return resize_image(image, size)


def display_size(image_size: tuple[int, int], working_size: tuple[int, int] | None = None,
                 max_side: int = DISPLAY_MAX_SIDE) -> tuple[int, int]:
    """The (height, width) the views of an image of ``image_size`` are drawn at, its aspect kept: its own
    size; enlarged to the longer side of ``working_size`` when smaller (so a token is never drawn smaller
    than the patch it was); then scaled down when its longer side is over ``max_side``. Sides at least 1."""
    height, width = (int(v) for v in image_size)
    longer = max(height, width)
    target = min(max(longer, max(working_size or (0,))), max_side)
    scale = target / longer
    return max(1, round(height * scale)), max(1, round(width * scale))


def display_image(image: np.ndarray, working_size: tuple[int, int] | None = None,
                  max_side: int = DISPLAY_MAX_SIDE) -> np.ndarray:
    """(H, W, 3) uint8 at ``display_size`` (itself when it already has it), with the Predictor's resize."""
    return resize_image(image, display_size(image.shape[:2], working_size, max_side))


def render_views(predictor: Predictor, image: np.ndarray, xi: float, opacity: float = 0.5,
                 palette: str = "dataset", working_size: tuple[int, int] | None = None) -> Views:
    """Run ``predictor`` at ``xi`` on ``image`` (H, W, 3) uint8, the photo at the size its views are drawn
    (``display_image``), resized to ``working_size`` (height, width; None: the image's own size) for the
    model, and draw every view from the resulting trace over ``image``, masks (at the image's size) in
    ``palette`` (``drawing.PALETTES``). Repeated calls on the same image and working size only re-run the
    ξ-dependent part of the forward (``Predictor.set_image`` caches the rest)."""
    working = tuple(int(v) for v in (working_size or image.shape[:2]))
    predictor.set_image(image, working)
    return draw_views(predictor, predictor.predict(xi=xi), image, opacity, palette, working)


def draw_views(predictor: Predictor, prediction: Prediction, image: np.ndarray, opacity: float = 0.5,
               palette: str = "dataset", working_size: tuple[int, int] | None = None) -> Views:
    """Every view of ``prediction``, a forward of ``predictor`` on ``image`` seen at ``working_size`` (None:
    the image's own size), drawn over ``image`` (``render_views`` without the forward). No model runs."""
    working = tuple(int(v) for v in (working_size or image.shape[:2]))
    trace, patch, config = prediction.trace, predictor.model.patch_size, predictor.config
    colors = drawing.class_palette(config.class_colors, palette)
    color_mask = drawing.colorize_mask(prediction.mask, colors)
    num_groups = len(trace.groups)
    return Views(
        summary=prediction_summary(prediction,
                                   ConfidenceRange.from_metadata(predictor.model.checkpoint_metadata)),
        group_overlays=drawing.group_overlays(image, trace, patch, working),
        heatmaps=drawing.decision_heatmaps(image, trace, patch, working),
        color_mask=color_mask,
        mask_overlay=drawing.blend(image, color_mask, opacity),
        legend=drawing.legend_html(config.class_names, colors.tolist(), prediction.mask),
        halting=drawing.halting_map(trace.halting_depth, num_groups, image, patch, working_size=working),
        halting_legend=drawing.depth_legend_html(num_groups),
        dense_color_mask=drawing.colorize_mask(prediction.dense_mask, colors),
        disagreement=drawing.disagreement_map(prediction.mask, prediction.dense_mask, image),
        tokens_figure=tokens_flops_figure(trace),
        prediction=prediction,
        halting_figure=halting_by_class_figure(trace.halting_by_class()),
    )


def run_sweep(
    predictor: Predictor,
    image: np.ndarray,
    xis: list[float],
    on_step: Callable[[int, int], None] | None = None,
    working_size: tuple[int, int] | None = None,
) -> list[SweepPoint]:
    """FLOPs and agreement with dense at each ξ in ``xis`` for one image (H, W, 3) seen at ``working_size``
    (None: its own size); agreement is counted over the image's pixels, as ``render_views`` counts it.

    on_step(done, total) is called after each ξ (for a progress bar).
    """
    predictor.set_image(image, tuple(working_size or image.shape[:2]))
    points = []
    for index, xi in enumerate(xis):
        prediction = predictor.predict(xi=xi)
        trace = prediction.trace
        points.append(SweepPoint(
            xi=float(xi), gflops=trace.flops / 1e9, dense_gflops=trace.dense_flops / 1e9,
            agreement=prediction.agreement_with_dense, kept_tokens=[g.tokens for g in trace.groups],
        ))
        if on_step is not None:
            on_step(index + 1, len(xis))
    return points
