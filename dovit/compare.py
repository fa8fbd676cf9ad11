"""python -m dovit.compare: stopping policies at matched FLOPs budgets on a labelled set (the comparison
itself: ``dovit.evaluation.policy_scores``). Parses the flags, runs it, prints the table and writes JSON and
the figure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .cli.flags import add_data_flags, add_process_flags, apply_threads
from .core.checkpoint import CheckpointError
from .core.flops import FLOPS_CONVENTION
from .core.policies import DTOP_K, POLICIES, check_budget
from .core.predictor import Predictor, default_checkpoint
from .data import DEFAULT_DATA_ROOT, build_dataset
from .evaluation.policy_scores import BUDGET_DEFINITION, MATCH_MODES, compare_policies, figure, markdown_table
from .report.analysis import labelled_frames


@dataclass
class CompareConfig:
    """``python -m dovit.compare``'s flags (see its --help for each)."""

    checkpoint: str | None = None
    dataset: str = "camvid"
    data_root: str = DEFAULT_DATA_ROOT
    split: str = "val"
    sequences: list[str] | None = None
    budgets: list[float] = field(default_factory=lambda: [0.4, 0.5, 0.6])
    policies: list[str] = field(default_factory=lambda: ["confidence", "random", "topk", "dtop", "oracle",
                                                         "shallow"])
    match: str = "set"
    max_images: int | None = None
    seed: int = 0
    dtop_k: int = 5
    threads: int | None = None
    device: str = "cpu"
    json: str | None = None
    md: str | None = None
    html: str | None = None


def parse_args(argv: list[str] | None = None) -> CompareConfig:
    parser = argparse.ArgumentParser(
        prog="python -m dovit.compare",
        description="Compare token stopping policies (" + ", ".join(POLICIES)
        + ") of one DoViT checkpoint at "
        "matched FLOPs on a labelled data set: per policy and budget, mIoU, agreement with the dense model, "
        "measured latency (median) and mean GFLOPs with its ratio to the budget. Every policy but shallow is "
        "searched per image to within 2 % of the budget; shallow takes the nearest cut. "
        f"{BUDGET_DEFINITION}. {FLOPS_CONVENTION}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint directory (default: the shipped CamVid DoViT student)")
    add_data_flags(parser, split_help="split to compare on ('+' joins splits: train+val)")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.4, 0.5, 0.6],
                        help="FLOPs budgets, fractions in (0, 1] of the dense forward's GFLOPs")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES, metavar="POLICY",
                        help="policies to run, from: " + " ".join(POLICIES))
    parser.add_argument("--match", choices=MATCH_MODES, default="set",
                        help="set: each threshold policy (confidence, random, dtop, oracle) runs one knob "
                             "value for the whole set, chosen so that the mean GFLOPs meet the budget (costs "
                             "follow content, as deployed); image: the knob is searched per image, so every "
                             "image meets the budget")
    parser.add_argument("--max-images", type=int, default=None, help="use only the first N images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random policy")
    parser.add_argument("--dtop-k", type=int, default=DTOP_K,
                        help="tokens of each class the dtop policy keeps running for context")
    add_process_flags(parser)
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    parser.add_argument("--md", default=None, help="write the markdown table to this file")
    parser.add_argument("--html", default=None, help="write the mIoU-against-GFLOPs chart to this HTML file "
                        "(self-contained: plotly.js inlined)")
    return CompareConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_threads(args.threads)
    try:
        budgets = [check_budget(b) for b in args.budgets]
        if args.max_images is not None and args.max_images < 1:
            raise ValueError(f"--max-images must be at least 1, got {args.max_images}")
        checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
        predictor = Predictor.from_checkpoint(checkpoint, device=args.device)
        dataset = build_dataset(args.dataset, args.data_root, args.split, sequences=args.sequences)
        if dataset.info.num_classes != predictor.config.num_classes:
            raise ValueError(f"the checkpoint predicts {predictor.config.num_classes} classes, "
                             f"{args.dataset} has {dataset.info.num_classes}")
    except (ValueError, CheckpointError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    count = len(dataset) if args.max_images is None else min(args.max_images, len(dataset))
    load_before = _load_average()
    dense, rows = compare_policies(predictor, labelled_frames(dataset, args.max_images), budgets,
                                   args.policies,
                                   args.seed, args.dtop_k, args.match, total=count)
    what = (f"{args.dataset} {args.split}" + (f" (recordings {' '.join(args.sequences)})" if args.sequences
                                              else "")
            + f", {count} images at {predictor.config.input_size[0]}x{predictor.config.input_size[1]}, "
            f"budgets matched per {args.match}")
    table = markdown_table(dense, rows)
    print(f"{what}; {BUDGET_DEFINITION}; {FLOPS_CONVENTION}")
    print(table)
    missed = [f"{r.policy} at {r.budget:g}" for r in rows if r.policy != "shallow" and not r.within_budget]
    if missed:
        print(f"note: outside 2% of the budget: {', '.join(missed)}")
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": args.device,
               "load_average_before": load_before, "load_average_after": _load_average()}
    if args.json:
        _write(args.json, json.dumps({
            "checkpoint": str(checkpoint), "dataset": args.dataset, "split": args.split,
            "sequences": args.sequences,
            "images": count, "input_size": list(predictor.config.input_size), "budgets": budgets,
            "policies": list(args.policies), "seed": args.seed, "dtop_k": args.dtop_k, "match": args.match,
            "budget_definition": BUDGET_DEFINITION, "flops_convention": FLOPS_CONVENTION, "machine": machine,
            "dense": asdict(dense), "results": [asdict(r) for r in rows]}, indent=2) + "\n")
    if args.md:
        _write(args.md, f"{what}.\n\n{table}\n")
    if args.html:
        Path(args.html).parent.mkdir(parents=True, exist_ok=True)
        figure(dense, rows, f"Stopping policies at matched FLOPs: {what}").write_html(args.html,
                                                                                      include_plotlyjs=True)
    return 0


def _write(path: str, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none): timings depend on them."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
