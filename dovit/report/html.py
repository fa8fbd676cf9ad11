"""The self-contained report page: plotly inline (no network needed to open it), thumbnails as base64 PNG."""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import cv2
import numpy as np
import plotly.graph_objects as go

from . import figures


def png_data_url(image: np.ndarray) -> str:
    """(H, W, 3) uint8 RGB -> a ``data:image/png;base64,...`` URL."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode the thumbnail as PNG")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def report_figures(summary: dict) -> list[tuple[str, go.Figure]]:
    """(section title, figure) for every figure the summary has data for, in page order."""
    layers = [row["layer"] for row in summary["kept_fraction_per_decision"]]
    num_tokens = summary.get("num_tokens") or 1
    kept = [[tokens / num_tokens for tokens in record["kept_tokens"][1:]] for record in summary["per_image"]]
    sections = [
        ("GFLOPs per image", figures.gflops_histogram_figure(
            [r["gflops"] for r in summary["per_image"]], summary["gflops"]["dense_mean"], summary["xi"])),
        ("Kept fraction per decision layer", figures.kept_fraction_figure(layers, kept)),
        ("Halting depth per class", figures.halting_by_class_figure(
            summary["halting_depth_per_class"], layers, summary["class_source"])),
    ]
    if summary.get("calibration"):
        sections.append(("Aux-head calibration", figures.reliability_figure(summary["calibration"])))
        sections.append(("Stopped tokens that were wrong",
                         figures.stopped_error_figure(summary["stopped_tokens"])))
    sections.append(("ξ trade-off", figures.tradeoff_figure(summary["tradeoff"], summary["xi"])))
    return sections


def render_html(summary: dict, thumbnails: dict[str, list[tuple[str, float, np.ndarray]]]) -> str:
    """The whole page as one string: headline numbers, thumbnails, figures (plotly.js inlined once)."""
    parts = []
    for index, (title, figure) in enumerate(report_figures(summary)):
        body = figure.to_html(full_html=False, include_plotlyjs=index == 0, config={"displaylogo": False})
        parts.append(f"<h2>{html.escape(title)}</h2>\n{body}")
    gallery = []
    for key, title in (("cheapest", "Cheapest images"), ("most_expensive", "Most expensive images")):
        cells = "".join(
            f'<figure><img src="{png_data_url(thumb)}" alt="{html.escape(name)}">'
            f"<figcaption>{html.escape(name)}: {gflops:.2f} GFLOPs</figcaption></figure>"
            for name, gflops, thumb in thumbnails.get(key, []))
        gallery.append(f"<h2>{title}</h2><p>image | halting depth (dark: stopped after the first group, "
                       f"bright: ran every block)</p><div class='gallery'>{cells}</div>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>DoViT report: {html.escape(str(summary.get('input',
                                                                                              '')))}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}}
.gallery{{display:flex;flex-wrap:wrap;gap:12px}} figure{{margin:0}} figcaption{{font-size:90%}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style>
</head><body>
<h1>DoViT report</h1>
{headline_table(summary)}
{''.join(gallery)}
{''.join(parts)}
</body></html>
"""


def headline_table(summary: dict) -> str:
    """An HTML table: what was analysed, and per ξ of the grid GFLOPs, agreement with dense and mIoU."""
    facts = [("input", summary.get("input")), ("labels", summary.get("labels") or summary.get("dataset")
                                               or "none"),
             ("checkpoint", summary.get("checkpoint")), ("images", summary["images"]), ("report ξ",
                                                                                        summary["xi"]),
             ("seconds", None if summary.get("seconds") is None else f"{summary['seconds']:.1f}"),
             ("FLOPs", summary["flops_convention"])]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{html.escape(str(v))}</td></tr>"
                   for k, v in facts if v is not None)
    has_miou = any("miou" in r for r in summary["tradeoff"])
    header = "<tr><th>ξ</th><th>GFLOPs</th><th>dense GFLOPs</th><th>agreement with dense</th>" + (
        "<th>mIoU</th><th>PA</th><th>mPA</th>" if has_miou else "") + "</tr>"
    lines = "".join(
        f"<tr><td>{r['xi']:g}</td><td>{r['gflops']:.2f}</td><td>{r['dense_gflops']:.2f}</td>"
        f"<td>{100 * r['agreement_with_dense']:.2f}%</td>"
        + (f"<td>{100 * r['miou']:.2f}</td><td>{100 * r['pa']:.2f}</td><td>{100 * r['mpa']:.2f}</td>"
           if has_miou else "")
        + "</tr>" for r in summary["tradeoff"])
    return f"<table>{rows}</table><h2>Trade-off over ξ</h2><table>{header}{lines}</table>"


def write_report(out: str | Path, summary: dict, thumbnails: dict) -> tuple[Path, Path]:
    """Write ``report.json`` (the summary; NaN as null) and ``report.html`` into ``out`` (created)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    json_path.write_text(json.dumps(_finite(summary), indent=1) + "\n")
    html_path.write_text(render_html(summary, thumbnails), encoding="utf-8")
    return json_path, html_path


def _finite(value):
    """The value with NaN/inf floats replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
