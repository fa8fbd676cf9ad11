"""Benchmark: the server's resident memory while /analyze_video processes a long video.

    python -m benchmarks.video_memory [--frames 2000] [--size 96 128] [--checkpoint PATH] [--threads 1]

(from the checkout root). Writes a synthetic clip (a square moving over a gradient, mp4v, in a temporary
folder) and starts ``python app.py`` (the real entry point) on 127.0.0.1 in its own process: by default
on a random-init ViT-T checkpoint at a 64 x 96 working size (so that 2,000 frames take minutes, not an
hour; what is measured is what grows per frame: decoding, records, encoding), or ``--checkpoint``.
After one warm-up call on a short clip, one /analyze_video call through gradio_client processes the long
clip while the server's RSS is sampled every 0.5 s. Prints the RSS before the call, at each tenth of the
call's duration (frames go at a steady rate, so time stands for frames), the peak, and the least-squares
slope in MB per 1,000 frames over the call's second half.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import torch
from gradio_client import Client, handle_file

from benchmarks.app_memory import start_server
from dovit.viz.video import write_video


def synthetic_clip(path: Path, frames: int, size: tuple[int, int]) -> Path:
    height, width = size
    ramp = np.linspace(0, 200, width, dtype=np.uint8)[None, :, None]

    def frame(index: int) -> np.ndarray:
        image = np.broadcast_to(ramp, (height, width, 3)).copy()
        x = (3 * index) % max(1, width - 20)
        cv2.rectangle(image, (x, height // 4), (x + 20, height // 4 + 20), (255, 255, 255), -1)
        return image

    write_video((frame(i) for i in range(frames)), path, fps=25)
    return path


def tiny_checkpoint(folder: Path) -> str:
    import dovit

    torch.manual_seed(0)
    model = dovit.build_model("vit_tiny_patch16_224", num_classes=11, input_size=(64, 96)).eval()
    return str(dovit.save_checkpoint(model, folder / "checkpoint"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"))
    parser.add_argument("--checkpoint", default=None, help="default: a random-init ViT-T at 64 x 96")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        checkpoint = args.checkpoint or tiny_checkpoint(folder)
        clip = synthetic_clip(folder / "long.mp4", args.frames, tuple(args.size))
        warm = synthetic_clip(folder / "warm.mp4", 20, tuple(args.size))
        server, url = start_server(checkpoint, args.threads)
        try:
            process = psutil.Process(server.pid)
            client = Client(url, verbose=False, download_files=folder / "downloads")
            client.predict(handle_file(warm), 0.9, api_name="/analyze_video")
            before = process.memory_info().rss
            samples: list[tuple[float, int]] = []
            result: dict = {}

            def call() -> None:
                result["output"] = client.predict(handle_file(clip), 0.9, api_name="/analyze_video")

            load = os.getloadavg()[0]
            worker = threading.Thread(target=call)
            start = time.monotonic()
            worker.start()
            while worker.is_alive():
                samples.append((time.monotonic() - start, process.memory_info().rss))
                worker.join(0.5)
            duration = time.monotonic() - start
            frames = len(result["output"][1])
        finally:
            server.terminate()
            server.wait(timeout=30)
    mb = 2**20
    print(f"{frames} frames {args.size[1]}x{args.size[0]} in {duration:.0f} s ({frames / duration:.1f} FPS); "
          f"load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"RSS before the call {before / mb:.0f} MB, peak {max(r for _, r in samples) / mb:.0f} MB")
    tenths = [min(samples, key=lambda s: abs(s[0] - duration * k / 10)) for k in range(1, 11)]
    print("RSS at each tenth of the call (MB): " + " ".join(f"{r / mb:.0f}" for _, r in tenths))
    second_half = [(t, r) for t, r in samples if t >= duration / 2]
    times, rss = np.array([t for t, _ in second_half]), np.array([r for _, r in second_half], np.float64)
    slope = np.polyfit(times, rss, 1)[0] if len(times) > 1 else float("nan")  # bytes per second
    print(f"slope over the second half: {slope * duration / frames * 1000 / mb:.2f} MB per 1,000 frames "
          f"({len(second_half)} samples)")


if __name__ == "__main__":
    main()
