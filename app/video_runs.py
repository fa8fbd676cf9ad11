"""The Video tab's pure parts: a job (``analyse_to_disk``: decode, analyse, annotate, write MP4 and WebM, keep
the per-frame records), the frame folders offered, upload checks and the readouts; no gradio layout here.

Sources: an uploaded video (MP4/MOV, WebM/MKV, AVI; decoded with OpenCV), a clip recorded from the webcam
(gradio's ``gr.Video`` webcam source records in the browser and uploads a WebM when recording stops: a
recorded clip, not a live stream), or a folder of frames the operator allowed (the example folders and
the sub-folders of ``--frames-root``, offered by name in a dropdown; no path ever comes from the user).

A job runs the model and runtime picked on the page and streams (``analyse_to_disk``): one frame is decoded,
analysed and annotated while the job holds the model (``Studio.model_call(background=True)``, so the page
and /predict go first between frames), then written to an MP4 (mp4v, the download) and, for the page, a
smaller WebM (VP8, what a browser plays: this OpenCV has no H.264 encoder); only the per-frame
``FrameRecord``s stay in memory. The scrubber decodes the one frame it points at from the MP4. Jobs stop
after ``ServingLimits.video_max_frames`` frames or ``video_budget_s`` seconds, frames are shrunk to
``video_max_side``, each with a notice.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2

from dovit import Predictor
from dovit.data.datasets import read_rgb
from dovit.viz.video import (
    FrameRecord,
    FrameWriter,
    analyze_video,
    count_frames,
    frame_rate,
    image_files,
    write_records_csv,
    write_records_json,
)

from .images import NOT_UPLOADED, fit_within
from .limits import ServingLimits
from .studio import Studio
from .uploads import video_problem

PLAYBACK_MAX_SIDE = 320  # the player's WebM: VP8 costs ~15x mp4v per pixel, and the player is 300 px high


@dataclass
class VideoRun:
    """One finished job: its files on disk and the per-frame records (a few numbers per frame).

    folder: the job's own folder; mp4 the annotated video (download; mp4v), webm the same for the player
    (None for API jobs), csv / json the records. source: the server path analysed (never shown).
    """

    folder: Path
    mp4: Path
    webm: Path | None
    csv: Path
    json: Path
    records: list[FrameRecord]
    fps: float
    source: Path
    label: str
    xi: float
    overlay: str
    notices: list[str] = field(default_factory=list)
    model_name: str = ""  # what ran ("<model> on <runtime>"), for the summary line


def frame_folders(roots: Sequence[str | Path], depth: int = 2) -> dict[str, Path]:
    """{label: folder} of every folder holding images at most ``depth`` levels below each root (the root
    included), labelled by its path below the root's parent and its frame count, e.g. 'camvid/val (101
    frames)'; label folders (``is_label_folder``) are left out."""
    found: dict[str, Path] = {}
    for root in (Path(r).resolve() for r in roots):
        if not root.is_dir():
            continue
        candidates = [root] + [
            p for level in range(1, depth + 1) for p in sorted(root.glob("/".join(["*"] * level)))
        ]
        for folder in candidates:
            if folder.is_dir() and not folder.is_symlink() and not is_label_folder(folder):
                count = len(image_files(folder))
                if count:
                    found.setdefault(f"{folder.relative_to(root.parent)} ({count} frames)", folder)
    return found


def is_label_folder(folder: Path) -> bool:
    """A CamVid-layout label folder (``<split>annot`` beside ``<split>``): label maps, not frames."""
    return folder.name.endswith("annot") and (folder.parent / folder.name.removesuffix("annot")).is_dir()


def checked_video(path: str | Path | None, upload_dirs: Sequence[str | Path], limits: ServingLimits) -> Path:
    """The uploaded video at ``path`` when it lies in ``upload_dirs`` (symbolic links resolved) and passes
    ``uploads.video_problem``; ValueError with a message for the user otherwise (a path elsewhere gets the
    same answer as a missing file, so nothing is learnt about the server's files)."""
    if path is None:
        raise ValueError("No video given: upload a video or record one with the webcam.")
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(Path(d).resolve()) for d in upload_dirs) or not resolved.is_file():
        raise ValueError(NOT_UPLOADED)
    problem = video_problem(resolved, limits)
    if problem:
        raise ValueError(problem)
    return resolved


def source_notices(source: Path, limits: ServingLimits) -> tuple[list[str], int | None]:
    """(notices about the caps this source meets, frames that will be analysed or None if unknown)."""
    count = count_frames(source)
    if source.is_dir():
        height, width = read_rgb(image_files(source)[0]).shape[:2]
    else:
        capture = cv2.VideoCapture(str(source))
        width, height = (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        capture.release()
    notices = []
    if count is not None and count > limits.video_max_frames:
        notices.append(f"Only the first {limits.video_max_frames} of {count} frames are analysed.")
    if max(height, width) > limits.video_max_side:
        notices.append(f"Frames of {width}×{height} px are shrunk to at most {limits.video_max_side} px a "
                       "side.")
    return notices, None if count is None else min(count, limits.video_max_frames)


def analyse_to_disk(studio: Studio, source: Path, xi: float, overlay: str, folder: Path, label: str = "",
                    playback: bool = True, limits: ServingLimits | None = None,
                    clock: Callable[[], float] = time.monotonic, predictor: Predictor | None = None,
                    model_name: str = "") -> Iterator[tuple[int, int | None, VideoRun | None]]:
    """Run DoViT over ``source`` (a video file or an image folder) into ``folder``, streaming.

    Yields (frames done, frames expected or None, None) after each frame and finally (done, expected,
    the ``VideoRun``). Each frame's decode, forward and overlay run holding the model as background work
    (``studio.model_call(background=True)``), so interactive calls go first between frames; encoding
    runs without it. ``playback`` also writes the WebM a browser plays, at most ``PLAYBACK_MAX_SIDE`` px a
    side (the MP4 keeps the frames' size). ``predictor``: the model to run (default: the studio's default
    model), called ``model_name`` in the summary. Raises ValueError for a source that holds no decodable
    frame.
    """
    limits = limits or studio.limits
    notices, expected = source_notices(source, limits)
    folder.mkdir(parents=True, exist_ok=True)
    fps = frame_rate(source)
    run = VideoRun(folder, folder / "annotated.mp4", folder / "annotated.webm" if playback else None,
                   folder / "frames.csv", folder / "frames.json", [], fps, source, label, xi, overlay,
                   notices,
                   model_name)
    frames = analyze_video(predictor or studio.predictor, source, xi=xi, overlay=overlay,
                           max_frames=limits.video_max_frames, max_side=limits.video_max_side)
    start = clock()
    try:
        with FrameWriter(run.mp4, fps) as mp4, (FrameWriter(run.webm,
                                                            fps) if playback else nullcontext()) as webm:
            while True:
                with studio.model_call(background=True):
                    item = next(frames, None)
                if item is None:
                    break
                record, annotated = item
                run.records.append(record)
                mp4.write(annotated)
                if webm is not None:
                    webm.write(fit_within(annotated, PLAYBACK_MAX_SIDE)[0])
                if clock() - start > limits.video_budget_s:
                    notices.append(f"Stopped after {limits.video_budget_s:.0f} s with {len(run.records)} "
                                   "frames.")
                    yield len(run.records), expected, None
                    break
                yield len(run.records), expected, None
    finally:
        frames.close()
    write_records_csv(run.records, run.csv)
    write_records_json(run.records, run.json)
    yield len(run.records), expected, run


def scrubber_frame(position: float | None, frames: int) -> int:
    """The frame (0-based) at ``position`` % of a run of ``frames`` frames. The scrubber is in % because
    gradio 6 does not move a slider's range when an event changes its maximum."""
    fraction = min(max(float(position or 0.0), 0.0), 100.0) / 100.0
    return int(round(fraction * (frames - 1)))


def api_records(records: Sequence[FrameRecord]) -> list[dict]:
    """The per-frame JSON list of /analyze_video: frame, gflops, dense_gflops, kept_tokens, latency_ms,
    name, xi per frame (``FrameRecord``'s fields)."""
    return [asdict(record) for record in records]


def frame_markdown(run: VideoRun, index: int) -> str:
    """One frame's numbers under the scrubber."""
    record = run.records[index]
    kept = " · ".join(f"B{g + 1}: {tokens}" for g, tokens in enumerate(record.kept_tokens))
    share = 100.0 * record.gflops / record.dense_gflops if record.dense_gflops else float("nan")
    return (f"**Frame {record.frame}** {record.name} · {record.gflops:.2f} of {record.dense_gflops:.2f} "
            f"dense GFLOPs ({share:.0f}%) · kept tokens {kept} · {record.latency_ms:.0f} ms")


def run_summary(run: VideoRun) -> str:
    """The notice line above the player: what ran, how many frames, mean cost, and the caps met."""
    count = len(run.records)
    mean = sum(r.gflops for r in run.records) / max(count, 1)
    dense = sum(r.dense_gflops for r in run.records) / max(count, 1)
    latency = sorted(r.latency_ms for r in run.records)[count // 2] if count else 0.0
    model = f" with {run.model_name}" if run.model_name else ""
    parts = [f"{run.label}{model}: {count} frames at ξ = {run.xi:g} · mean {mean:.2f} GFLOPs vs {dense:.2f} "
             f"dense ({100 * mean / dense if dense else 0:.0f}%) · median latency {latency:.0f} "
             "ms"] + run.notices
    return " · ".join(parts)
