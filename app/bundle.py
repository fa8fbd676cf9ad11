"""Everything one view of the studio shows, as one ZIP for slides and papers: every view as a PNG at the
resolution it was drawn (the photo's display size, ``app.analysis.display_image``, as is the class-id mask),
the charts as interactive HTML and as PNG, the per-token trace as JSON and CSV, and a README with the model,
ξ, sizes, GFLOPs and latency. Pure (arrays in, bytes out); no gradio here.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import plotly.graph_objects as go

from dovit.viz.animation import gif_bytes, mp4_bytes

if TYPE_CHECKING:
    from dovit.viz.animation import PassFrame

    from .analysis import Views
    from .readouts import PredictionSummary

CHROMIUM = Path("/usr/bin/chromium")


def build_zip(views: Views, image: np.ndarray, class_names: list[str], model: str,
              charts: dict[str, go.Figure] | None = None, animation: list[PassFrame] | None = None) -> bytes:
    """The ZIP of ``views`` (from ``app.analysis.render_views``) of ``image`` (H, W, 3) uint8, the photo
    they were drawn over; ``charts``: name ->
    figure besides the tokens-per-block chart (e.g. the ξ sweep); ``animation``: the token pass's frames
    (``dovit.viz.animation.pass_frames``), written as pass.gif and pass.mp4."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        images = {"input": image, **_view_images(views)}
        for index, (name, image) in enumerate(images.items()):
            archive.writestr(f"views/{index:02d}_{name}.png", _png(image))
        mask = views.prediction.mask
        # class ids as grey levels, at the image's resolution (for evaluation tools)
        if mask.max(initial=0) < 256:
            archive.writestr("views/class_ids.png", cv2.imencode(".png", mask.astype(np.uint8))[1].tobytes())
        rendered = []
        for name, figure in {"tokens_and_flops": views.tokens_figure, **(charts or {})}.items():
            archive.writestr(f"charts/{name}.html", figure.to_html(include_plotlyjs=True, full_html=True))
            png = chart_png(figure)
            if png is not None:
                archive.writestr(f"charts/{name}.png", png)
                rendered.append(name)
        trace = views.prediction.trace
        archive.writestr(
            "trace/trace.json",
            json.dumps({**trace.to_json(), "summary": _plain(views.summary.to_dict())}, indent=1),
        )
        archive.writestr("trace/tokens.csv", tokens_csv(trace, class_names))
        if animation:
            archive.writestr("pass.gif", gif_bytes(animation))
            archive.writestr("pass.mp4", mp4_bytes(animation))
        archive.writestr("README.md", readme(views.summary, model, list(images), rendered, charts or {},
                                             animated=bool(animation), view_size=image.shape[:2]))
    return buffer.getvalue()


def _view_images(views: Views) -> dict[str, np.ndarray]:
    named = {f"token_pass_{_slug(caption)}": image for image, caption in views.group_overlays}
    named |= {f"confidence_{_slug(caption)}": image for image, caption in views.heatmaps}
    return named | {"mask_overlay": views.mask_overlay, "colour_mask": views.color_mask,
                    "halting_depth": views.halting,
                    "dense_mask": views.dense_color_mask, "disagreement_with_dense": views.disagreement}


def _slug(caption: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", caption.lower().split("·")[0].split(":")[0]).strip("_")[:40]


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


def chart_png(figure: go.Figure) -> bytes | None:
    """The figure as PNG through kaleido (which drives a Chrome/Chromium); None when either is missing."""
    if CHROMIUM.exists():
        os.environ.setdefault("BROWSER_PATH", str(CHROMIUM))
    try:
        return figure.to_image(format="png", width=1000, height=500, scale=2)
    except Exception:  # no kaleido, no browser, or a browser that would not start: the HTML is still there
        return None


def tokens_csv(trace, class_names: list[str]) -> str:
    """One row per token: row, col, halting group, then per decision its confidence q_l and the aux head's
    class, then the decoder's class and probability at the token's centre pixel."""
    out = io.StringIO()
    writer = csv.writer(out)
    decisions = [d.layer for d in trace.decisions]
    writer.writerow(["row", "col", "halting_group"]
                    + [f"{kind}_after_block_{layer}" for layer in decisions for kind in ("confidence",
                                                                                         "aux_class")]
                    + ["decoder_class", "decoder_probability"])
    name = lambda index: class_names[index] if 0 <= index < len(class_names) else str(index)  # noqa: E731
    for row in range(trace.grid[0]):
        for col in range(trace.grid[1]):
            per_decision = []
            for decision in trace.decisions:
                top = decision.top_classes[row, col, 0] if decision.top_classes is not None else -1
                per_decision += [f"{decision.confidence[row, col]:.5f}", name(int(top))]
            writer.writerow([row, col, int(trace.halting_depth[row, col]), *per_decision,
                             name(int(trace.decoder_top_classes[row, col, 0])),
                             f"{trace.decoder_top_probabilities[row, col, 0]:.5f}"])
    return out.getvalue()


def readme(summary: PredictionSummary, model: str, images: list[str], rendered: list[str],
           charts: dict, animated: bool = False, view_size: tuple[int, int] | None = None) -> str:
    def number(key: str, fmt: str) -> str:
        value = getattr(summary, key)
        return "–" if value is None else format(value, fmt)

    size = "×".join(str(v) for v in summary.working_size)
    lines = [
        "# DoViT Studio export", "",
        f"- model: {model}",
        f"- ξ = {summary.xi:g}, working size {size} ({summary.num_tokens} tokens)"
        + ("" if view_size is None else f", views drawn at {view_size[0]}×{view_size[1]} px"),
        f"- GFLOPs: {summary.gflops:.3f} (dense {summary.dense_gflops:.3f}, "
        f"{summary.flops_saved_percent:.1f}% saved)",
        f"- latency: {number('latency_ms', '.1f')} ms (dense {number('dense_latency_ms', '.1f')} ms) on "
        f"{summary.runtime or 'PyTorch'}, one run each on the serving machine",
        f"- kept tokens per group: {' → '.join(str(t) for t in summary.kept_tokens)}",
        f"- agreement with dense: {summary.agreement_with_dense_percent:.2f}% of pixels",
        f"- exported {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
        "## Files", "",
        *[f"- `views/{i:02d}_{name}.png`" for i, name in enumerate(images)],
        "- `views/class_ids.png`: class ids as grey levels at the image's resolution",
        *[f"- `charts/{name}.html` (interactive)" + (f", `charts/{name}.png`" if name in rendered else
                                                    " (PNG not rendered: it needs kaleido and "
                                                    "Chrome/Chromium)")
          for name in ["tokens_and_flops", *charts]],
        "- `trace/trace.json`: grid, decision layers, confidence maps, halting group per token, kept tokens, "
        "GFLOPs, halting_by_class (per class, its tokens by the group after which they stopped)",
        "- `trace/tokens.csv`: one row per token (confidence and class per decision, decoder class)",
        *(["- `pass.gif` (loops) and `pass.mp4`: the token pass animated, group by group: the tokens each "
           "decision stops fade to their class colour, the kept ones stay lit; each frame names the group, "
           "the share of tokens it ran on and the GFLOPs so far"] if animated else []),
        "", f"<sub>{summary.flops_convention}</sub>", "",
    ]
    return "\n".join(lines)


def _plain(value):
    """JSON-safe copy of the summary (numpy scalars to Python numbers)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value
