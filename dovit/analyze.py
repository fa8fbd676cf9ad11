"""python -m dovit.analyze: the data-set report on a folder or video (the analysis itself:
``dovit.report.analysis``).

Parses the flags, splits the frames over torchrun's processes, runs ``dovit.report.analysis.analyse_frames``,
merges the counts on rank 0 and writes report.html, report.json and frames.csv.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from .cli.flags import add_process_flags, apply_threads
from .core.flops import FLOPS_CONVENTION
from .core.predictor import Predictor, check_xi
from .core.stopwatch import Stopwatch
from .report.analysis import (
    DEFAULT_XI_GRID,
    SPLIT_FOLDER_DEPTH,
    ReportAccumulator,
    analyse_frames,
    open_input,
    report_line,
)
from .report.html import write_report
from .viz.video import write_records_csv


@dataclass
class AnalyzeConfig:
    """``python -m dovit.analyze``'s flags (see its --help for each)."""

    input: str
    out: str
    labels: str | None = None
    dataset: str | None = None
    checkpoint: str | None = None
    xi: float | None = None
    xi_grid: list[float] = field(default_factory=lambda: [0.8, 0.85, 0.9, 0.95, 0.98, 1.0])
    max_images: int | None = None
    max_side: int | None = None
    thumbnails: int = 4
    threads: int | None = None
    device: str = "cpu"
    no_progress: bool = False


def gather(accumulator: ReportAccumulator, rank: int, world: int) -> ReportAccumulator | None:
    """Under torchrun: every rank's accumulator merged on rank 0 (None on the others)."""
    if world == 1:
        return accumulator
    shards = [None] * world if rank == 0 else None
    dist.gather_object(accumulator, shards, dst=0)
    if rank != 0:
        return None
    for shard in shards[1:]:
        accumulator.merge(shard)
    return accumulator


def _process_group() -> tuple[int, int]:
    """(rank, world size): under torchrun a gloo group (it only gathers the counts), else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def parse_args(argv: list[str] | None = None) -> AnalyzeConfig:
    parser = argparse.ArgumentParser(
        prog="python -m dovit.analyze",
        description="A report on a folder of images or a video: per-image GFLOPs (histogram, cheapest and "
                    "most expensive images), kept fraction per decision layer, halting depth per class; with "
                    "labels, aux-head calibration per decision layer (reliability, ECE) and the error of the "
                    "tokens each decision stopped; mIoU and agreement with dense against GFLOPs over a xi "
                    "grid. Writes report.html (self-contained), report.json and frames.csv. Under `torchrun "
                    "--nproc_per_node K` the frames are split over K processes and their counts merged "
                    f"exactly. {FLOPS_CONVENTION}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--input", required=True, help="a folder of images (sorted by name) or a video file")
    parser.add_argument("--labels", default=None,
                        help="folder of same-stem PNG label images (255 = void); with --dataset, the "
                             "layout's label folder (optional)")
    parser.add_argument("--dataset", choices=sorted(SPLIT_FOLDER_DEPTH) + ["folders"], default=None,
                        help="read --input as this data set's split folder (e.g. ../shared/data/camvid/val), "
                             "labels from its layout mapped to train ids (CamVid's void 11 ignored)")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint directory (default: the shipped CamVid DoViT model)")
    parser.add_argument("--xi", type=float, default=None,
                        help="the report's threshold (default: the checkpoint's)")
    parser.add_argument("--xi-grid", type=float, nargs="+", default=list(DEFAULT_XI_GRID),
                        help="thresholds of the trade-off curve (1.0, the dense model, is always added)")
    parser.add_argument("--max-images", type=int, default=None,
                        help="analyse only the first N images or frames")
    parser.add_argument("--max-side", type=int, default=None,
                        help="shrink unlabelled frames whose longer side exceeds this (video)")
    parser.add_argument("--thumbnails", type=int, default=4, help="cheapest and most expensive images shown")
    add_process_flags(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--out", required=True, help="report folder (created)")
    return AnalyzeConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_threads(args.threads)
    started = Stopwatch()
    rank, world = _process_group()
    try:
        xi_grid = [check_xi(v) for v in args.xi_grid]
        predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
        xi = predictor.default_xi if args.xi is None else check_xi(args.xi)
        frames, total, what = open_input(args.input, args.labels, args.dataset, predictor.config.class_names,
                                         args.max_images, args.max_side, rank, world)
        has_labels = args.labels is not None or args.dataset not in (None, "folders")
        if rank == 0:
            print(f"analysing {what} at xi {xi:g}, grid "
                  f"{' '.join(f'{v:g}' for v in sorted(set(xi_grid) | {1.0}))}"
                  + (f", {world} processes" if world > 1 else ""), file=sys.stderr)
        shard_total = None if total is None else len(range(rank, total, world))
        accumulator = gather(analyse_frames(predictor, frames, xi, xi_grid, has_labels, shard_total,
                                            args.thumbnails,
                                     progress=not args.no_progress and rank == 0), rank, world)
        if accumulator is None:  # another rank writes the report
            return 0
        if not accumulator.records:
            raise ValueError(f"no frames to analyse in {args.input}")
    except (ValueError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    summary = accumulator.summary()
    summary.update({"checkpoint": str(args.checkpoint or "shipped"), "input": str(args.input),
                    "labels": args.labels, "dataset": args.dataset, "processes": world,
                    "seconds": started.seconds(), "threads": torch.get_num_threads()})
    out = Path(args.out)
    write_report(out, summary, accumulator.ranked_thumbnails())
    write_records_csv(accumulator.records, out / "frames.csv")
    print(report_line(summary))
    print(f"wrote {out / 'report.html'}, {out / 'report.json'}, {out / 'frames.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
