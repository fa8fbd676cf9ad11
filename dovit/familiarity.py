"""Does an image look like the training data? The final head's mean confidence against its training range.

A segmenter is less sure of itself on photos unlike its training frames (other cameras, colour casts,
noise, fog): the mean over pixels of the dense forward's top-class probability (``Prediction.
dense_confidence``) drops. ``python -m dovit.familiarity CKPT`` measures that number on the training
frames and stores its range in the checkpoint (``metadata["confidence_range"]``); ``familiarity_note``
then says, for a new image, when it lies below the range's low end (the 5th percentile), so a user knows
when to distrust the mask. About 5 % of training-like frames get the note too: it is a hint, not a test.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from .flags import add_data_flags, add_process_flags, apply_threads
from .core.predictor import Predictor

METADATA_KEY = "confidence_range"
LOW_PERCENTILE, HIGH_PERCENTILE = 5, 95


@dataclass
class FamiliarityConfig:
    """``python -m dovit.familiarity``'s flags (see its --help for each)."""

    checkpoint: str
    dataset: str = "camvid"
    data_root: str = "../shared/data/camvid"
    split: str = "train+val"
    sequences: list[str] | None = None
    max_images: int = 0
    threads: int | None = None
    dry_run: bool = False
    no_progress: bool = False


@dataclass(frozen=True)
class ConfidenceRange:
    """Per-frame mean dense confidence over the reference frames: the low (5th), median and high (95th)
    percentiles, how many frames, and which (data set, split, recordings)."""

    low: float
    median: float
    high: float
    frames: int
    source: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_metadata(cls, metadata: dict | None) -> "ConfidenceRange | None":
        """The range stored in a checkpoint's metadata, or None when it has none (or a malformed one)."""
        stored = (metadata or {}).get(METADATA_KEY)
        try:
            return cls(float(stored["low"]), float(stored["median"]), float(stored["high"]), int(stored["frames"]),
                       str(stored["source"]))
        except (TypeError, KeyError, ValueError):
            return None


def measure_range(predictor: Predictor, images, source: str, batch_size: int = 8,
                  progress: bool = True) -> ConfidenceRange:
    """The ConfidenceRange of ``images`` (an iterable of (H, W, 3) uint8 RGB arrays, at least 2)."""
    confidences, batch = [], []
    for image in tqdm(images, desc="confidence", disable=not progress, dynamic_ncols=True):
        batch.append(image)
        if len(batch) == batch_size:
            confidences += [p.dense_confidence for p in predictor.predict_batch(batch, xi=1.0, batch_size=batch_size)]
            batch = []
    if batch:
        confidences += [p.dense_confidence for p in predictor.predict_batch(batch, xi=1.0, batch_size=batch_size)]
    if len(confidences) < 2:
        raise ValueError(f"a confidence range needs at least 2 frames, got {len(confidences)}")
    low, median, high = np.percentile(confidences, [LOW_PERCENTILE, 50, HIGH_PERCENTILE])
    return ConfidenceRange(float(low), float(median), float(high), len(confidences), source)


def familiarity_note(confidence: float, reference: ConfidenceRange | None) -> str | None:
    """One line when ``confidence`` lies below the reference's low end; None when it does not (or no range)."""
    if reference is None or not np.isfinite(confidence) or confidence >= reference.low:
        return None
    return (f"This image looks unlike the training data: the model's mean confidence is {confidence:.2f}, below "
            f"{100 - LOW_PERCENTILE}% of its training frames ({reference.low:.2f}–{reference.high:.2f} on "
            f"{reference.source}). Trust the mask less.")


# ---------------------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None = None) -> FamiliarityConfig:

    parser = argparse.ArgumentParser(
        prog="python -m dovit.familiarity",
        description="Measure a checkpoint's mean dense confidence on its training frames and store its range "
        f"({LOW_PERCENTILE}th percentile, median, {HIGH_PERCENTILE}th) in the checkpoint's config.json "
        f"(metadata['{METADATA_KEY}']); the studio then notes images whose confidence lies below it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("checkpoint", help="checkpoint directory (updated in place)")
    add_data_flags(parser, split="train+val", split_help="the split(s) the checkpoint trained on ('+' joins splits)")
    add("--max-images", type=int, default=0, help="use every k-th frame so that at most N are read (0 = all)")
    add_process_flags(parser, device=False)
    add("--dry-run", action="store_true", help="print the range, do not write it")
    add("--no-progress", action="store_true", help="no progress bar")
    return FamiliarityConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:

    from .core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from .data import build_dataset

    args = parse_args(argv)
    apply_threads(args.threads)
    try:
        model = load_checkpoint(args.checkpoint)
        dataset = build_dataset(args.dataset, args.data_root, args.split, sequences=args.sequences)
        step = max(1, -(-len(dataset) // args.max_images)) if args.max_images > 0 else 1
        indices = range(0, len(dataset), step)
        source = f"{args.dataset} {args.split}" + (f" ({' '.join(args.sequences)})" if args.sequences else "")
        reference = measure_range(Predictor(model), (dataset[i][0] for i in indices), f"{source}, {len(indices)} frames",
                                  progress=not args.no_progress)
        print(f"mean dense confidence on {reference.source}: low {reference.low:.3f}, median {reference.median:.3f}, "
              f"high {reference.high:.3f}")
        if not args.dry_run:
            save_checkpoint(model, args.checkpoint, metadata={**model.checkpoint_metadata,
                                                              METADATA_KEY: reference.to_dict()})
            print(f"stored in {args.checkpoint}")
    except (ValueError, OSError, CheckpointError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
