"""Benchmark: class masks at the image's size, in label space vs upsample-then-argmax (issue 11).

    python -m benchmarks.mask_resample [--checkpoint PATH] [--frames 16] [--sizes 720x960 1080x1440 2160x2880]
                                       [--rounds 3] [--threads N]

(from the checkout root). The shipped student (or ``--checkpoint``) runs once per CamVid val frame at its
working size and default ξ; its logits are then turned into a mask at each ``--sizes`` output size two ways,
interleaved frame by frame (A B A B ..., so that the machine's load hits both alike):

- upsample: ``F.interpolate`` of the logits to the size (bilinear, align_corners=False), then the argmax
  over classes (what ``dovit.core.preprocess.logits_to_mask`` did before);
- labels: ``logits_to_mask`` now (``dovit.core.preprocess.resample_labels``: interpolates only pixels whose 2
x 2
  source block mixes classes, or falls back to the upsample where that does not pay).

Then ``Predictor.predict`` on each frame enlarged to the first size (a photo larger than the working size),
ξ-only part (the image cache set once), with each mask path, interleaved. Prints per size the median ms of
each path, the median per-frame ratio upsample / labels with its spread (min-max), the pixels whose class
differs, and the fraction of mixed 2 x 2 source blocks; the machine and its load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path
from unittest import mock

import torch

import dovit.core.predictor
import dovit.core.preprocess
from dovit import Predictor
from dovit.core.preprocess import logits_to_mask, resize_image, uniform_blocks, upsample_logits
from dovit.core.stopwatch import Stopwatch
from dovit.data import data_root_beside
from dovit.data.datasets import read_rgb
from dovit.viz.video import image_files

ROOT = Path(__file__).resolve().parent.parent
CAMVID_VAL = data_root_beside(ROOT) / "val"


def upsample_then_argmax(logits: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """The mask path before label space: the full bilinear upsample, then the argmax."""
    if size is not None and tuple(size) != tuple(logits.shape[-2:]):
        logits = upsample_logits(logits, size)
    return logits.max(dim=1).indices


def mixed_fraction(logits: torch.Tensor) -> float:
    """Fraction of 2 x 2 source blocks whose cells do not all share the first maximal class."""
    return 1.0 - float(uniform_blocks(logits.max(dim=1).indices).float().mean())


def _timed(function, *args) -> tuple[float, object]:
    start = Stopwatch()
    result = function(*args)
    return start.ms(), result


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HEIGHTxWIDTH, e.g. 1080x1440, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


def _summary(name: str, old: list[float], new: list[float]) -> str:
    ratios = [a / b for a, b in zip(old, new, strict=False)]
    return (f"{name}: upsample {statistics.median(old):.1f} ms, labels {statistics.median(new):.1f} ms, "
            f"upsample/labels {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}, "
            f"{len(ratios)} pairs)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint directory (default: the shipped student)")
    parser.add_argument("--data-root", type=Path, default=CAMVID_VAL,
                        help="folder of frames (any image type)")
    parser.add_argument("--frames", type=int, default=16, help="frames (the first, in name order)")
    parser.add_argument("--sizes", type=_size, nargs="+", default=[(720, 960), (1080, 1440), (2160, 2880)],
                        help="output mask sizes HEIGHTxWIDTH")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the frames")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.rounds < 1:
        parser.error("--frames and --rounds must be at least 1")
    files = image_files(args.data_root)[: args.frames] if args.data_root.is_dir() else []
    if not files:
        parser.error(f"no frames in {args.data_root}")
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.checkpoint)
    images = [read_rgb(path) for path in files]
    with torch.inference_mode():
        logits = [predictor.model(predictor.preprocess(image),
                                  xi=predictor.default_xi).logits for image in images]
    print(f"{os.cpu_count()} logical cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    mixed = [mixed_fraction(frame_logits) for frame_logits in logits]
    print(f"{len(files)} frames of {args.data_root}, logits {tuple(logits[0].shape)} at xi "
          f"{predictor.default_xi:g}; mixed 2x2 blocks per frame: median {statistics.median(mixed):.3f}, max "
          f"{max(mixed):.3f}")
    with torch.inference_mode():
        for size in args.sizes:
            old, new, differ = [], [], 0
            for _ in range(args.rounds):
                for frame_logits in logits:
                    old_ms, reference = _timed(upsample_then_argmax, frame_logits, size)
                    new_ms, mask = _timed(logits_to_mask, frame_logits, size)
                    old.append(old_ms)
                    new.append(new_ms)
                    differ += int((mask != reference).sum())
            pixels = args.rounds * len(logits) * size[0] * size[1]
            print(_summary(f"mask {size[0]}x{size[1]}", old,
                           new) + f"; pixels that differ: {differ} of {pixels}")
    size = args.sizes[0]
    old, new = [], []
    for _ in range(args.rounds):
        for image in images:
            predictor.set_image(resize_image(image, size))  # enlarging: INTER_LINEAR
            # class_mask calls it
            with mock.patch.object(dovit.core.preprocess, "logits_to_mask", upsample_then_argmax):
                old.append(_timed(predictor.predict)[0])
            new.append(_timed(predictor.predict)[0])
    print(_summary(f"Predictor.predict on a {size[0]}x{size[1]} image (xi part)", old, new))
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
