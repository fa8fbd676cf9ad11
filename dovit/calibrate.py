"""python -m dovit.calibrate: label-free DoViT from a dense checkpoint (the algorithm:
``dovit.training.calibration``).

Parses the flags into a ``CalibrateConfig``, runs ``dovit.training.calibration.calibrate`` and prints its
curve and pick.
"""
from __future__ import annotations

from .cli.flags import apply_threads
from .core.stopwatch import Stopwatch
from .training.calibration import TRAINABLE, CalibrateConfig, CalibrationError, calibrate


# ---------------------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None = None) -> tuple[CalibrateConfig, int | None]:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m dovit.calibrate",
        description="Turn a dense checkpoint (trained here or imported with dovit.convert) into a DoViT "
                    "checkpoint from unlabelled images only: the aux heads (and, if asked, the decoder and "
                    "norms) learn the dense model's own predictions, then a default xi is picked on the last "
                    "eighth of the images (in name order), held back from training: the largest FLOPs cut "
                    "whose masks agree with the dense model's on --target-agreement of the pixels. With "
                    "--train aux xi = 1 is exactly the dense model. Fits --minutes of training, saves its "
                    "state every 30 s for --resume, and refuses (exit 2, one line) what it cannot use.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("source", help="the dense checkpoint directory")
    add("output", help="folder for the calibrated checkpoint (its state for --resume sits beside it)")
    add("--images", required=True, help="folder of unlabelled images (searched recursively), at least 2")
    add("--minutes", type=float, default=18.0,
        help="training wall time (choosing xi takes about 1-2 more minutes)")
    add("--train", choices=TRAINABLE, default="aux+decoder",
        help="what trains: aux heads only (xi = 1 stays exactly the dense model, but the dense decoder "
             "misreads tokens that stopped early), plus the decoder (measured best: docs/results/calibrate), "
             "plus the backbone's LayerNorms")
    add("--decision-layers", type=int, nargs="+", default=None,
        help="blocks after which a decision runs (default: every second block from a quarter of the depth to "
        "three quarters, 3 5 7 9 for 12 blocks: measured better than the paper's 3 6 9 for calibration, "
        "docs/results/calibrate); aux heads at other layers than the checkpoint's start new")
    add("--target-agreement", type=float, default=0.97,
        help="least pixel agreement with the dense masks for the default xi")
    add("--batch-size", type=int, default=4, help="images per step")
    add("--lr", type=float, default=1e-3,
        help="peak learning rate (AdamW, warm-up then cosine over --minutes)")
    add("--finetune-lr-scale", type=float, default=0.1,
        help="the decoder's and norms' learning rate as a share of --lr (they are trained already; the aux "
             "heads are new)")
    add("--xi-range", type=float, nargs=2, default=[0.8, 1.0], metavar=("LO", "HI"),
        help="with the decoder training: the token pass's xi drawn per step from [LO, HI] (1 on a quarter of "
             "steps)")
    add("--max-images", type=int, default=None, help="use the first N images (sorted by path)")
    add("--seed", type=int, default=0, help="seed of the crops, flips and xi draws")
    add("--colour-shifts", action="store_true",
        help="also colour and camera shifts on the training crops (dovit.data.augment.robust_photometric), "
        "labelled by the dense model: for photos under other skies and cameras than the calibration images")
    add("--threads", type=int, default=None, help="torch CPU threads")
    add("--resume", action="store_true", help="continue the run whose state sits beside OUTPUT")
    add("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    low, high = args.xi_range
    if not 0.0 <= low <= high <= 1.0:
        parser.error(f"--xi-range needs 0 <= LO <= HI <= 1, got {args.xi_range}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    config = CalibrateConfig(args.source, args.output, args.images, args.minutes, args.train,
                             tuple(args.decision_layers) if args.decision_layers else None,
                             args.target_agreement,
                             args.batch_size, args.lr, args.finetune_lr_scale, (low, high), args.max_images,
                             args.seed, args.colour_shifts, args.resume,
                             not args.no_progress)
    return config, args.threads


def main(argv: list[str] | None = None) -> int:
    import sys

    config, threads = parse_args(argv)
    apply_threads(threads)
    start = Stopwatch()
    try:
        result = calibrate(config)
    except CalibrationError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(f"calibrated {config.source} -> {result.output}: {result.steps} steps in {result.seconds / 60:.1f} "
          f"min on {result.train_images} images ({config.train}); {start.seconds() / 60:.1f} min in all")
    print("| ξ | agreement with dense | FLOPs saved |\n|---|---|---|")
    for point in result.curve:
        mark = " ← default" if point.xi == result.default_xi else ""
        print(f"| {point.xi:g} | {100 * point.agreement:.2f}% | {100 * point.flops_saved:.1f}%{mark} |")
    print(f"default xi {result.default_xi:g} (agreement target {100 * config.target_agreement:.1f}%, "
          f"measured on {result.held_out_images} held-back images)")
    if result.default_xi == 1.0:
        print("note: no xi below 1 reached the agreement target, so the default runs the dense model; "
              "calibrate longer (--minutes), on more images, or lower --target-agreement")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
