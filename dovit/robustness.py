"""python -m dovit.robustness: mIoU under the shifts street photos have, per severity and xi (the benchmark
itself: ``dovit.evaluation.shifts``). Parses the flags into a ``RobustnessConfig``, runs it, prints and writes
JSON.
"""
from __future__ import annotations

from dataclasses import dataclass

from .cli.flags import add_data_flags, add_process_flags, apply_threads
from .core.predictor import Predictor, check_xi
from .data.augment import HELD_OUT_SHIFTS
from .evaluation.shifts import SEVERITIES, SHIFTS, markdown_table, run_robustness, shift_table


# ---------------------------------------------------------------------------------------- command line
@dataclass
class RobustnessConfig:
    checkpoint: str | None
    dataset: str
    data_root: str
    split: str
    sequences: list[str] | None
    max_images: int | None
    xi: list[float] | None
    shifts: list[str] | None
    severities: list[int]
    frame_step: int
    seed: int
    threads: int | None
    json: str | None
    progress: bool


def parse_args(argv: list[str] | None = None) -> RobustnessConfig:
    import argparse


    parser = argparse.ArgumentParser(
        prog="python -m dovit.robustness",
        description="Robustness benchmark (the Cityscapes-C protocol for any labelled split): mIoU of a "
                    "checkpoint on clean frames and on the same frames under each shift street photos have "
                    "(ImageNet-C's noise, blur, weather and digital families, and camera colour shifts) at "
                    "severities 1-5, with the FLOPs the token pass saved, at each xi. Prints tables and "
                    "writes JSON. Shifts no training preset draws are reported apart (held out: "
                    f"{', '.join(HELD_OUT_SHIFTS)}). Seeded: the same flags give the same numbers.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--checkpoint", default=None, help="checkpoint directory (default: the shipped CamVid DoViT student)")
    add_data_flags(parser, split_help="split to score ('+' joins splits: train+val)")
    add("--max-images", type=int, default=20,
        help="score the first N frames (each costs 1 + shifts x severities forwards per xi); 0 = all")
    add("--xi", type=float, nargs="+", default=None,
        help="thresholds (default: the checkpoint's default and 1)")
    add("--shifts", nargs="+", default=None, choices=list(SHIFTS), metavar="SHIFT",
        help=f"shifts to apply (default: all {len(SHIFTS)}: {', '.join(SHIFTS)})")
    add("--severities", type=int, nargs="+", default=list(SEVERITIES), choices=list(SEVERITIES),
        help="severities to apply")
    add("--frame-step", type=int, default=5,
        help="score every K-th frame (neighbouring video frames look alike), at most --max-images of them")
    add("--seed", type=int, default=0, help="seed of the random parts of the shifts (noise, snow, gains)")
    add_process_flags(parser, device=False)
    add("--json", default=None, help="write the results to this JSON file")
    add("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.max_images is not None and args.max_images < 0:
        parser.error(f"--max-images must be 0 (all) or more, got {args.max_images}")
    return RobustnessConfig(args.checkpoint, args.dataset, args.data_root, args.split, args.sequences,
                            args.max_images or None, args.xi, args.shifts, sorted(set(args.severities)),
                            args.frame_step, args.seed,
                            args.threads, args.json, not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    import json
    import sys
    from pathlib import Path

    from .core.checkpoint import CheckpointError
    from .core.flops import FLOPS_CONVENTION
    from .data import build_dataset

    config = parse_args(argv)
    apply_threads(config.threads)
    try:
        predictor = Predictor.from_checkpoint(config.checkpoint)
        xi_values = [check_xi(v) for v in config.xi] if config.xi else sorted({predictor.default_xi, 1.0})
        dataset = build_dataset(config.dataset, config.data_root, config.split, sequences=config.sequences)
        if dataset.info.num_classes != predictor.config.num_classes:
            raise ValueError(f"the checkpoint predicts {predictor.config.num_classes} classes, "
                             f"{config.dataset} has {dataset.info.num_classes}")
        results = run_robustness(predictor, dataset, xi_values, config.shifts, config.severities,
                                 config.max_images,
                                 config.seed, config.progress, config.frame_step)
    except (ValueError, OSError, CheckpointError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    frames = len(list(range(0, len(dataset), config.frame_step))[:config.max_images])
    where = f"{config.dataset} {config.split}" + (f" ({' '.join(config.sequences)})" if config.sequences
                                                  else "")
    print(f"{where}, {frames} frames, {len(results[0].scores)} shifted conditions; mIoU in %; "
          f"{FLOPS_CONVENTION}")
    print(markdown_table(results))
    for result in results:
        print(f"\nξ = {result.xi:g}, mIoU per shift and severity:")
        print(shift_table(result))
    if config.json:
        Path(config.json).parent.mkdir(parents=True, exist_ok=True)
        Path(config.json).write_text(json.dumps({
            "checkpoint": str(config.checkpoint or "shipped student"), "dataset": config.dataset,
            "split": config.split, "sequences": config.sequences, "frames": frames,
            "frame_step": config.frame_step, "seed": config.seed,
            "severities": config.severities, "held_out_shifts": list(HELD_OUT_SHIFTS),
            "results": [r.to_dict() for r in results]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
