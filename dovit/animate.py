"""python -m dovit.animate IMAGE --out pass.gif: one image's token pass as an animated GIF or an MP4, for
slides (the frames: ``dovit.viz.animation``).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from .cli.flags import add_process_flags, apply_threads
from .viz.animation import ANIMATION_SUFFIXES, AnimationTiming
from .viz.drawing import PALETTES


@dataclass
class AnimateConfig:
    """``python -m dovit.animate``'s flags (see its --help for each)."""

    image: str
    out: str
    checkpoint: str | None = None
    xi: float | None = None
    fps: float = 12.0
    fade_frames: int = 4
    palette: str = "dataset"
    threads: int | None = None


def parse_args(argv: list[str] | None = None) -> AnimateConfig:
    parser = argparse.ArgumentParser(
        prog="python -m dovit.animate",
        description="Animate one image's token pass group by group: every token lit at first, then after "
                    "each group B_g the tokens its decision stopped (Eq. 5) fade to their final class colour "
                    "while the kept ones stay lit; a banner on each frame gives the group, the share of "
                    "tokens it ran on and the GFLOPs spent so far; the last frame is the mask. The image "
                    "runs at its own aspect with the checkpoint's token budget. Writes a GIF that loops "
                    "forever or an MP4 (mp4v), by the suffix of --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("image", help="the image (PNG, JPEG, WebP, BMP)")
    add("--out", required=True, help=f"the animation to write: {' or '.join(ANIMATION_SUFFIXES)}")
    add("--checkpoint", default=None, help="checkpoint directory (default: the shipped CamVid DoViT model)")
    add("--xi", type=float, default=None, help="token-pass threshold in [0, 1] (default: the checkpoint's)")
    add("--fps", type=float, default=12.0,
        help="frames per second of the fades (and of the MP4); each step's last frame is held 0.7 s")
    add("--fade-frames", type=int, default=4, help="frames over which the stopped tokens fade")
    add("--palette", choices=PALETTES, default="dataset", help="class colours")
    add_process_flags(parser, device=False)
    return AnimateConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    apply_threads(config.threads)
    from .core.checkpoint import CheckpointError
    from .core.predictor import Predictor, check_xi
    from .core.preprocess import resize_image
    from .core.stopwatch import Stopwatch
    from .data.datasets import read_rgb
    from .viz.animation import render_pass, write_animation

    try:
        out = Path(config.out)
        if out.suffix.lower() not in ANIMATION_SUFFIXES:
            raise ValueError(f"--out {out.name}: the animation is a .gif or an .mp4")
        xi = None if config.xi is None else check_xi(config.xi)
        timing = AnimationTiming(fps=config.fps, fade_frames=config.fade_frames)
        if not Path(config.image).is_file():
            raise FileNotFoundError(f"no image at {config.image}")
        image = read_rgb(config.image)  # OSError when it is not an image OpenCV can decode
        predictor = Predictor.from_checkpoint(config.checkpoint)
        started = Stopwatch()
        working = predictor.working_size(image_size=image.shape[:2])  # the photo's own aspect
        frames = render_pass(predictor, resize_image(image, working), xi, config.palette, timing)
        write_animation(frames, out, timing.fps)
    except (ValueError, OSError, CheckpointError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    height, width = frames[0].image.shape[:2]
    print(f"wrote {out}: {len(frames)} animation frames ({width}x{height}), "
          f"{out.stat().st_size / 1024:.0f} KB, forward, frames and file in {started.seconds():.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
