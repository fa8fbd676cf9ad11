"""python -m dovit.evaluate: mIoU / PA / mPA, GFLOPs and speed of a checkpoint at several xi."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .cli.flags import add_data_flags, add_process_flags, apply_threads
from .core.checkpoint import load_checkpoint
from .core.flops import FLOPS_CONVENTION
from .data import DEFAULT_DATA_ROOT, EvalTransform, build_dataset
from .evaluation.xi_sweep import evaluate_model, markdown_table


@dataclass
class EvaluateConfig:
    """``python -m dovit.evaluate``'s flags (see its --help for each)."""

    checkpoint: str | None = None
    export: str | None = None
    dataset: str = "camvid"
    data_root: str = DEFAULT_DATA_ROOT
    split: str = "val"
    sequences: list[str] | None = None
    xi: list[float] | None = None
    max_images: int | None = None
    input_size: list[int] | None = None
    throughput_batch: int = 8
    throughput_images: int = 32
    threads: int | None = None
    device: str = "cpu"
    json: str | None = None


def parse_args(argv: list[str] | None = None) -> EvaluateConfig:
    parser = argparse.ArgumentParser(
        prog="python -m dovit.evaluate",
        description="Evaluate a DoViT checkpoint at one or more token-pass thresholds xi: mIoU, PA, mPA, "
        "per-class IoU, mean GFLOPs per image (and the dense forward's), params, FPS (batch 1) and "
        f"throughput (--throughput-batch images at a time), measured on this machine. {FLOPS_CONVENTION}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint directory (default: the shipped CamVid DoViT model)")
    parser.add_argument("--export", default=None, metavar="DIR",
                        help="evaluate an ONNX export (python -m dovit.export, fp32 or --quantize int8) on "
                             "ONNX Runtime instead of a checkpoint")
    add_data_flags(parser, split_help="split to evaluate ('+' joins splits: train+val)")
    parser.add_argument("--xi", type=float, nargs="+", default=None,
                        help="thresholds to evaluate (default: the checkpoint's default xi and 1.0)")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="working resolution (default: the checkpoint's input size)")
    parser.add_argument("--throughput-batch", type=int, default=8,
                        help="batch size of the throughput measurement (FPS is always batch 1)")
    parser.add_argument("--throughput-images", type=int, default=32,
                        help="images used for the throughput measurement (the first N)")
    add_process_flags(parser)
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    return EvaluateConfig(**vars(parser.parse_args(argv)))


def load_evaluated(checkpoint: str | Path, export: str | None, threads: int | None):
    """(what is evaluated, its model): the checkpoint, or the ONNX export run on ONNX Runtime."""
    if export is None:
        return str(checkpoint), load_checkpoint(checkpoint)
    from .deploy.onnx_runtime import OrtSegmenter

    if not Path(export).is_dir():
        raise ValueError(f"--export {export}: not a folder (python -m dovit.export writes one)")
    model = OrtSegmenter(export, threads=threads)
    return f"{export} ({model.runtime})", model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_threads(args.threads)
    from .core.predictor import check_xi, default_checkpoint

    try:
        xi_values = [check_xi(v) for v in args.xi] if args.xi else None
        checkpoint, model = load_evaluated(args.checkpoint or default_checkpoint(), args.export, args.threads)
        model = model.to(args.device)
    except (ValueError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    config = model.config
    xi_values = xi_values or sorted({config.default_xi, 1.0})
    size = tuple(args.input_size) if args.input_size else config.input_size
    try:
        dataset = build_dataset(args.dataset, args.data_root, args.split, EvalTransform(size, config.mean,
                                                                                        config.std),
                                sequences=args.sequences)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if dataset.info.num_classes != config.num_classes:
        # Labels the model cannot predict would be dropped from the metrics without a word.
        print(f"error: the checkpoint predicts {config.num_classes} classes, {args.dataset} has "
              f"{dataset.info.num_classes}", file=sys.stderr)
        return 2
    results = evaluate_model(model, dataset, xi_values, args.max_images, device=args.device,
                             throughput_batch=args.throughput_batch, throughput_images=args.throughput_images)
    print(f"{args.dataset} {args.split}" + (f" (recordings {' '.join(args.sequences)})" if args.sequences
                                            else "")
          + f", {results[0].images} images at {size[0]}x{size[1]}, "
          f"{results[0].params_m:.2f} M params; {FLOPS_CONVENTION}")
    print(markdown_table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"checkpoint": str(checkpoint),
                                               "dataset": args.dataset, "split": args.split,
                                               "sequences": args.sequences,
                                               "input_size": list(size), "flops_convention": FLOPS_CONVENTION,
                                               "results": [r.to_dict() for r in results]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
