"""Plotly figures: tokens and FLOPs per block (the paper's Fig. 6 view), halting by class and the ξ sweep."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dovit.viz.drawing import depth_colors, depth_labels

from .controls import XI_TICKS, position_from_xi

if TYPE_CHECKING:
    from dovit import Trace
    from dovit.core.trace import HaltingByClass

TOKENS_COLOR = "#1f77b4"
FLOPS_COLOR = "#d62728"
DENSE_COLOR = "#7f7f7f"


def tokens_flops_figure(trace: Trace) -> go.Figure:
    """Bars: patch tokens each block processes; line: that block's GFLOPs; dashed: the dense model.

    Blocks are 1-based; a group's FLOPs are split evenly over its blocks (they all see the same tokens).
    """
    blocks, tokens, gflops, groups = [], [], [], []
    dense_block_gflops = None
    for index, group in enumerate(trace.groups):
        first, last = group.blocks
        count = last - first + 1
        for block in range(first, last + 1):
            blocks.append(block)
            tokens.append(group.tokens)
            gflops.append(group.flops / count / 1e9)
            groups.append(f"B{index + 1}")
    if trace.groups:
        first_group = trace.groups[0]  # B_1 always runs all tokens: its per-block cost is the dense one
        dense_block_gflops = first_group.flops / (first_group.blocks[1] - first_group.blocks[0] + 1) / 1e9
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_bar(
        x=blocks, y=tokens, name="kept tokens", marker_color=TOKENS_COLOR, customdata=groups,
        hovertemplate="block %{x} (%{customdata})<br>%{y} tokens<extra></extra>",
    )
    figure.add_scatter(
        x=blocks, y=gflops, name="GFLOPs (this ξ)", mode="lines+markers", line_color=FLOPS_COLOR,
        hovertemplate="block %{x}<br>%{y:.4f} GFLOPs<extra></extra>", secondary_y=True,
    )
    if dense_block_gflops is not None:
        figure.add_scatter(
            x=blocks, y=[dense_block_gflops] * len(blocks), name="GFLOPs (dense)", mode="lines",
            line=dict(color=DENSE_COLOR, dash="dash"),
            hovertemplate="block %{x}<br>dense %{y:.4f} GFLOPs<extra></extra>", secondary_y=True,
        )
    for decision in trace.decisions:
        figure.add_vline(x=decision.layer + 0.5, line=dict(color="#999", dash="dot", width=1))
    figure.update_xaxes(title_text="transformer block", dtick=1)
    figure.update_yaxes(title_text="patch tokens", range=[0, trace.num_tokens * 1.05], secondary_y=False)
    figure.update_yaxes(title_text="GFLOPs per block", rangemode="tozero", secondary_y=True)
    figure.update_layout(
        title=f"Tokens and FLOPs per block at ξ = {trace.xi:.4g} (dotted: decision layers)",
        height=360, margin=dict(l=50, r=50, t=50, b=40), legend=dict(orientation="h", y=-0.2), bargap=0.15,
    )
    return figure


def halting_by_class_figure(halting: HaltingByClass) -> go.Figure:
    """Stacked bars, one per class the image has tokens of: its tokens that stopped after each group B_g,
    and (on top) those that ran every block, in the halting-depth map's colours. Absent classes are left
    out; the bars sum to the grid's tokens."""
    num_groups = halting.counts.shape[1]
    present = halting.counts.sum(axis=1) > 0
    names = [name for name, shown in zip(halting.class_names, present, strict=True) if shown]
    counts = halting.counts[present]
    totals = counts.sum(axis=1)
    figure = go.Figure()
    colours = depth_colors(num_groups)
    for group, (label, rgb) in enumerate(zip(depth_labels(num_groups), colours, strict=True)):
        figure.add_bar(
            x=names, y=counts[:, group].tolist(), name=label,
            marker_color=f"rgb({int(rgb[0])}, {int(rgb[1])}, {int(rgb[2])})",
            customdata=(100.0 * counts[:, group] / np.maximum(totals, 1)).tolist(),
            hovertemplate=f"%{{x}}: %{{y}} tokens {label} (%{{customdata:.0f}}% of the class)<extra></extra>",
        )
    figure.update_xaxes(title_text="class (the final prediction at each token)")
    figure.update_yaxes(title_text="tokens", rangemode="tozero")
    figure.update_layout(
        barmode="stack", title="Halting by class: which classes stop early, which run to the end",
        height=360, margin=dict(l=50, r=30, t=50, b=40), legend=dict(orientation="h", y=-0.3),
    )
    return figure


@dataclass
class SweepPoint:
    """One ξ of a sweep: FLOPs of that forward, the dense FLOPs, pixel agreement with dense (0..1)."""

    xi: float
    gflops: float
    dense_gflops: float
    agreement: float
    kept_tokens: list[int]


def sweep_figure(points: list[SweepPoint], current_xi: float | None = None) -> go.Figure:
    """FLOPs (% of dense) and agreement with dense (%) against ξ, the current ξ marked.

    The x axis uses the ξ slider's scale (``app.controls``), so the many useful values near 1 spread out;
    tick labels and hover show ξ itself.
    """
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    xs = [position_from_xi(p.xi, snap=False) for p in points]
    flops_percent = [100.0 * p.gflops / p.dense_gflops for p in points]
    agreement = [100.0 * p.agreement for p in points]
    kept = [" → ".join(str(t) for t in p.kept_tokens) for p in points]
    figure.add_scatter(
        x=xs, y=flops_percent, name="FLOPs (% of dense)", mode="lines+markers", line_color=FLOPS_COLOR,
        customdata=[[p.xi, p.gflops, k] for p, k in zip(points, kept, strict=False)],
        hovertemplate="ξ %{customdata[0]:.5f}<br>%{y:.1f}% of dense (%{customdata[1]:.3f} GFLOPs)"
        "<br>kept %{customdata[2]}<extra></extra>",
    )
    figure.add_scatter(
        x=xs, y=agreement, name="agreement with dense (%)", mode="lines+markers", line_color=TOKENS_COLOR,
        customdata=[p.xi for p in points], secondary_y=True,
        hovertemplate="ξ %{customdata:.5f}<br>%{y:.2f}% of pixels agree<extra></extra>",
    )
    if current_xi is not None and points:
        x = position_from_xi(current_xi, snap=False)
        figure.add_vline(x=x, line=dict(color="black", width=2),
                         annotation_text=f"current ξ = {current_xi:.4g}", annotation_position="top left")
        figure.add_scatter(
            x=[x], y=[_interpolate(xs, flops_percent, x)], mode="markers", showlegend=False,
            marker=dict(size=12, color=FLOPS_COLOR, symbol="diamond"), hoverinfo="skip",
        )
        figure.add_scatter(
            x=[x], y=[_interpolate(xs, agreement, x)], mode="markers", showlegend=False,
            marker=dict(size=12, color=TOKENS_COLOR, symbol="diamond"), hoverinfo="skip", secondary_y=True,
        )
    ticks = [xi for xi in XI_TICKS if not points or xi >= min(p.xi for p in points) - 1e-9] + [1.0]
    figure.update_xaxes(title_text="ξ (token-pass threshold; 1 = dense), on the slider's scale",
                        tickvals=[position_from_xi(xi, snap=False) for xi in ticks],
                        ticktext=[f"{xi:g}" for xi in ticks])
    figure.update_yaxes(title_text="FLOPs, % of dense", rangemode="tozero", secondary_y=False)
    figure.update_yaxes(title_text="pixel agreement with dense, %", secondary_y=True)
    figure.update_layout(
        title="ξ sweep on this image", height=400, margin=dict(l=50, r=50, t=50, b=40),
        legend=dict(orientation="h", y=-0.2),
    )
    return figure


def _interpolate(xs: list[float], ys: list[float], x: float) -> float:
    """Linear interpolation of y at x over increasing xs (clamped at the ends)."""
    if x <= xs[0]:
        return ys[0]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys, strict=False), zip(xs[1:], ys[1:], strict=False), strict=False):
        if x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1]
