"""A checkpoint at several xi over a labelled data set: mIoU / PA / mPA, GFLOPs, latency and throughput."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from ..core.flops import forward_flops
from ..core.model import DoViTSegmenter
from ..core.preprocess import logits_to_mask
from ..core.stopwatch import Stopwatch
from .metrics import ConfusionMatrix
from .timing import synchronise


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
            start = Stopwatch()
            output = model(pixels, xi=xi)
            logits = output.logits
            seconds += start.seconds()
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
    start = Stopwatch()
    for pixels in batches:
        model(pixels, xi=xi)
    synchronise(stacked.device)
    return len(stacked) / (start.seconds())




def markdown_table(results: list[XiEvaluation]) -> str:
    lines = [
        "| ξ | mIoU | PA | mPA | GFLOPs | dense GFLOPs | backbone GFLOPs saved | latency ms | FPS | "
        "throughput img/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        throughput = "n/a" if r.throughput_img_s is None else format(r.throughput_img_s, ".2f")
        lines.append(
            f"| {r.xi:g} | {100 * r.miou:.2f} | {100 * r.pa:.2f} | {100 * r.mpa:.2f} | {r.gflops:.2f} | "
            f"{r.dense_gflops:.2f} | {100 * r.backbone_flops_saved:.1f}% | {r.latency_ms:.1f} | {r.fps:.2f} "
            f"| {throughput} |"
        )
    return "\n".join(lines)
