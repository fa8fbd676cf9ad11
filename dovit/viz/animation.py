"""The token pass of one image, animated: frames of the forward group by group, and their GIF and MP4 writers.

An opening frame shows every token lit (the photo with a thin token grid). Then, per group B_g, the tokens
whose halting depth is g (stopped by the decision after B_g, Eq. 5; for the last group, those that ran every
block) fade to their final class colour while the kept ones stay lit, under a banner with the group's
number, the share of tokens it ran on and the FLOPs spent so far. A closing frame shows the final mask.
Frames are drawn at the size of the image given, its tokens cut at the working size the model saw
(``drawing``: at the working size itself, one token is one patch x patch square).
"""
from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..core.predictor import Predictor
from ..core.trace import Trace
from . import drawing
from .video import FrameWriter

MIN_WIDTH = 480  # frames narrower than this are enlarged by a whole factor, so the banner stays legible
COLOURED_OPACITY = 0.75  # a stopped token: its final class colour over a trace of the photo
ANIMATION_SUFFIXES = (".gif", ".mp4")


@dataclass
class AnimationTiming:
    """How long frames show: fades at ``fps`` frames per second over ``fade_frames`` frames; the last frame
    of each step held ``hold_ms``, the final mask ``final_ms``."""

    fps: float = 12.0
    fade_frames: int = 4
    hold_ms: int = 700
    final_ms: int = 2500

    def __post_init__(self) -> None:
        if not self.fps > 0 or self.fade_frames < 1 or self.hold_ms < 0 or self.final_ms < 0:
            raise ValueError(f"fps must be > 0 and fade_frames >= 1 (durations >= 0), got {self}")

    @property
    def frame_ms(self) -> int:
        return max(1, round(1000 / self.fps))


@dataclass
class PassFrame:
    """One frame: (H + banner, W, 3) uint8 RGB, how long it shows, and the banner's two lines."""

    image: np.ndarray
    duration_ms: int
    banner: tuple[str, str]
    step: str  # "start", "B1".."B{D+1}" or "mask"


def cumulative_flops(trace: Trace) -> list[int]:
    """FLOPs spent once each group B_g has run (and the aux head deciding after it), g = 1..D+1: the patch
    embedding, the groups so far and their aux heads. The decoder then brings the last to ``trace.flops``."""
    embedding = trace.backbone_flops - sum(g.flops for g in trace.groups)
    aux_head = trace.aux_head_flops // max(1, len(trace.decisions))
    spent, total = [], embedding
    for index, group in enumerate(trace.groups):
        total += group.flops + (aux_head if index < len(trace.decisions) else 0)
        spent.append(total)
    return spent


def pass_frames(image: np.ndarray, trace: Trace, mask: np.ndarray, colors: np.ndarray, patch: int,
                timing: AnimationTiming | None = None,
                working_size: tuple[int, int] | None = None) -> list[PassFrame]:
    """The frames of ``trace``'s token pass over ``image``: an opening frame, at least one per group, and the
    final mask; at least len(trace.groups) + 2 frames.

    image (H, W, 3) uint8 RGB, the photo the trace's forward saw at ``working_size`` (None: at the image's
    own size); mask (H, W) int class ids of that forward at the image's size; colors (C, 3) uint8 class
    colours (``drawing.class_palette``); patch: working pixels per token side.
    """
    timing = timing or AnimationTiming()
    size = image.shape[:2]
    lit = drawing.draw_patch_grid(image, patch, working_size=working_size)
    # a stopped token: its class colour over the photo in dimmed grey, so it reads apart from the lit ones
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) // 2
    coloured = drawing.draw_patch_grid(
        drawing.blend(grey, drawing.colorize_mask(mask, colors), COLOURED_OPACITY), patch, 0.15, working_size)
    depth_px = drawing.upsample_tokens(trace.halting_depth, patch, size, working_size)
    dense_gflops, spent = trace.dense_flops / 1e9, cumulative_flops(trace)
    opening = (f"start | {trace.num_tokens} tokens | xi {trace.xi:.4g}",
               f"every token enters B1 | 0.00 of {dense_gflops:.2f} dense GFLOPs")
    steps = [(lit, opening, timing.hold_ms, "start")]
    for index, group in enumerate(trace.groups):
        number = index + 1
        first, last = group.blocks
        banner = (f"B{number} of {len(trace.groups)} | blocks {first}-{last} | xi {trace.xi:.4g}",
                  f"kept {group.tokens}/{trace.num_tokens} ({100 * group.tokens / trace.num_tokens:.0f}%) | "
                  f"{spent[index] / 1e9:.2f} of {dense_gflops:.2f} dense GFLOPs so far")
        before, stopping = depth_px < number, depth_px == number
        fades = timing.fade_frames if stopping.any() else 1
        for fade in range(1, fades + 1):
            weight = np.where(before, 1.0, np.where(stopping, fade / fades, 0.0))[..., None]
            picture = (lit * (1.0 - weight) + coloured * weight).round().astype(np.uint8)
            duration_ms = timing.hold_ms if fade == fades else timing.frame_ms
            steps.append((picture, banner, duration_ms, f"B{number}"))
    steps.append((coloured, (f"final mask | xi {trace.xi:.4g}",
                             f"{trace.flops / 1e9:.2f} GFLOPs with the decoder | dense {dense_gflops:.2f} | "
                             f"{100 * trace.flops_saved:.0f}% saved"), timing.final_ms, "mask"))
    return _with_banners(steps)


def render_pass(predictor: Predictor, image: np.ndarray, xi: float | None = None,
                palette: str = "dataset", timing: AnimationTiming | None = None,
                working_size: tuple[int, int] | None = None) -> list[PassFrame]:
    """Run ``predictor`` at ``xi`` (None: the checkpoint's default) on ``image`` (H, W, 3) uint8 RGB seen at
    ``working_size`` (None: the image's own size), and return the frames of its token pass at the image's
    size, masks in ``palette`` (``drawing.PALETTES``). Reuses the Predictor's cached prefix when the image
    is already set at that working size."""
    working = tuple(working_size or image.shape[:2])
    predictor.set_image(image, working)
    prediction = predictor.predict(xi=xi)
    colors = drawing.class_palette(predictor.config.class_colors, palette)
    return pass_frames(image, prediction.trace, prediction.mask, colors, predictor.model.patch_size,
                       timing, working)


def _with_banners(steps: list[tuple[np.ndarray, tuple[str, str], int, str]]) -> list[PassFrame]:
    """(picture, banner, duration, step) -> frames, pictures enlarged to ``MIN_WIDTH`` by a whole factor
    (tokens stay squares) under banners in one font size, so that every frame has one size."""
    factor = -(-MIN_WIDTH // steps[0][0].shape[1])
    width = steps[0][0].shape[1] * factor
    scale = banner_scale(width, [line for _, banner, _, _ in steps for line in banner])
    frames = []
    for picture, banner, duration_ms, step in steps:
        if factor > 1:
            picture = cv2.resize(picture, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
        frames.append(PassFrame(np.concatenate([banner_strip(width, banner, scale), picture]),
                                int(duration_ms), banner, step))
    return frames


def banner_scale(width: int, lines: list[str], largest: float = 0.8) -> float:
    """The Hershey font scale at which the widest of ``lines`` fits ``width`` pixels (at most ``largest``)."""
    widest = max(cv2.getTextSize(line, drawing.FONT, largest, 2)[0][0] for line in lines)
    return max(0.3, min(largest, largest * (width - 12) / max(widest, 1)))


def banner_strip(width: int, lines: tuple[str, ...], scale: float) -> np.ndarray:
    """(rows, width, 3) uint8: ``lines`` in white on black at font ``scale`` (Hershey fonts: ASCII only);
    the rows depend only on the scale and the number of lines."""
    thickness = 2 if scale >= 0.6 else 1
    line_height = cv2.getTextSize("Bg", drawing.FONT, scale, thickness)[0][1]
    pitch = int(line_height * 1.9)
    strip = np.zeros((pitch * len(lines) + line_height // 2, width, 3), np.uint8)
    for index, line in enumerate(lines):
        cv2.putText(strip, line, (6, pitch * index + line_height + line_height // 2 + 2), drawing.FONT, scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)
    return strip


def gif_bytes(frames: list[PassFrame]) -> bytes:
    """The frames as an animated GIF (Pillow) that loops forever, each shown its ``duration_ms``."""
    if not frames:
        raise ValueError("no frames to write")
    # one palette for every frame, without dithering: the frames differ only where tokens fade, so the
    # GIF stores small changed rectangles instead of re-dithered photos (several times smaller)
    palette = Image.fromarray(np.concatenate([frames[0].image, frames[-1].image])).quantize(
        256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pictures = [Image.fromarray(frame.image).quantize(palette=palette, dither=Image.Dither.NONE)
                for frame in frames]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], loop=0,
                     duration=[frame.duration_ms for frame in frames], disposal=1, optimize=False)
    return buffer.getvalue()


def write_mp4(frames: list[PassFrame], path: str | Path, fps: float = 12.0) -> int:
    """The frames as an MP4 (``video.FrameWriter``, mp4v) at ``fps``: each repeated to last its duration
    (at least once). Returns the video's frame count."""
    if not frames:
        raise ValueError("no frames to write")
    with FrameWriter(path, fps) as writer:
        for frame in frames:
            for _ in range(max(1, round(frame.duration_ms * fps / 1000))):
                writer.write(frame.image)
    return writer.count


def mp4_bytes(frames: list[PassFrame], fps: float = 12.0) -> bytes:
    """The frames as MP4 file contents (``write_mp4`` through a temporary file: OpenCV writes only files)."""
    with tempfile.TemporaryDirectory(prefix="dovit-pass-") as folder:
        path = Path(folder) / "pass.mp4"
        write_mp4(frames, path, fps)
        return path.read_bytes()


def write_animation(frames: list[PassFrame], path: str | Path, fps: float = 12.0) -> Path:
    """Write ``frames`` to ``path``: a GIF or an MP4 by its suffix (``ANIMATION_SUFFIXES``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ANIMATION_SUFFIXES:
        raise ValueError(f"cannot write {path.name}: the animation is a .gif or an .mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        path.write_bytes(gif_bytes(frames))
    else:
        write_mp4(frames, path, fps)
    return path
