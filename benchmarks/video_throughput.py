"""Benchmark: video throughput end to end against the model's batch-1 FPS at the same ξ.

    python -m benchmarks.video_throughput [--checkpoint PATH] [--xi XI] [--frames 40] [--rounds 5] [--threads
    1]

(from the checkout root). The clip is CamVid val's first ``--frames`` frames written to a temporary MP4
(mp4v, outside the repo), else a synthetic street clip. Each round runs two passes over the clip, each
interleaving frame by frame (A/B per frame, so that the machine's load hits both alike) the model's
forward of a frame with the job's step for that frame:

- model: the frames decoded and preprocessed up front, then the forward at ξ per frame (batch 1), timed
  as ``dovit.evaluate`` times its FPS: the model's FPS;
- export: the app's video job without the player's file (``app.video_runs.analyse_to_disk``, what
  /analyze_video runs): per frame decode, preprocess, forward, class mask, mask overlay and caption while
  holding the model gate, then the MP4 (mp4v); the CSV/JSON at the end;
- tab: the same plus the VP8 WebM the Video tab's player plays (at most 320 px a side).

Prints per round each pass's FPS against its paired model FPS and the 1-minute load average, then the
median ratio of export and tab to model with its spread (min-max over rounds).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import uuid
from pathlib import Path

import numpy as np
import torch

from app.studio import Studio
from app.video_runs import analyse_to_disk
from dovit import Predictor
from dovit.core.stopwatch import Stopwatch
from dovit.data import data_root_beside
from dovit.viz.video import iter_frames, write_video

ROOT = Path(__file__).resolve().parent.parent
CAMVID_VAL = data_root_beside(ROOT) / "val"


def make_clip(folder: Path, frames: int) -> Path:
    """An MP4 of CamVid val's first frames (or of the synthetic street scene, shifted per frame)."""
    path = folder / "clip.mp4"
    if CAMVID_VAL.is_dir():
        source = iter_frames(CAMVID_VAL, max_frames=frames)
    else:
        from assets.make_street_scene import street_scene

        scene = street_scene()
        source = (np.roll(scene, 4 * index, axis=1) for index in range(frames))
    write_video(source, path, fps=30)
    return path


@torch.inference_mode()
def paired_fps(studio: Studio, pixels: list[torch.Tensor], clip: Path, xi: float, out: Path,
               playback: bool) -> tuple[float, float]:
    """(model FPS, job FPS), measured frame by frame in turn: the forward of frame i alone (batch 1, on
    the preprocessed frame, timed like ``dovit.evaluate``'s FPS), then the job's step for frame i
    (``app.video_runs.analyse_to_disk``: decode, preprocess, forward, class mask, overlay, encode), so that
    both see the same moment's load. The job's last step (CSV/JSON) counts to the job."""
    job = analyse_to_disk(studio, clip, xi, "mask", out / uuid.uuid4().hex, playback=playback)
    model_s = job_s = 0.0
    for tensor in pixels:
        start = Stopwatch()
        studio.predictor.model(tensor, xi=xi)
        model_s += start.seconds()
        start = Stopwatch()
        next(job)
        job_s += start.seconds()
    start = Stopwatch()
    for _ in job:  # the records' files
        pass
    job_s += start.seconds()
    return len(pixels) / model_s, len(pixels) / job_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--xi", type=float, default=None, help="default: the checkpoint's")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.checkpoint)
    studio = Studio(predictor, image_dirs=[])
    xi = predictor.default_xi if args.xi is None else args.xi
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        clip = make_clip(folder, args.frames)
        frames = list(iter_frames(clip))
        pixels = [predictor.preprocess(frame) for frame in frames]
        print(f"clip: {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, xi {xi:g}, "
              f"torch threads {args.threads}, working size {tuple(predictor.config.input_size)}")
        paired_fps(studio, pixels[:3], clip, xi, folder, playback=False)  # warm-up
        rows = []
        for round_index in range(args.rounds):
            load = os.getloadavg()[0]
            model_a, export = paired_fps(studio, pixels, clip, xi, folder, playback=False)
            model_b, tab = paired_fps(studio, pixels, clip, xi, folder, playback=True)
            rows.append((model_a, export, model_b, tab))
            print(f"round {round_index + 1}: export (mp4) {export:.2f} FPS vs model {model_a:.2f} FPS "
                  f"({export / model_a:.3f}); tab (mp4 + webm) {tab:.2f} FPS vs model {model_b:.2f} FPS "
                  f"({tab / model_b:.3f}); load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    for name, column in (("export", 1), ("tab", 3)):
        ratios = [row[column] / row[column - 1] for row in rows]
        print(f"{name} / model: median {statistics.median(ratios):.3f}, spread "
              f"{min(ratios):.3f}-{max(ratios):.3f} over {len(ratios)} rounds")


if __name__ == "__main__":
    main()
