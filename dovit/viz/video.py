"""Frames in and out, and DoViT over a video: per-frame compute records and annotated frames. Notes and
measurements: docs/library_notes.md.
"""
from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..core.predictor import Predictor, check_xi
from ..core.preprocess import class_mask, resize_image
from ..core.stopwatch import Stopwatch
from ..core.token_grid import expand_tokens, token_index_map
from ..core.trace import Trace, build_trace
from ..data.datasets import IMAGE_SUFFIXES, read_rgb
from . import drawing

VIDEO_SUFFIXES = (".mp4", ".m4v", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")
OVERLAYS = ("mask", "tokens", "halting", "disagreement", "none")
DEFAULT_FPS = 25.0  # when a container does not say (image folders, some WebM files)
# The codec OpenCV writes for each container. This OpenCV (opencv-python wheels) has no H.264 encoder, so an
# MP4 is MPEG-4 Part 2 ("mp4v"): players and editors open it, Chrome and Firefox do not; a browser plays
# the WebM (VP8, about 15x slower to encode than mp4v, still faster than a ViT forward).
FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".webm": "VP80", ".avi": "MJPG"}


def image_files(folder: str | Path) -> list[Path]:
    """The images (``IMAGE_SUFFIXES``) directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def count_frames(source: str | Path) -> int | None:
    """Frames in a folder (exact) or a video (the container's count, None when it does not say)."""
    if _existing(source).is_dir():
        return len(image_files(source))
    capture = _open_video(source)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return count if count > 0 else None


def frame_rate(source: str | Path) -> float:
    """Frames per second of a video (``DEFAULT_FPS`` for a folder or a container that does not say)."""
    if Path(source).is_dir():
        return DEFAULT_FPS
    capture = _open_video(source)
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS))
    finally:
        capture.release()
    return fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS


def iter_named_frames(source: str | Path, max_frames: int | None = None,
                      max_side: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, frame) one at a time: frame (H, W, 3) uint8 RGB, name the file stem of a folder's
    image or ``frame_000123`` (0-based) for a video's frame.

    source: a video file or a folder of images (sorted by file name). max_frames: stop after this many.
    max_side: frames whose longer side exceeds it are shrunk to it (aspect kept). Raises
    FileNotFoundError for a missing source, ValueError for one that holds no frames or cannot be decoded.
    """
    path = _existing(source)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    frames = _folder_frames(path) if path.is_dir() else _video_frames(path)
    for index, (name, frame) in enumerate(frames):
        if max_frames is not None and index >= max_frames:
            frames.close()  # releases the decoder now, not when the generator is collected
            return
        yield name, _cap_side(frame, max_side)


def iter_frames(source: str | Path, max_frames: int | None = None,
                max_side: int | None = None) -> Iterator[np.ndarray]:
    """Yield the frames of a video file or an image folder as (H, W, 3) uint8 RGB, streaming; see
    ``iter_named_frames`` for the arguments."""
    for _, frame in iter_named_frames(source, max_frames, max_side):
        yield frame


def _existing(source: str | Path) -> Path:
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"no video or image folder at {path}")
    return path


def _folder_frames(folder: Path) -> Iterator[tuple[str, np.ndarray]]:
    files = image_files(folder)
    if not files:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    for file in files:
        yield file.stem, read_rgb(file)


def _open_video(path: str | Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise ValueError(f"cannot decode {path} as a video (OpenCV); give a video file or a folder of images")
    return capture


def _video_frames(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    capture = _open_video(path)
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield f"frame_{index:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
        if index == 0:
            raise ValueError(f"{path} opened as a video but no frame could be decoded")
    finally:
        capture.release()


def _cap_side(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    if max_side is None or max(frame.shape[:2]) <= max_side:
        return frame
    scale = max_side / max(frame.shape[:2])
    return resize_image(frame, (max(1, round(frame.shape[0] * scale)), max(1, round(frame.shape[1] * scale))))


class FrameWriter:
    """Streams (H, W, 3) uint8 RGB frames, all of the first frame's size, into a video file whose codec
    follows its suffix (``FOURCC_BY_SUFFIX``: .mp4 mp4v, .webm VP8, .avi MJPG). A context manager; the
    file is complete once closed. Raises ValueError for a frame of another size, an unknown suffix or a
    writer OpenCV cannot open."""

    def __init__(self, path: str | Path, fps: float = DEFAULT_FPS) -> None:
        self.path, self.fps = Path(path), float(fps)
        if self.path.suffix.lower() not in FOURCC_BY_SUFFIX:
            raise ValueError(f"cannot write {self.path.name}: use one of {', '.join(FOURCC_BY_SUFFIX)}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self._size = frame.shape[:2]
            fourcc = FOURCC_BY_SUFFIX[self.path.suffix.lower()]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), self.fps,
                                           (self._size[1], self._size[0]))
            if not self._writer.isOpened():
                raise ValueError(f"OpenCV cannot write a {fourcc} video to {self.path}")
        if frame.shape[:2] != self._size:
            raise ValueError(f"frame {self.count} is {frame.shape[:2]}, the video is {self._size}: "
                             "all frames need one size")
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
        self.count += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float = DEFAULT_FPS) -> int:
    """Encode (H, W, 3) uint8 RGB frames, all of the first frame's size, to ``path`` (codec by suffix, see
    ``FrameWriter``; an .mp4 is mp4v). Streams: each frame is written as it arrives. Returns the number
    of frames written; raises ValueError for no frames, a frame of another size, or a writer OpenCV
    cannot open."""
    with FrameWriter(path, fps) as writer:
        for frame in frames:
            writer.write(frame)
    if writer.count == 0:
        raise ValueError(f"no frames to write to {path}")
    return writer.count


def read_frame(source: str | Path, index: int) -> np.ndarray:
    """Frame ``index`` (0-based) of a video file as (H, W, 3) uint8 RGB, by seeking (only that frame and
    the ones since the key frame before it are decoded). Raises IndexError past the end."""
    capture = _open_video(_existing(source))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok:
        raise IndexError(f"{Path(source).name} has no frame {index}")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


@dataclass
class FrameRecord:
    """One analysed frame. gflops / dense_gflops: this forward's and the dense forward's cost
    (``dovit.core.flops.FLOPS_CONVENTION``); kept_tokens: patch tokens run through each group B_1..B_{D+1};
    latency_ms: measured wall time of preprocessing and the forward (and the mask, when drawn) here."""

    frame: int
    gflops: float
    dense_gflops: float
    kept_tokens: list[int]
    latency_ms: float
    name: str = ""
    xi: float = 1.0


def write_records_json(records: Iterable[FrameRecord], path: str | Path) -> Path:
    """A JSON list of the records (one object per frame, fields as in ``FrameRecord``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in records], indent=1) + "\n")
    return path


def write_records_csv(records: Iterable[FrameRecord], path: str | Path) -> Path:
    """A CSV with one row per frame; ``kept_tokens`` becomes one column per group (kept_tokens_B1, ...)."""
    rows = [asdict(r) for r in records]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    groups = max((len(r["kept_tokens"]) for r in rows), default=0)
    kept_columns = [f"kept_tokens_B{g + 1}" for g in range(groups)]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frame", "name", "xi", "gflops", "dense_gflops", *kept_columns, "latency_ms"])
        for r in rows:
            kept = list(r["kept_tokens"]) + [""] * (groups - len(r["kept_tokens"]))
            writer.writerow([r["frame"], r["name"], r["xi"], f"{r['gflops']:.6f}", f"{r['dense_gflops']:.6f}",
                             *kept,
                             f"{r['latency_ms']:.3f}"])
    return path


# ------------------------------------------------------------------ overlays (pure)
def overlay_frame(frame: np.ndarray, overlay: str, trace: Trace, working_size: tuple[int, int], patch: int,
                  mask: np.ndarray | None = None, colors=None,
                  dense_mask: np.ndarray | None = None, opacity: float = 0.5) -> np.ndarray:
    """Draw one overlay over (H, W, 3) uint8 RGB ``frame``; returns a new (H, W, 3) uint8 image.

    overlay: "mask" (``mask`` (H, W) in the class ``colors``), "tokens" (the token pass per group, one
    tile per group B_1..B_{D+1}, see ``token_pass_mosaic``), "halting" (the group after which each token
    stopped, ``trace.halting_depth``), "disagreement" (magenta where ``mask`` differs from ``dense_mask``,
    over a dimmed grey frame) or "none". working_size, patch: how the model cut the frame into tokens.
    """
    if overlay == "none":
        return frame.copy()
    if overlay == "tokens":
        return token_pass_mosaic(frame, trace, working_size, patch)
    if overlay == "mask":
        colours = drawing.colorize_mask(mask, colors)
    elif overlay == "halting":
        index = token_index_map(frame.shape[:2], working_size, trace.grid, patch)
        colours = expand_tokens(drawing.depth_colors(len(trace.groups))[trace.halting_depth - 1], index)
    elif overlay == "disagreement":
        if dense_mask is None:
            raise ValueError("the disagreement overlay needs the dense mask")
        grey = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) // 2
        grey[mask != dense_mask] = drawing.DISAGREE_COLOR
        return grey
    else:
        raise ValueError(f"unknown overlay {overlay!r}; choose from {OVERLAYS}")
    return cv2.addWeighted(np.ascontiguousarray(colours, np.uint8), opacity, frame, 1.0 - opacity, 0.0)


def token_pass_mosaic(frame: np.ndarray, trace: Trace, working_size: tuple[int, int],
                      patch: int) -> np.ndarray:
    """The token pass of every group in one (H, W, 3) uint8 picture: a grid of tiles (2 x 2 for four
    groups), tile g the frame with the tokens group B_g runs on clear, as the studio draws them
    (``drawing.mark_token_pass``)."""
    height, width = frame.shape[:2]
    groups = len(trace.groups)
    columns = int(np.ceil(np.sqrt(groups)))
    rows = int(np.ceil(groups / columns))
    tile_size = (max(1, height // rows), max(1, width // columns))
    tile = resize_image(frame, tile_size)
    index = token_index_map(tile_size, working_size, trace.grid, patch)
    mosaic = np.zeros_like(frame)
    for group in range(groups):
        if group == 0:  # B_1 always runs dense
            kept, stopped_here = np.ones(trace.grid, bool), np.zeros(trace.grid, bool)
        else:
            decision = trace.decisions[group - 1]
            kept, stopped_here = decision.keep_mask, decision.stopped_here
        picture = drawing.mark_token_pass(tile, expand_tokens(kept, index), expand_tokens(stopped_here,
                                                                                          index))
        picture = caption_frame(picture, f"B{group + 1}", bottom=True)
        top, left = (group // columns) * tile_size[0], (group % columns) * tile_size[1]
        mosaic[top:top + tile_size[0], left:left + tile_size[1]] = picture
    return mosaic


def caption_frame(frame: np.ndarray, text: str, bottom: bool = False) -> np.ndarray:
    """Write ``text`` in the top-left (``bottom``: bottom-left) corner of (H, W, 3) uint8 ``frame``, in place
    when it is contiguous; returns it."""
    frame = np.ascontiguousarray(frame)
    scale = max(0.35, frame.shape[1] / 1400)
    thickness = max(1, round(scale * 2))
    (width, height), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = frame.shape[0] - height - base - 8 if bottom else 0
    cv2.rectangle(frame, (0, top), (width + 8, top + height + base + 8), (0, 0, 0), -1)
    cv2.putText(frame, text, (4, top + height + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                thickness,
                cv2.LINE_AA)
    return frame


# ------------------------------------------------------------------ analysis
@torch.inference_mode()
def analyze_video(predictor: Predictor, source: str | Path, xi: float | None = None, overlay: str = "mask",
                  max_frames: int | None = None, max_side: int | None = None, opacity: float = 0.5,
                  caption: bool = True, batch_size: int = 1) -> Iterator[tuple[FrameRecord, np.ndarray]]:
    """Run DoViT over a video file or an image folder, ``batch_size`` frames per forward.

    Yields (record, annotated frame (H, W, 3) uint8 RGB) per frame. xi: the threshold (None: the
    checkpoint's default). overlay: one of ``OVERLAYS``; "disagreement" also runs the dense forward of
    every frame (its time is not in ``latency_ms``). latency_ms: preprocessing and the forward, plus the
    class mask for the overlays that draw it ("mask", "disagreement"); with batch_size > 1, the batch's time
    divided by its frames. Every frame is processed at the first frame's working size (its own aspect at
    the checkpoint's token budget, ``Predictor.working_size``); the annotated frame keeps the decoded
    frame's size (after ``max_side``). No cache: unlike
    ``Predictor.predict`` the dense baseline is not computed unless the overlay needs it. batch_size > 1
    runs the batched token pass (every frame keeps its own tokens, as in ``Predictor.predict_batch``):
    more frames per second, at the price of holding that many decoded frames.
    """
    xi = predictor.default_xi if xi is None else check_xi(xi)
    if overlay not in OVERLAYS:
        raise ValueError(f"unknown overlay {overlay!r}; choose from {OVERLAYS}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    model, config = predictor.model, predictor.config
    colors = config.class_colors
    frames = enumerate(iter_named_frames(source, max_frames, max_side))
    working = None  # the first frame's; one size for the whole video, so frames batch and compare
    while chunk := list(itertools.islice(frames, batch_size)):
        start = Stopwatch()
        working = working or predictor.working_size(image_size=chunk[0][1][1].shape[:2])
        pixels = torch.cat([predictor.preprocess(frame, working) for _, (_, frame) in chunk])
        output = model(pixels, xi=xi)
        masks = [None] * len(chunk)
        if overlay in ("mask", "disagreement"):  # the argmax over classes costs a fifth of a forward on a CPU
            masks = [class_mask(output.logits[i : i + 1], frame.shape[:2])
                     for i, (_, (_, frame)) in enumerate(chunk)]
        latency_ms = start.ms() / len(chunk)
        dense_logits = model(pixels, xi=1.0).logits if overlay == "disagreement" else None
        for i, (index, (name, frame)) in enumerate(chunk):
            trace = build_trace(model, output, i)
            dense_mask = None if dense_logits is None else class_mask(dense_logits[i : i + 1],
                                                                      frame.shape[:2])
            record = FrameRecord(frame=index, gflops=trace.flops / 1e9, dense_gflops=trace.dense_flops / 1e9,
                                 kept_tokens=[g.tokens for g in trace.groups], latency_ms=latency_ms,
                                 name=name, xi=xi)
            annotated = overlay_frame(frame, overlay, trace, tuple(pixels.shape[-2:]), model.patch_size,
                                      masks[i],
                                      colors, dense_mask, opacity)
            if caption:
                caption_frame(annotated,
                              f"#{index} xi {xi:g}  {record.gflops:.2f}/{record.dense_gflops:.2f} GFLOPs  "
                                         f"{latency_ms:.0f} ms")
            yield record, annotated
