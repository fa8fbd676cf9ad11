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


@dataclass
class Views:
    """All views of one forward (``prediction``); images are (H, W, 3) uint8 RGB at the working size."""

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


def render_views(predictor: Predictor, working_image: np.ndarray, xi: float, opacity: float = 0.5,
            palette: str = "dataset") -> Views:
    """Run ``predictor`` at ``xi`` on ``working_image`` (H, W, 3) uint8 already at the working size,
    and draw every view from the resulting trace, masks in ``palette`` (``drawing.PALETTES``). Repeated calls
    on the same image only re-run the ξ-dependent part of the forward (``Predictor.set_image`` caches the
    rest)."""
    size = working_image.shape[:2]
    predictor.set_image(working_image, size)
    prediction = predictor.predict(xi=xi)
    trace, patch, config = prediction.trace, predictor.model.patch_size, predictor.config
    colors = drawing.class_palette(config.class_colors, palette)
    color_mask = drawing.colorize_mask(prediction.mask, colors)
    num_groups = len(trace.groups)
    return Views(
        summary=prediction_summary(prediction,
                                   ConfidenceRange.from_metadata(predictor.model.checkpoint_metadata)),
        group_overlays=drawing.group_overlays(working_image, trace, patch),
        heatmaps=drawing.decision_heatmaps(working_image, trace, patch),
        color_mask=color_mask,
        mask_overlay=drawing.blend(working_image, color_mask, opacity),
        legend=drawing.legend_html(config.class_names, colors.tolist(), prediction.mask),
        halting=drawing.halting_map(trace.halting_depth, num_groups, working_image, patch),
        halting_legend=drawing.depth_legend_html(num_groups),
        dense_color_mask=drawing.colorize_mask(prediction.dense_mask, colors),
        disagreement=drawing.disagreement_map(prediction.mask, prediction.dense_mask, working_image),
        tokens_figure=tokens_flops_figure(trace),
        prediction=prediction,
        halting_figure=halting_by_class_figure(trace.halting_by_class()),
    )


def run_sweep(
    predictor: Predictor,
    working_image: np.ndarray,
    xis: list[float],
    on_step: Callable[[int, int], None] | None = None,
) -> list[SweepPoint]:
    """FLOPs and agreement with dense at each ξ in ``xis`` for one image (H, W, 3) at the working size.

    on_step(done, total) is called after each ξ (for a progress bar).
    """
    predictor.set_image(working_image, working_image.shape[:2])
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
