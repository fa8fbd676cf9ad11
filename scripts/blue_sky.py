"""A stand-in for sunny photos: CamVid's overcast sky repainted clear blue, and how much of it each model
still calls Sky (issue 21's "labels blue sky as the teacher does"; issue 20's blue-sky target).

The street photos with real blue skies are held back from this repository, so this repaints the Sky pixels
of labelled CamVid frames (the labels only say where the sky is) with a zenith-to-horizon blue gradient and
a little grain, then reads each model's mask there: the share called Sky and the share called Building. It is
harsher than real photos (the overcast horizon's glare and the clouds are gone): the dense teacher, which
calls 99 % of a real clear sky Sky, calls 54 % of this one Sky on drive 0001TP, and it is meant for comparing
models with each other, not as the target's number.

    python scripts/blue_sky.py --drive 0001TP --models checkpoints/camvid_dense_vit_tiny@1 \\
        checkpoints/camvid_dovit_vit_tiny@0.9 --json runs/blue_sky_0001TP.json
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dovit import Predictor
from dovit.data import DEFAULT_DATA_ROOT, build_dataset

SKY, BUILDING = 0, 1  # CamVid's class indices
ZENITH, HORIZON = np.array([40, 110, 215]), np.array([150, 195, 240])  # RGB of a clear sky, top and bottom
MIN_SKY_SHARE = 0.02  # frames with less sky are skipped


@dataclass
class SkyScore:
    checkpoint: str
    xi: float
    sky_as_sky: float  # of the repainted sky pixels, the share the model calls Sky
    sky_as_building: float
    images: int


def repaint_sky(image: np.ndarray, sky: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (H, W, 3) uint8 RGB with the ``sky`` pixels (H, W) bool painted a clear blue gradient."""
    height, width = sky.shape
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    paint = (ZENITH * (1.0 - t) + HORIZON * t) * np.ones((1, width, 1)) + rng.normal(0.0, 3.0, image.shape)
    painted = image.copy()
    painted[sky] = np.clip(paint[sky], 0, 255).astype(np.uint8)
    return painted


def blue_sky_frames(data_root: Path, drive: str, split: str = "train+val",
                    seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(repainted frames, their sky masks) of every ``split`` frame of ``drive`` with enough sky."""
    dataset = build_dataset("camvid", data_root, split, sequences=[drive])
    rng = np.random.default_rng(seed)
    images, skies = [], []
    for index in range(len(dataset)):
        image, label = dataset.load(index)
        sky = label == SKY
        if sky.mean() >= MIN_SKY_SHARE:
            images.append(repaint_sky(image, sky, rng))
            skies.append(sky)
    if not images:
        raise SystemExit(f"no {drive} frames with at least {MIN_SKY_SHARE:.0%} sky under {data_root}")
    return images, skies


def sky_score(checkpoint: str, xi: float, images: list[np.ndarray], skies: list[np.ndarray]) -> SkyScore:
    predictor = Predictor.from_checkpoint(checkpoint)
    masks = [p.mask for p in predictor.predict_batch(images, xi=xi, dense=False)]
    total = sum(int(sky.sum()) for sky in skies)
    called = [
        sum(int((mask[sky] == cls).sum()) for mask, sky in zip(masks, skies, strict=False)) / total
        for cls in (SKY, BUILDING)
    ]
    return SkyScore(checkpoint, xi, called[0], called[1], len(images))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=Path(DEFAULT_DATA_ROOT))
    parser.add_argument("--drive", default="0001TP",
                        help="CamVid drive (file-name prefix) whose frames are repainted")
    parser.add_argument("--split", default="train+val",
                        help="splits to read the drive's frames from ('+' joins)")
    parser.add_argument("--models", nargs="+", required=True,
                        help="CHECKPOINT@XI, e.g. checkpoints/camvid_dovit_vit_tiny@0.9")
    parser.add_argument("--seed", type=int, default=0, help="seed of the grain")
    parser.add_argument("--json", type=Path, help="write the scores here")
    args = parser.parse_args(argv)
    try:
        images, skies = blue_sky_frames(args.data_root, args.drive, args.split, args.seed)
    except ValueError as error:  # no such split or drive under --data-root
        parser.error(str(error))
    scores = []
    print(f"{len(images)} {args.drive} frames, sky repainted blue")
    print("| model | ξ | called Sky | called Building |\n|---|---|---|---|")
    for spec in args.models:
        checkpoint, _, xi = spec.rpartition("@")
        if not checkpoint:
            parser.error(f"--models: {spec!r} is not CHECKPOINT@XI")
        scores.append(sky_score(checkpoint, float(xi), images, skies))
        score = scores[-1]
        print(f"| {checkpoint} | {score.xi:g} | {100 * score.sky_as_sky:.1f} % | "
              f"{100 * score.sky_as_building:.1f} % |")
    if args.json:
        args.json.write_text(json.dumps([asdict(s) for s in scores], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
