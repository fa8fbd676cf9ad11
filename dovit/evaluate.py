"""python -m dovit.evaluate: mIoU / PA / mPA, GFLOPs and speed of a checkpoint at several xi."""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .flags import add_data_flags, add_process_flags, apply_threads
from .core.checkpoint import load_checkpoint
from .data import EvalTransform, build_dataset
from .core.flops import FLOPS_CONVENTION, forward_flops
from .metrics import ConfusionMatrix
from .core.model import DoViTSegmenter
from .core.preprocess import logits_to_mask


@dataclass
class EvaluateConfig:
    """``python -m dovit.evaluate``'s flags (see its --help for each)."""

    checkpoint: str | None = None
    dataset: str = "camvid"
    data_root: str = "../shared/data/camvid"
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


@dataclass
class XiEvaluation:
    """A checkpoint's scores and costs at one xi over a data set (``evaluate_model``); fractions in [0, 1]."""

    xi: float
    miou: float
    pa: float
    mpa: float
    per_class_iou: list[float | None]  # None: a class in neither labels nor predictions
    gflops: float  # mean per image, as Trace.flops
    dense_gflops: float
    backbone_gflops: float
    dense_backbone_gflops: float
    kept_fraction_per_group: list[float]
    throughput_img_s: float | None  # None when the images' sizes differ (or throughput_images is 0)
    throughput_batch: int
    fps: float
    latency_ms: float
    params_m: float
    images: int

    @property
    def backbone_flops_saved(self) -> float:
        return 1.0 - self.backbone_gflops / self.dense_backbone_gflops

    def to_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def evaluate_model(model: DoViTSegmenter, dataset, xi_values: list[float], max_images: int | None = None,
                   progress: bool = True, device: str | torch.device = "cpu", throughput_batch: int = 8,
                   throughput_images: int = 32) -> list[XiEvaluation]:
    """Evaluate ``model`` on ``dataset`` (items: normalised (3, h, w) tensor, (H, W) labels) at each xi.

    Returns an ``XiEvaluation`` per xi: miou, pa, mpa, per_class_iou, gflops / dense_gflops (mean per
    image), backbone_gflops / dense_backbone_gflops, kept_fraction per group, params, and measured speed:
    ``fps`` / ``latency_ms`` from batch-1 forwards over every image, ``throughput_img_s`` from forwards
    of ``throughput_batch`` images at a time over the first ``throughput_images`` (None when their
    sizes differ). In inference each image keeps its own tokens; a batch runs the model's batched token
    pass (kept tokens packed into padded, masked forwards, see ``DoViTSegmenter._run_group``), which gives
    every image its batch-1 result.
    """
    model.eval()
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    results = []
    for xi in xi_values:
        matrix = ConfusionMatrix(model.config.num_classes, model.config.ignore_index)
        totals = {"total": 0.0, "dense_total": 0.0, "backbone": 0.0, "dense_backbone": 0.0}
        kept = None
        seconds = 0.0
        batch_pool = []
        for index in tqdm(range(count), desc=f"xi={xi:g}", disable=not progress, leave=False):
            pixels, label = dataset[index]
            pixels = pixels.unsqueeze(0).to(device)
            if index < throughput_images:
                batch_pool.append(pixels)
            start = time.perf_counter()
            output = model(pixels, xi=xi)
            logits = output.logits
            seconds += time.perf_counter() - start
            matrix.update(logits_to_mask(logits, label.shape[-2:])[0], label)
            group_tokens = output.group_tokens[0].tolist()
            flops = forward_flops(model, output.grid, group_tokens, len(output.aux_logits))
            for key in totals:
                totals[key] += getattr(flops, key)
            fraction = np.array(group_tokens, dtype=np.float64) / (output.grid[0] * output.grid[1])
            kept = fraction if kept is None else kept + fraction
        scores = matrix.scores()
        fps = count / seconds
        results.append(XiEvaluation(
            xi=float(xi), **scores,
            gflops=totals["total"] / count / 1e9,
            dense_gflops=totals["dense_total"] / count / 1e9,
            backbone_gflops=totals["backbone"] / count / 1e9,
            dense_backbone_gflops=totals["dense_backbone"] / count / 1e9,
            kept_fraction_per_group=(kept / count).tolist(),
            throughput_img_s=_throughput(model, batch_pool, xi, throughput_batch),
            throughput_batch=throughput_batch,
            fps=fps,
            latency_ms=1000.0 / fps,
            params_m=sum(p.numel() for p in model.parameters()) / 1e6,
            images=count,
        ))
    return results


def _throughput(model: DoViTSegmenter, images: list[torch.Tensor], xi: float, batch: int) -> float | None:
    """Images per second through batched forwards of ``batch`` images at a time (None if sizes differ).

    images: (1, 3, H, W) tensors on the model's device. One untimed forward of the first batch first (lazy
    allocations, caches); on CUDA the clock stops after a synchronize, not at the last kernel launch.
    """
    if not images or len({tuple(image.shape) for image in images}) > 1:
        return None
    stacked = torch.cat(images)
    batches = list(stacked.split(batch))
    model(batches[0], xi=xi)
    synchronise(stacked.device)
    start = time.perf_counter()
    for pixels in batches:
        model(pixels, xi=xi)
    synchronise(stacked.device)
    return len(stacked) / (time.perf_counter() - start)


def synchronise(device: str | torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so that a clock read after it is true."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def markdown_table(results: list[XiEvaluation]) -> str:
    lines = [
        "| ξ | mIoU | PA | mPA | GFLOPs | dense GFLOPs | backbone GFLOPs saved | latency ms | FPS | throughput img/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        throughput = "n/a" if r.throughput_img_s is None else format(r.throughput_img_s, ".2f")
        lines.append(
            f"| {r.xi:g} | {100 * r.miou:.2f} | {100 * r.pa:.2f} | {100 * r.mpa:.2f} | {r.gflops:.2f} | "
            f"{r.dense_gflops:.2f} | {100 * r.backbone_flops_saved:.1f}% | {r.latency_ms:.1f} | {r.fps:.2f} | "
            f"{throughput} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> EvaluateConfig:
    parser = argparse.ArgumentParser(
        prog="python -m dovit.evaluate",
        description="Evaluate a DoViT checkpoint at one or more token-pass thresholds xi: mIoU, PA, mPA, "
        "per-class IoU, mean GFLOPs per image (and the dense forward's), params, FPS (batch 1) and "
        f"throughput (--throughput-batch images at a time), measured on this machine. {FLOPS_CONVENTION}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped CamVid DoViT model)")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_threads(args.threads)
    from .core.predictor import check_xi, default_checkpoint

    try:
        xi_values = [check_xi(v) for v in args.xi] if args.xi else None
        checkpoint = args.checkpoint or default_checkpoint()
        model = load_checkpoint(checkpoint).to(args.device)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    config = model.config
    xi_values = xi_values or sorted({config.default_xi, 1.0})
    size = tuple(args.input_size) if args.input_size else config.input_size
    try:
        dataset = build_dataset(args.dataset, args.data_root, args.split, EvalTransform(size, config.mean, config.std),
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
    print(f"{args.dataset} {args.split}" + (f" (recordings {' '.join(args.sequences)})" if args.sequences else "")
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
