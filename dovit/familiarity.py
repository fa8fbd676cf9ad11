"""python -m dovit.familiarity CKPT: store the range of the dense forward's mean confidence on the training
frames in the checkpoint, so the app can say when an image looks unlike them
(``dovit.evaluation.confidence_range``).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from .cli.flags import add_data_flags, add_process_flags, apply_threads
from .core.predictor import Predictor
from .data import DEFAULT_DATA_ROOT
from .evaluation.confidence_range import HIGH_PERCENTILE, LOW_PERCENTILE, METADATA_KEY, measure_range


@dataclass
class FamiliarityConfig:
    """``python -m dovit.familiarity``'s flags (see its --help for each)."""

    checkpoint: str
    dataset: str = "camvid"
    data_root: str = DEFAULT_DATA_ROOT
    split: str = "train+val"
    sequences: list[str] | None = None
    max_images: int = 0
    threads: int | None = None
    dry_run: bool = False
    no_progress: bool = False



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
    add_data_flags(parser, split="train+val",
                   split_help="the split(s) the checkpoint trained on ('+' joins splits)")
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
        reference = measure_range(Predictor(model), (dataset[i][0] for i in indices),
                                  f"{source}, {len(indices)} frames",
                                  progress=not args.no_progress)
        print(f"mean dense confidence on {reference.source}: low {reference.low:.3f}, median "
              f"{reference.median:.3f}, high {reference.high:.3f}")
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
