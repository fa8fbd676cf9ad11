"""Benchmark: the app's slider-to-all-views handler (the work of one ξ slider release).

    python -m benchmarks.app_handler [--checkpoint PATH] [--image PNG] [--repeats 30] [--threads N]

Times ``Studio.on_release`` (forward at the new ξ, reusing the image's cached ξ-independent part, plus
every view, chart and readout), the forward alone (``Predictor.predict``), and the JPEG/PNG encoding
gradio then does for the image outputs. ξ cycles over values around the default so that each call
re-thresholds for real. Prints a Markdown table for docs/benchmarks.md ("App" section).
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
from pathlib import Path

from dovit.core.stopwatch import Stopwatch
from dovit.data import data_root_beside

ROOT = Path(__file__).resolve().parent.parent  # the checkout, for its data files only
DEFAULT_IMAGE = data_root_beside(ROOT) / "val" / "0016E5_07959.png"
POSITIONS = (0.55, 0.6, 0.65, 0.7, 0.75, 0.8)  # ξ ≈ 0.91 ... 0.99 on the app's slider scale


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE,
                        help="image to use (default: a CamVid val image, else assets/synthetic_street.png)")
    parser.add_argument("--repeats", type=int, default=30, help="timed handler calls (after 3 warm-up calls)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the app's default)")
    return parser.parse_args()


def encode_outputs(views) -> int:
    """Encode the image outputs as gradio does (PIL; PNG for the colour masks, JPEG for the rest).
    views: a handler's ``ViewSlots``. Returns the image count."""
    import numpy as np
    import PIL.Image

    count = 0
    for name, value in zip(views.names(), views.flat(), strict=True):
        image = value.get("value") if isinstance(value, dict) else value
        if isinstance(image, np.ndarray):
            PIL.Image.fromarray(image).save(io.BytesIO(), "PNG" if name in ("color_mask",
                                                                            "dense_mask") else "JPEG")
            count += 1
    return count


def main() -> None:
    args = parse_args()
    import torch

    from app.runtime import configure_torch
    from app.studio import Studio
    from dovit import Predictor

    threads = configure_torch(args.threads)
    image_path = args.image if args.image.exists() else ROOT / "assets/synthetic_street.png"
    predictor = Predictor.from_checkpoint(args.checkpoint)
    studio = Studio(predictor)
    first = studio.on_image(str(image_path), studio.default_size_value, predictor.default_xi, 0.5, None)
    session = first.session
    for position in POSITIONS[:3]:
        studio.on_release(position, 0.5, session)

    handler_ms, forward_ms, encode_ms, kept = [], [], [], []
    for index in range(args.repeats):
        position = POSITIONS[index % len(POSITIONS)]
        start = Stopwatch()
        outputs = studio.on_release(position, 0.5, session)
        handler_ms.append(start.ms())
        start = Stopwatch()
        images = encode_outputs(outputs.refresh.views)
        encode_ms.append(start.ms())
        start = Stopwatch()
        prediction = predictor.predict(xi=outputs.xi_box)
        forward_ms.append(start.ms())
        kept.append(sum(g.tokens for g in prediction.trace.groups[1:]) / (prediction.trace.num_tokens * 3))

    def row(name: str, values: list[float]) -> str:
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
        return f"| {name} | {statistics.median(values):.0f} | {p90:.0f} | {min(values):.0f} |"

    size = session.working.shape
    load = os.getloadavg()
    config = predictor.config
    print(f"checkpoint: {args.checkpoint or 'shipped default'} ({config.backbone}, stem {config.stem})")
    print(f"image: {image_path.name}, working size {size[0]}×{size[1]}, ξ over "
          f"{', '.join(f'{1 - (1 - p) ** 3:.3f}' for p in POSITIONS)}")
    print(f"mean share of tokens kept in groups 2-4: {100 * statistics.mean(kept):.0f}%")
    print(f"torch {torch.__version__}, {threads} threads, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average at the end {load[0]:.2f} / {load[1]:.2f}")
    print(f"{args.repeats} calls, {images} images per call\n")
    print("| step | median ms | p90 ms | min ms |\n|---|---|---|---|")
    print(row("slider-to-all-views handler (`Studio.on_release`)", handler_ms))
    print(row("of which: forward at the new ξ (`Predictor.predict`)", forward_ms))
    print(row("after it: encoding the image outputs (JPEG/PNG)", encode_ms))


if __name__ == "__main__":
    main()
