"""The token inspector's pure parts: which token a click on a view hit, that token's story as JSON (the
/inspect_token API's answer), the side panel's Markdown, its confidence-against-ξ chart (inline SVG) and
the token marked on the image. No gradio here; everything is read from one forward's ``dovit.Prediction`` (its
``Trace``), so inspecting a token never runs the model.

Token-level classes are read at the token's centre pixel (``dovit.core.trace.token_centres``): the decoder's
top-3 is its softmax there (recorded in the trace), and the DoViT and dense classes are the two masks'
classes there, so the DoViT class is always the decoder's top-1.
"""
from __future__ import annotations

import html
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dovit.core.trace import class_name, token_centres

if TYPE_CHECKING:
    from dovit import Prediction

MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}


def token_at(point: tuple[float, float], content_size: tuple[int, int], working_size: tuple[int, int],
             patch: int) -> tuple[int, int] | None:
    """The token (row, col) under pixel ``point`` = (x, y) of a view, or None off the image.

    A view shows the working image (working_size = (H, W), ``patch``-pixel tokens, the last row/column
    cut short when H or W is not a multiple of the patch) scaled to ``content_size`` = (height, width) and
    drawn from the view's top-left corner; anything right of or below it (a colour bar) is no token.
    ``point`` is in the view image's own pixels, as gradio's ``SelectData.index`` gives it.
    """
    x, y = float(point[0]), float(point[1])
    content_height, content_width = content_size
    if not (0 <= x < content_width and 0 <= y < content_height):
        return None
    height, width = working_size
    # The working pixel whose area holds this view pixel's centre.
    working_y = min(int((y + 0.5) * height / content_height), height - 1)
    working_x = min(int((x + 0.5) * width / content_width), width - 1)
    return working_y // patch, working_x // patch


def move_token(row: int, col: int, direction: str, grid: tuple[int, int]) -> tuple[int, int]:
    """The neighbour of (row, col) in ``direction`` ('up', 'down', 'left', 'right'), kept on the grid."""
    step_row, step_col = MOVES[direction]
    return min(max(row + step_row, 0), grid[0] - 1), min(max(col + step_col, 0), grid[1] - 1)


def check_token(row: object, col: object, grid: tuple[int, int]) -> tuple[int, int]:
    """(row, col) as ints on the token ``grid`` = (h, w), or a ValueError saying what was wrong.

    Integers only (an integral float such as 3.0 from a JSON client is accepted; bools, strings and
    fractions are not)."""
    values = []
    for name, value, size in (("row", row, grid[0]), ("col", col, grid[1])):
        integral = isinstance(value, numbers.Integral) or (
            isinstance(value, numbers.Real) and np.isfinite(float(value)) and float(value).is_integer())
        if isinstance(value, bool) or not integral or not 0 <= int(value) < size:
            raise ValueError(f"{name} must be an integer in [0, {size - 1}] (this image's token grid is "
                             f"{grid[0]}×{grid[1]}), got {value!r}")
        values.append(int(value))
    return values[0], values[1]


@dataclass
class ClassScore:
    """A class by id and name, with its softmax probability where one was read."""

    class_id: int
    name: str
    probability: float | None = None

    def to_dict(self) -> dict:
        return {"class": self.class_id, "name": self.name,
                **({} if self.probability is None else {"probability": self.probability})}


@dataclass
class AuxHeadReport:
    """One decision layer's view of the token: its confidence q_l (Eq. 3), whether the token still ran when
    the decision was taken, whether it stopped there, and the head's top-3 classes."""

    layer: int
    confidence: float
    running: bool
    stops_here: bool
    top3: list[ClassScore]

    def to_dict(self) -> dict:
        return {"layer": self.layer, "confidence": self.confidence, "running": self.running,
                "stops_here": self.stops_here, "top3": [c.to_dict() for c in self.top3]}


DECODER_READ_AT = "softmax of the decoder's logits at the token's centre pixel"


@dataclass
class TokenReport:
    """Everything one forward did to one token (``token_report``); ``to_dict`` is the /inspect_token JSON."""

    row: int
    col: int
    grid: list[int]
    xi: float
    working_size: list[int]
    token_box: list[int]  # [top, left, bottom, right) in working pixels
    centre: list[int]  # [y, x]
    decision_layers: list[int]
    aux_heads: list[AuxHeadReport]
    decoder_top3: list[ClassScore]
    halting_group: int  # 1..D+1, D+1 = ran all blocks
    ran_all_blocks: bool
    blocks_run: int | None
    dovit_class: ClassScore
    dense_class: ClassScore | None
    agrees_with_dense: bool | None

    @property
    def confidences(self) -> list[float]:
        return [head.confidence for head in self.aux_heads]

    def to_dict(self) -> dict:
        return {
            "row": self.row, "col": self.col, "grid": self.grid, "xi": self.xi,
            "working_size": self.working_size,
            "token_box": self.token_box, "centre": self.centre, "decision_layers": self.decision_layers,
            "confidences": self.confidences, "aux_heads": [head.to_dict() for head in self.aux_heads],
            "decoder": {"top3": [c.to_dict() for c in self.decoder_top3], "read_at": DECODER_READ_AT},
            "halting_group": self.halting_group, "ran_all_blocks": self.ran_all_blocks,
            "blocks_run": self.blocks_run,
            "dovit_class": self.dovit_class.to_dict(),
            "dense_class": None if self.dense_class is None else self.dense_class.to_dict(),
            "agrees_with_dense": self.agrees_with_dense,
        }


def _classes(ids: np.ndarray, probabilities: np.ndarray, names: list[str]) -> list[ClassScore]:
    return [ClassScore(int(i), class_name(names, int(i)), float(p)) for i, p in zip(ids, probabilities,
                                                                               strict=False)]


def token_report(prediction: Prediction, row: int, col: int, class_names: list[str],
                 patch: int) -> TokenReport:
    """Everything one forward did to token (row, col) (``TokenReport.to_dict``: the /inspect_token answer).

    prediction: from ``Predictor.predict`` (its masks at any resolution; read at the token's centre).
    Fields (and JSON keys): row, col, grid [h, w], xi, working_size [H, W], token_box [top, left, bottom,
    right) in working pixels, centre [y, x], decision_layers, confidences (q_l at each decision layer, in
    decision order, Eq. 3), aux_heads (per decision: layer, confidence, running = the token still ran when the
    decision was taken, stops_here, top3 [{class, name, probability}]), decoder {top3, read_at}, halting_group
    (1..D+1, D+1 = ran all blocks), ran_all_blocks, blocks_run, dense_class / dovit_class {class, name},
    agrees_with_dense.
    """
    trace = prediction.trace
    row, col = check_token(row, col, trace.grid)
    height, width = prediction.working_size
    rows, cols = token_centres(trace.grid, (height, width), patch)
    centre_y, centre_x = int(rows[row]), int(cols[col])
    num_groups = len(trace.groups)
    depth = int(trace.halting_depth[row, col])
    aux_heads, running = [], True
    for decision in trace.decisions:
        stops_here = bool(decision.stopped_here[row, col])
        top3 = ([] if decision.top_classes is None else
                _classes(decision.top_classes[row, col], decision.top_probabilities[row, col], class_names))
        aux_heads.append(AuxHeadReport(int(decision.layer), float(decision.confidence[row, col]), running,
                                       stops_here, top3))
        running = running and not stops_here
    decoder_top3 = ([] if trace.decoder_top_classes is None else _classes(
        trace.decoder_top_classes[row, col], trace.decoder_top_probabilities[row, col], class_names))
    dovit_class = _class_at(prediction.mask, centre_y, centre_x, (height, width))
    dense_class = None if prediction.dense_mask is None else _class_at(
        prediction.dense_mask, centre_y, centre_x, (height, width))
    last_block = trace.groups[depth - 1].blocks[1] if trace.groups else None
    return TokenReport(
        row=row, col=col, grid=[int(v) for v in trace.grid], xi=float(trace.xi), working_size=[int(height),
                                                                                               int(width)],
        token_box=[row * patch, col * patch, min((row + 1) * patch, height), min((col + 1) * patch, width)],
        centre=[centre_y, centre_x], decision_layers=[int(d.layer) for d in trace.decisions],
        aux_heads=aux_heads,
        decoder_top3=decoder_top3, halting_group=depth, ran_all_blocks=depth == num_groups,
        blocks_run=last_block,
        dovit_class=ClassScore(dovit_class, class_name(class_names, dovit_class)),
        dense_class=(None if dense_class is None
                     else ClassScore(dense_class, class_name(class_names, dense_class))),
        agrees_with_dense=None if dense_class is None else dovit_class == dense_class,
    )


def _class_at(mask: np.ndarray, y: int, x: int, working_size: tuple[int, int]) -> int:
    """The class of ``mask`` (any resolution) at working pixel (y, x)."""
    scale_y, scale_x = mask.shape[0] / working_size[0], mask.shape[1] / working_size[1]
    return int(mask[min(int((y + 0.5) * scale_y), mask.shape[0] - 1), min(int((x + 0.5) * scale_x),
                                                                          mask.shape[1] - 1)])


def _top3_text(top3: list[ClassScore]) -> str:
    return ", ".join(f"{html.escape(c.name)} {c.probability:.2f}" for c in top3) or "—"


def panel_markdown(report: TokenReport, extra_lines: list[str] | None = None) -> str:
    """The side panel's text for a ``token_report``: where the token is, when it stopped, a table of its
    confidence and top-3 classes at each aux head and at the decoder, and its DoViT and dense classes."""
    top, left, bottom, right = report.token_box
    xi, depth = report.xi, report.halting_group
    if report.ran_all_blocks:
        fate = f"ran **all {report.blocks_run} blocks** (group B{depth}, never stopped)"
    else:
        fate = f"stopped after group **B{depth}** (after block {report.blocks_run}), when q > ξ"
    lines = [
        f"### Token row {report.row}, col {report.col}",
        f"of the {report.grid[0]}×{report.grid[1]} grid · pixels y {top}–{bottom - 1}, "
        f"x {left}–{right - 1} "
        f"of {report.working_size[0]}×{report.working_size[1]} · ξ = {xi:.4g}",
        "",
        f"It {fate}.",
        "",
        "| after block | q | | top 3 classes |",
        "|---|---|---|---|",
    ]
    for head in report.aux_heads:
        if not head.running:
            verdict = "(already stopped)"
        elif head.stops_here:
            verdict = "**> ξ: stops**"
        else:
            verdict = "≤ ξ: goes on"
        lines.append(f"| {head.layer} | {head.confidence:.3f} | {verdict} | {_top3_text(head.top3)} |")
    lines.append(f"| decoder | | | {_top3_text(report.decoder_top3)} |")
    dense = report.dense_class
    agree = "" if dense is None else (" — the same" if report.agrees_with_dense else " — **they differ**")
    lines += [
        "",
        f"DoViT class: **{html.escape(report.dovit_class.name)}** · dense (ξ = 1): "
        f"**{html.escape(dense.name) if dense else '—'}**{agree}",
        "",
        "<sub>Classes at the token's centre pixel; aux heads run on every token, so a stopped token's later "
        "confidences are shown but decide nothing. Arrow keys move to the neighbouring token.</sub>",
    ]
    return "\n".join(lines + (extra_lines or []))
