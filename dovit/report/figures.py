"""Plotly figures of the data-set report, each a pure function of ``dovit.analyze`` summary parts
(plain numbers and lists) -> ``plotly.graph_objects.Figure``."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..viz.drawing import depth_colors

DOVIT_COLOR = "#d62728"
DENSE_COLOR = "#7f7f7f"
AGREEMENT_COLOR = "#1f77b4"
LAYOUT = dict(template="plotly_white", height=380, margin=dict(l=60, r=30, t=60, b=50))


def gflops_histogram_figure(gflops: list[float], dense_gflops: float, xi: float) -> go.Figure:
    """Histogram of per-image GFLOPs at ``xi``, with the dense forward's cost as a dashed line."""
    figure = go.Figure(go.Histogram(x=gflops, nbinsx=20, marker_color=DOVIT_COLOR, name="images"))
    figure.add_vline(x=dense_gflops, line_dash="dash", line_color=DENSE_COLOR,
                     annotation_text=f"dense {dense_gflops:.2f}", annotation_position="top left")
    figure.update_layout(title=f"GFLOPs per image at ξ = {xi:g} ({len(gflops)} images)", xaxis_title="GFLOPs",
                         yaxis_title="images", bargap=0.05, **LAYOUT)
    return figure


def kept_fraction_figure(layers: list[int], kept_per_image: list[list[float]]) -> go.Figure:
    """Box per decision layer of the fraction of patch tokens still kept after it, one point per image.

    kept_per_image: per image, the kept fraction after each decision (same order as ``layers``)."""
    values = np.asarray(kept_per_image, np.float64).reshape(len(kept_per_image), len(layers))
    figure = go.Figure()
    for column, layer in enumerate(layers):
        figure.add_box(y=values[:, column], name=f"after block {layer}", boxmean=True,
                       marker_color=DOVIT_COLOR,
                       boxpoints="outliers")
    figure.update_layout(title="Kept fraction of tokens per decision layer", yaxis_title="kept fraction",
                         yaxis_range=[0, 1.02], showlegend=False, **LAYOUT)
    return figure


def halting_by_class_figure(rows: list[dict], layers: list[int], source: str) -> go.Figure:
    """Stacked bars per class: the share of its tokens that stopped after each group or ran every block.

    rows: ``halting_depth_per_class`` entries (class, tokens, fraction_per_depth, mean_depth); classes
    without tokens are left out; sorted from the earliest-stopping class down."""
    rows = sorted((r for r in rows if r["tokens"]), key=lambda r: r["mean_depth"], reverse=True)
    names = [f"{r['class']} ({r['tokens']})" for r in rows]
    labels = [f"stopped after block {layer}" for layer in layers] + ["ran every block"]
    colors = _depth_colors(len(labels))
    figure = go.Figure()
    for depth, (label, color) in enumerate(zip(labels, colors, strict=False)):
        figure.add_bar(y=names, x=[r["fraction_per_depth"][depth] for r in rows], name=label, orientation="h",
                       marker_color=color)
    figure.update_layout(barmode="stack", title=f"Halting depth per class ({source}; tokens in brackets)",
                         xaxis_title="share of the class's tokens", xaxis_range=[0, 1],
                         **{**LAYOUT, "height": max(300, 60 + 28 * len(rows))})
    return figure


def reliability_figure(calibration: list[dict]) -> go.Figure:
    """Reliability diagram per decision layer: accuracy of the aux head's class against its confidence,
    per bin (marker size ~ tokens), with the diagonal of a calibrated head and the ECE in the title."""
    figure = make_subplots(rows=1, cols=len(calibration), shared_yaxes=True,
                           subplot_titles=[f"after block {c['layer']}: ECE "
                                           + ("n/a" if c["ece"] is None else f"{100 * c['ece']:.1f}%")
                                           for c in calibration])
    for column, entry in enumerate(calibration, start=1):
        bins = [b for b in entry["bins"] if b["tokens"]]
        total = max(sum(b["tokens"] for b in bins), 1)
        figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dash", color=DENSE_COLOR),
                           showlegend=column == 1, name="calibrated", row=1, col=column)
        figure.add_scatter(x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins],
                           mode="lines+markers",
                           marker=dict(size=[6 + 24 * np.sqrt(b["tokens"] / total) for b in bins],
                                       color=DOVIT_COLOR),
                           customdata=[b["tokens"] for b in bins], showlegend=column == 1, name="aux head",
                           hovertemplate="confidence %{x:.3f}<br>accuracy %{y:.3f}<br>%{customdata} tokens",
                           row=1, col=column)
        figure.update_xaxes(title_text="confidence q", range=[0, 1.02], row=1, col=column)
    figure.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=1)
    figure.update_layout(title="Aux-head calibration per decision layer (tokens that reached the decision)",
                         **LAYOUT)
    return figure


def stopped_error_figure(rows: list[dict]) -> go.Figure:
    """Per decision (and for the tokens that ran every block): error of the aux head on the tokens it
    stopped, and the final mask's pixel error on them: confident and wrong is what ξ cannot fix."""
    names = [r["stopped_at"] for r in rows]
    figure = go.Figure()
    figure.add_bar(x=names, y=[r["aux_error_rate"] for r in rows], name="aux head's class wrong (tokens)",
                   marker_color=DOVIT_COLOR, customdata=[r["tokens"] for r in rows],
                   hovertemplate="%{y:.3f} of %{customdata} tokens")
    figure.add_bar(x=names, y=[r["final_pixel_error_rate"] for r in rows], name="final mask wrong (pixels)",
                   marker_color=AGREEMENT_COLOR)
    figure.update_layout(barmode="group", title="Error of the tokens each decision stopped",
                         yaxis_title="error rate",
                         **LAYOUT)
    return figure


def tradeoff_figure(rows: list[dict], xi: float) -> go.Figure:
    """mIoU (when labelled) and pixel agreement with dense against mean GFLOPs, one point per ξ of the
    grid (labelled with ξ); the report's ξ is ringed and the dense cost dashed."""
    has_miou = any("miou" in r for r in rows)
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    gflops = [r["gflops"] for r in rows]
    text = [f"ξ {r['xi']:g}" for r in rows]
    figure.add_scatter(x=gflops, y=[100 * r["agreement_with_dense"] for r in rows], mode="lines+markers+text",
                       text=text, textposition="bottom right", name="agreement with dense (%)",
                       line_color=AGREEMENT_COLOR, secondary_y=has_miou)
    if has_miou:
        figure.add_scatter(x=gflops, y=[100 * r["miou"] for r in rows], mode="lines+markers+text", text=text,
                           textposition="top left", name="mIoU (%)", line_color=DOVIT_COLOR,
                           secondary_y=False)
        figure.update_yaxes(title_text="mIoU (%)", secondary_y=False)
        figure.update_yaxes(title_text="agreement with dense (%)", secondary_y=True)
    else:
        figure.update_yaxes(title_text="agreement with dense (%)")
    current = [r for r in rows if r["xi"] == xi]
    for row in current:
        figure.add_scatter(x=[row["gflops"]], y=[100 * row.get("miou", row["agreement_with_dense"])],
                           mode="markers",
                           marker=dict(size=16, color="rgba(0,0,0,0)", line=dict(width=2, color="black")),
                           name=f"report ξ {xi:g}", secondary_y=False)
    if rows:
        figure.add_vline(x=rows[0]["dense_gflops"], line_dash="dash", line_color=DENSE_COLOR)
    figure.update_layout(title="What each ξ costs and buys", xaxis_title="mean GFLOPs per image", **LAYOUT)
    return figure


def _depth_colors(count: int) -> list[str]:
    return [f"rgb({r},{g},{b})" for r, g, b in depth_colors(count).tolist()]


def timeline_figure(records: list, current: int | None = None) -> go.Figure:
    """Per-frame compute of a video: GFLOPs of each frame against the dense forward's, and the measured
    latency (ms, right axis); ``current`` (a frame number) is marked with a vertical line.

    records: ``dovit.viz.video.FrameRecord`` objects (or dicts with the same fields), in frame order."""
    rows = [r if isinstance(r, dict) else vars(r) for r in records]
    frames = [r["frame"] for r in rows]
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_scatter(x=frames, y=[r["gflops"] for r in rows], mode="lines", name="DoViT GFLOPs",
                       line_color=DOVIT_COLOR, secondary_y=False)
    figure.add_scatter(x=frames, y=[r["dense_gflops"] for r in rows], mode="lines", name="dense GFLOPs",
                       line=dict(color=DENSE_COLOR, dash="dash"), secondary_y=False)
    figure.add_scatter(x=frames, y=[r["latency_ms"] for r in rows], mode="lines", name="latency (ms)",
                       line=dict(color=AGREEMENT_COLOR, width=1), opacity=0.6, secondary_y=True)
    if current is not None:
        figure.add_vline(x=current, line_color="black", line_width=1)
    figure.update_yaxes(title_text="GFLOPs", rangemode="tozero", secondary_y=False)
    figure.update_yaxes(title_text="latency (ms)", rangemode="tozero", secondary_y=True)
    figure.update_layout(title="Compute per frame", xaxis_title="frame", **LAYOUT)
    return figure
