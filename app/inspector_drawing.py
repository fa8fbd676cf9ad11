"""The token inspector's pictures: the confidence-against-ξ chart (inline SVG) and the token marked on the
image (pure: arrays and strings out, no gradio)."""
from __future__ import annotations

import cv2
import numpy as np

from dovit.core.token_grid import token_rows_and_columns

from .charts import FLOPS_COLOR, TOKENS_COLOR
from .inspector import TokenReport

MARKER_COLOR = (255, 0, 255)  # magenta box around the inspected token
STOPPED_COLOR = "#999999"


def confidence_svg(report: TokenReport, width: int = 400, height: int = 200) -> str:
    """The token's confidence q_l at each decision layer against ξ as a small inline SVG: filled where the
    token was still running when the decision was taken, a star where it stopped, hollow grey after it had
    stopped; ξ dashed. (SVG, not plotly: a plotly figure per click cost about 240 ms of browser rendering
    on the 2-core machine, most of the click-to-panel time; docs/benchmarks.md.)"""
    left, right, top, bottom = 44, 16, 12, 52
    heads = report.aux_heads
    plot_width, plot_height = width - left - right, height - top - bottom

    def x_of(index: int) -> float:
        return left + plot_width * (index + 0.5) / max(len(heads), 1)

    def y_of(value: float) -> float:
        return top + plot_height * (1.0 - min(max(value, 0.0), 1.0))

    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="confidence against ξ" '
             'style="font: 11px sans-serif; max-width: 100%">']
    for value in (0.0, 0.5, 1.0):
        y = y_of(value)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>')
    xi_y = y_of(report.xi)
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{xi_y:.1f}" y2="{xi_y:.1f}" stroke="black" '
                 f'stroke-dasharray="5 4"/><text x="{width - right}" y="{xi_y - 4:.1f}" text-anchor="end">'
                 f'ξ = {report.xi:.4g}</text>')
    points = " ".join(f"{x_of(i):.1f},{y_of(h.confidence):.1f}" for i, h in enumerate(heads))
    parts.append(f'<polyline points="{points}" fill="none" stroke="{TOKENS_COLOR}" stroke-width="1.5"/>')
    for index, head in enumerate(heads):
        x, y = x_of(index), y_of(head.confidence)
        if head.stops_here:
            state, mark = "stops here", _star(x, y, 9, FLOPS_COLOR)
        elif head.running:
            state, mark = "goes on", f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{TOKENS_COLOR}"/>'
        else:
            state = "already stopped"
            mark = (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="white" stroke="{STOPPED_COLOR}" '
                    'stroke-width="2"/>')
        parts.append(f'<g><title>after block {head.layer}: q = {head.confidence:.4f} ({state})</title>{mark}'
                     f'<text x="{x + 9:.1f}" y="{y + 14:.1f}">{head.confidence:.3f}</text></g>'
                     f'<text x="{x:.1f}" y="{top + plot_height + 16}" '
                     f'text-anchor="middle">{head.layer}</text>')
    parts.append(f'<text x="{left + plot_width / 2:.1f}" y="{top + plot_height + 30}" text-anchor="middle">'
                 'decision after block</text>'
                 f'<text x="{left}" y="{height - 4}" fill="#555">● goes on · ★ stops here · ○ already '
                 'stopped (decides nothing)</text>'
                 f'<text transform="translate(12 {top + plot_height / 2:.1f}) rotate(-90)" '
                 'text-anchor="middle">q</text></svg>')
    return "".join(parts)


def _star(x: float, y: float, radius: float, color: str) -> str:
    """A five-pointed star centred at (x, y) as an SVG polygon."""
    corners = []
    for index in range(10):
        angle = np.pi / 2 + index * np.pi / 5
        r = radius if index % 2 == 0 else radius * 0.45
        corners.append(f"{x + r * np.cos(angle):.1f},{y - r * np.sin(angle):.1f}")
    return f'<polygon points="{" ".join(corners)}" fill="{color}"/>'


def token_marker(image: np.ndarray, row: int, col: int, patch: int,
                 working_size: tuple[int, int] | None = None) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8, the photo the model saw at ``working_size`` (None: the image's
    own size), with token (row, col) boxed in magenta around the pixels that belong to it
    (``token_index_map``)."""
    out = np.ascontiguousarray(image).copy()
    height, width = out.shape[:2]
    working = tuple(working_size or (height, width))
    grid = (-(-working[0] // patch), -(-working[1] // patch))
    rows, columns = token_rows_and_columns((height, width), working, grid, patch)
    ys, xs = np.flatnonzero(rows == row), np.flatnonzero(columns == col)
    if not ys.size or not xs.size:  # a token narrower than a pixel of a much smaller image
        return out
    top, bottom, left, right = int(ys[0]), int(ys[-1]), int(xs[0]), int(xs[-1])
    thickness = max(1, round(max(height, width) / 240))
    cv2.rectangle(out, (left, top), (right, bottom), MARKER_COLOR, thickness)
    return out
