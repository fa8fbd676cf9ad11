"""Benchmark: video throughput end to end against the model's batch-1 FPS at the same ξ.

    python -m benchmarks.video_throughput [--checkpoint PATH] [--xi XI] [--frames 40] [--rounds 5] [--threads 1]

(from the checkout root). The clip is CamVid val's first ``--frames`` frames written to a temporary MP4
(mp4v, outside the repo), else a synthetic street clip. Each round runs, in turn (interleaved A/B, so
that the machine's load hits every arm alike):

- model: the frames decoded up front, then per frame ``predictor.preprocess`` + the forward at ξ
  (batch 1): the model's FPS;
- export: ``dovit.video.analyze_video`` (decode, preprocess, forward, class mask, mask overlay, caption)
  into an MP4 (``FrameWriter``, mp4v): what /analyze_video does per frame;
- tab: the same plus the VP8 WebM the Video tab's player plays.

Prints per round the FPS of each arm and the 1-minute load average, then the median ratio of export and
tab to model with its spread (min-max over rounds).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dovit import Predictor
from dovit.video import FrameWriter, analyze_video, iter_frames, write_video

ROOT = Path(__file__).resolve().parent.parent
CAMVID_VAL = ROOT.parent / "shared/data/camvid/val"


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
def model_fps(predictor: Predictor, frames: list[np.ndarray], xi: float) -> float:
    start = time.perf_counter()
    for frame in frames:
        predictor.model(predictor.preprocess(frame), xi=xi)
    return len(frames) / (time.perf_counter() - start)


def pipeline_fps(predictor: Predictor, clip: Path, xi: float, out: Path, playback: bool) -> float:
    start = time.perf_counter()
    count = 0
    with FrameWriter(out / "annotated.mp4", 30) as mp4:
        webm = FrameWriter(out / "annotated.webm", 30) if playback else None
        for _, annotated in analyze_video(predictor, clip, xi=xi, overlay="mask"):
            mp4.write(annotated)
            if webm is not None:
                webm.write(annotated)
            count += 1
        if webm is not None:
            webm.close()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--xi", type=float, default=None, help="default: the checkpoint's")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.checkpoint)
    xi = predictor.default_xi if args.xi is None else args.xi
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        clip = make_clip(folder, args.frames)
        frames = list(iter_frames(clip))
        print(f"clip: {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, xi {xi:g}, "
              f"torch threads {args.threads}, working size {tuple(predictor.config.input_size)}")
        model_fps(predictor, frames[:3], xi)  # warm-up
        rows = []
        for round_index in range(args.rounds):
            load = os.getloadavg()[0]
            model = model_fps(predictor, frames, xi)
            export = pipeline_fps(predictor, clip, xi, folder, playback=False)
            tab = pipeline_fps(predictor, clip, xi, folder, playback=True)
            rows.append((model, export, tab))
            print(f"round {round_index + 1}: model {model:.2f} FPS, export (mp4) {export:.2f} FPS "
                  f"({export / model:.3f}), tab (mp4 + webm) {tab:.2f} FPS ({tab / model:.3f}); "
                  f"load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    for name, column in (("export", 1), ("tab", 2)):
        ratios = [row[column] / row[0] for row in rows]
        print(f"{name} / model: median {statistics.median(ratios):.3f}, spread {min(ratios):.3f}-{max(ratios):.3f} "
              f"over {len(ratios)} rounds")


if __name__ == "__main__":
    main()
