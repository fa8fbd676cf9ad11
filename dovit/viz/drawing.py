"""Pure drawing functions: one forward's ``Trace`` and masks -> (H, W, 3) uint8 RGB images or HTML. The
studio's views, the video overlays and the report's figures take their colours and token-pass marks here.

Token maps are drawn over an image of any size: ``working_size`` names the (height, width) the model saw
(padded at the bottom/right to whole ``patch`` x ``patch`` tokens), and each pixel takes the token that holds
its centre at that size (``dovit.core.token_grid.token_index_map``). Left out, it is the image's own size:
each token exactly one patch x patch square. Grid lines and hatching thicken with the scale from the working
size, so they stay visible when a large view is shown smaller. Colour maps come from OpenCV (no matplotlib).
"""
from __future__ import annotations

import functools
import html
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..core.token_grid import expand_tokens, token_index_map, token_rows_and_columns, token_starts

if TYPE_CHECKING:
    from ..core.trace import Trace


def _lut(colormap: int) -> np.ndarray:
    """(256, 3) uint8 RGB lookup table of an OpenCV colour map."""
    return cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], colormap)[:, 0, ::-1].copy()


CONFIDENCE_LUT = _lut(cv2.COLORMAP_VIRIDIS)
DEPTH_LUT = _lut(cv2.COLORMAP_PLASMA)
GRID_COLOR = np.array([255, 255, 255], np.float32)
STOPPED_HERE_COLOR = np.array([255, 140, 0], np.float32)  # orange: stopped by this decision
DISAGREE_COLOR = np.array([255, 0, 255], np.uint8)
HATCH_SPACING = 6  # pixels between hatching lines at the working size
# A token that skips a group: its pixel values v -> 0.3 v + 20 (dimmed); one the decision just before it
# stopped: 0.45 v + 0.55 orange, per channel. As (256, 1, 3) tables for cv2.LUT.
SHADED_LUT = np.repeat((np.arange(256, dtype=np.float32) * 0.3 + 20).astype(np.uint8)[:, None, None], 3,
                       axis=2)
STOPPED_HERE_LUT = (np.arange(256, dtype=np.float64)[:, None] * 0.45 + STOPPED_HERE_COLOR * 0.55).astype(
    np.float32).astype(np.uint8)[:, None, :]
FONT = cv2.FONT_HERSHEY_SIMPLEX
# Class colours that stay apart under the common colour-vision deficiencies: Paul Tol's "muted" scheme (9
# colours and pale grey), then Okabe and Ito's (without black) for classes 11-17; more classes cycle.
COLOR_BLIND_SAFE = [(204, 102, 119), (51, 34, 136), (221, 204, 119), (17, 119, 51), (136, 204, 238), (136, 34,
                                                                                                      85),
                    (68, 170, 153), (153, 153, 51), (170, 68, 153), (221, 221, 221),
                    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
                    (204, 121, 167)]
PALETTES = ("dataset", "colour-blind safe")


def class_palette(dataset_colors, scheme: str = "dataset") -> np.ndarray:
    """(C, 3) uint8 RGB class colours: the checkpoint's own (``dataset``) or ``COLOR_BLIND_SAFE``."""
    colors = np.asarray(dataset_colors, np.uint8).reshape(-1, 3)
    if scheme == "dataset":
        return colors
    if scheme != "colour-blind safe":
        raise ValueError(f"palette must be one of {', '.join(PALETTES)}, got {scheme!r}")
    safe = np.asarray(COLOR_BLIND_SAFE, np.uint8)
    return safe[np.arange(len(colors)) % len(safe)]


@functools.lru_cache(maxsize=16)
def hatch(size: tuple[int, int], direction: int = 1, spacing: int = HATCH_SPACING,
          width: int = 1) -> np.ndarray:
    """(H, W) bool diagonal lines, ``width`` pixels wide every ``spacing`` pixels; direction 1 = '\\',
    -1 = '/'. Read-only: one array per size is kept, as every view of an image hatches the same pixels."""
    rows, cols = np.indices(size)
    lines = (cols + direction * rows) % spacing < width
    lines.setflags(write=False)
    return lines


def line_width(size: tuple[int, int], working_size: tuple[int, int] | None) -> int:
    """Pixels per grid or hatching line in an image of ``size`` drawn from ``working_size`` (None: the
    same): one per working pixel, rounded, at least 1."""
    if working_size is None:
        return 1
    scale = (size[0] / working_size[0] + size[1] / working_size[1]) / 2
    return max(1, round(scale))


def upsample_tokens(token_map: np.ndarray, patch: int, size: tuple[int, int],
                    working_size: tuple[int, int] | None = None) -> np.ndarray:
    """(h, w, ...) per-token values -> (H, W, ...) for an image of ``size`` = (H, W) whose tokens the model
    cut at ``working_size`` (None: ``size`` itself, each token one patch x patch square, cropped to size):
    each pixel takes the value of the token that holds its centre (``token_index_map``)."""
    token_map = np.asarray(token_map)
    index = token_index_map(size, working_size or size, token_map.shape[:2], patch)
    return expand_tokens(token_map, index)


def draw_patch_grid(image: np.ndarray, patch: int, strength: float = 0.35,
                    working_size: tuple[int, int] | None = None) -> np.ndarray:
    """Blend the token grid's lines into a copy of (H, W, 3) uint8: where a new token starts, a line
    ``line_width`` pixels wide (every ``patch`` pixels, one wide, when ``working_size`` is None: the image's
    own size)."""
    size = image.shape[:2]
    working = working_size or size
    grid = (-(-working[0] // patch), -(-working[1] // patch))
    width = line_width(size, working_size)
    row_lines, column_lines = (_thicken(token_starts(tokens), width, length) for tokens, length in
                               zip(token_rows_and_columns(size, working, grid, patch), size, strict=True))
    out = image.astype(np.float32)
    out[row_lines] = out[row_lines] * (1 - strength) + GRID_COLOR * strength
    out[:, column_lines] = out[:, column_lines] * (1 - strength) + GRID_COLOR * strength
    return out.astype(np.uint8)


def _thicken(starts: np.ndarray, width: int, length: int) -> np.ndarray:
    """Line positions ``starts`` each widened to ``width`` pixels (down or right), kept inside ``length``."""
    if width == 1:
        return starts
    lines = np.unique((starts[:, None] + np.arange(width)[None, :]).ravel())
    return lines[lines < length]


def token_overlay(image: np.ndarray, kept: np.ndarray, stopped_here: np.ndarray | None, patch: int,
                  working_size: tuple[int, int] | None = None) -> np.ndarray:
    """The tokens one group runs on, over the image.

    image (H, W, 3) uint8 (tokens cut at ``working_size``, None: its own size); kept (h, w) bool = tokens
    this group processes (clear); stopped_here (h, w) bool = tokens the decision before this group stopped
    (orange, '/' hatching); other tokens stopped earlier (dark, '\\' hatching). The hatching tells them
    apart without colour or shade.
    """
    size = image.shape[:2]
    here_px = None if stopped_here is None else upsample_tokens(stopped_here, patch, size, working_size)
    marked = mark_token_pass(image, upsample_tokens(kept, patch, size, working_size), here_px,
                             line_width(size, working_size))
    return draw_patch_grid(marked, patch, working_size=working_size)


def mark_token_pass(image: np.ndarray, kept_px: np.ndarray, here_px: np.ndarray | None,
                    width: int = 1) -> np.ndarray:
    """(H, W, 3) uint8 with the pixels of tokens that skip a group shaded and hatched '\\', and those the
    decision just before it stopped (``here_px``) orange and hatched '/'; kept_px, here_px (H, W) bool.
    Hatching lines ``width`` pixels wide, ``width`` x ``HATCH_SPACING`` apart."""
    # Per-value tables (cv2.LUT) and whole-array selects: a boolean gather and scatter of a large image's
    # pixels cost several times more, and the tables hold exactly what the float formulas gave.
    size = tuple(image.shape[:2])
    image = np.ascontiguousarray(image)
    # shaded: these tokens skip the group
    out = cv2.copyTo(cv2.LUT(image, SHADED_LUT), np.ascontiguousarray(~kept_px).view(np.uint8), image.copy())
    out[~kept_px & hatch(size, 1, HATCH_SPACING * width, width)] = 150
    if here_px is not None:
        out = cv2.copyTo(cv2.LUT(image, STOPPED_HERE_LUT), np.ascontiguousarray(here_px).view(np.uint8), out)
        out[here_px & hatch(size, -1, HATCH_SPACING * width, width)] = 255
    return out


def group_overlays(image: np.ndarray, trace: Trace, patch: int,
                   working_size: tuple[int, int] | None = None) -> list[tuple[np.ndarray, str]]:
    """One (overlay, caption) per group B_1..B_{D+1} over ``image`` (tokens cut at ``working_size``, None:
    the image's own size): kept count and share of the N tokens."""
    views = []
    for index, group in enumerate(trace.groups):
        if index == 0:
            kept, here = np.ones(trace.grid, bool), None  # B_1 always runs dense
        else:
            decision = trace.decisions[index - 1]
            kept, here = decision.keep_mask, decision.stopped_here
        share = 100.0 * group.tokens / trace.num_tokens
        first, last = group.blocks
        caption = (
            f"B{index + 1} · blocks {first}–{last} · {group.tokens}/{trace.num_tokens} kept ({share:.0f}%)"
        )
        if here is not None:
            caption += f" · {int(here.sum())} stopped here"
        views.append((token_overlay(image, kept, here, patch, working_size), caption))
    return views


def color_bar(height: int, marks: dict[str, float], lut: np.ndarray = CONFIDENCE_LUT,
              width: int = 64) -> np.ndarray:
    """(height, width, 3) vertical colour bar for values 1 (top) .. 0 (bottom), with labelled ticks.

    marks: label -> value in [0, 1]; each is drawn as a white line with its label.
    """
    bar = np.full((height, width, 3), 255, np.uint8)
    values = np.linspace(1.0, 0.0, height)
    bar[:, :16] = lut[np.round(values * 255).astype(int)][:, None, :]
    xi_rows = [round((1.0 - v) * (height - 1)) for label, v in marks.items() if label.startswith("ξ")]
    for label, value in marks.items():
        y = int(round((1.0 - value) * (height - 1)))
        if not label.startswith("ξ") and any(abs(y - row) < 12 for row in xi_rows):
            continue  # the ξ label wins where two labels would overlap
        cv2.line(bar, (0, y), (19, y), (255, 255, 255) if label.startswith("ξ") else (0, 0, 0), 2)
        text = label.replace("ξ", "xi")  # Hershey fonts have no Greek letters
        y_text = min(max(y + 4, 10), height - 3)
        cv2.putText(bar, text, (21, y_text), FONT, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def confidence_heatmap(confidence: np.ndarray, xi: float, image: np.ndarray, patch: int, context: float = 0.2,
                       working_size: tuple[int, int] | None = None) -> np.ndarray:
    """Aux-head confidence q_l (Eq. 3) as a colour map over the image, the ξ contour, and a colour bar.

    confidence (h, w) float in [0, 1]; image (H, W, 3) uint8 (tokens cut at ``working_size``, None: its own
    size) -> (H, W + 64, 3) uint8. Inside the white contour q_l > ξ: those tokens would stop here (if not
    stopped already).
    """
    size = image.shape[:2]
    levels = np.round(np.clip(confidence, 0.0, 1.0) * 255).astype(np.uint8)
    level_px = upsample_tokens(levels, patch, size, working_size)
    colours = CONFIDENCE_LUT.take(level_px, axis=0).astype(np.float32)
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB).astype(np.float32)
    heat = (colours * (1 - context) + grey * context).astype(np.uint8)
    above = upsample_tokens((confidence > xi).astype(np.uint8), patch, size, working_size)
    contours, _ = cv2.findContours(np.ascontiguousarray(above), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(heat, contours, -1, (255, 255, 255), 2 * line_width(size, working_size))
    marks = {"1.0": 1.0, "0.5": 0.5, "0.0": 0.0, f"ξ {xi:.3f}": float(np.clip(xi, 0, 1))}
    return np.concatenate([heat, color_bar(size[0], marks)], axis=1)


def decision_heatmaps(image: np.ndarray, trace: Trace, patch: int,
                      working_size: tuple[int, int] | None = None) -> list[tuple[np.ndarray, str]]:
    """One (heatmap, caption) per decision layer l over ``image`` (tokens cut at ``working_size``, None: the
    image's own size): q_l range and how many tokens exceed ξ."""
    views = []
    for decision in trace.decisions:
        above = int((decision.confidence > trace.xi).sum())
        caption = (
            f"after block {decision.layer} · q from {decision.confidence.min():.2f} to "
            f"{decision.confidence.max():.2f} · {above}/{trace.num_tokens} above ξ"
        )
        views.append((confidence_heatmap(decision.confidence, trace.xi, image, patch,
                                         working_size=working_size), caption))
    return views


def colorize_mask(mask: np.ndarray, colors: np.ndarray | list) -> np.ndarray:
    """(H, W) int class ids -> (H, W, 3) uint8 RGB; ids outside the palette are black."""
    palette = np.zeros((len(colors) + 1, 3), np.uint8)
    palette[:-1] = np.asarray(colors, np.uint8).reshape(-1, 3)
    ids = np.where((mask >= 0) & (mask < len(colors)), mask, len(colors))
    return palette.take(ids, axis=0)  # as palette[ids], about 3x faster on a large mask


def blend(image: np.ndarray, overlay: np.ndarray, opacity: float) -> np.ndarray:
    """(1 - opacity) * image + opacity * overlay, both (H, W, 3) uint8 of the same size."""
    opacity = float(np.clip(opacity, 0.0, 1.0))
    return cv2.addWeighted(overlay, opacity, image, 1.0 - opacity, 0.0)


def halting_map(depth: np.ndarray, num_groups: int, image: np.ndarray, patch: int,
                opacity: float = 0.65, working_size: tuple[int, int] | None = None) -> np.ndarray:
    """Which group each token stopped after, over the image.

    depth (h, w) int in 1..num_groups (num_groups = ran every block); image (H, W, 3) uint8 (tokens cut at
    ``working_size``, None: its own size) -> (H, W, 3) uint8. Colours from ``depth_colors``: dark = stopped
    after B_1 (easy), bright = went to the last block (hard).
    """
    colours = depth_colors(num_groups)
    index = np.clip(depth, 1, num_groups) - 1
    coloured = upsample_tokens(colours[index], patch, image.shape[:2], working_size)
    return draw_patch_grid(blend(image, np.ascontiguousarray(coloured), opacity), patch, 0.15, working_size)


def depth_colors(num_groups: int) -> np.ndarray:
    """(num_groups, 3) uint8 RGB, one colour per halting depth 1..num_groups."""
    return DEPTH_LUT[np.linspace(30, 240, num_groups).round().astype(int)]


def disagreement_map(mask: np.ndarray, dense_mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Pixels where the DoViT mask differs from the dense one in magenta over a dimmed grey image."""
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    out = (grey * 0.5).astype(np.uint8)
    out[mask != dense_mask] = DISAGREE_COLOR
    return out


def legend_html(names: list[str], colors: list, mask: np.ndarray | None = None) -> str:
    """An HTML legend of class swatches; with a mask, each class's pixel share and absent ones faded."""
    shares = None
    if mask is not None:
        shares = np.bincount(mask.ravel().clip(0, len(names)),
                             minlength=len(names) + 1)[: len(names)] / mask.size
    items = []
    for index, (name, rgb) in enumerate(zip(names, colors, strict=False)):
        swatch = f"background: rgb({int(rgb[0])}, {int(rgb[1])}, {int(rgb[2])})"
        share = "" if shares is None else f" {100 * shares[index]:.1f}%"
        faded = shares is not None and shares[index] == 0
        items.append(
            f'<span class="legend-item" style="opacity: {0.4 if faded else 1}">'
            f'<span class="legend-swatch" style="{swatch}"></span>{html.escape(str(name))}{share}</span>'
        )
    return '<div class="dovit-legend">' + "".join(items) + "</div>"


def depth_labels(num_groups: int) -> list[str]:
    """What each halting depth 1..num_groups means: "stopped after B_g" ... "ran all blocks"."""
    return [f"stopped after B{g}" for g in range(1, num_groups)] + ["ran all blocks"]


def depth_legend_html(num_groups: int) -> str:
    """HTML legend of the halting-depth colours (``depth_labels``)."""
    return legend_html(depth_labels(num_groups), depth_colors(num_groups).tolist())
