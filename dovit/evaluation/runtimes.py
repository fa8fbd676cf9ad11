"""``python -m dovit.benchmark --runtime int8``: PyTorch fp32, ONNX Runtime fp32 and ONNX Runtime int8, dense
(xi = 1) and DoViT (the checkpoint's default xi), batch 1 on held-back frames, all six timed interleaved
(A B C D E F A B ...). Per runtime: median ms per image with the spread (min-max) over rounds, frames per
second, the ideal FLOPs ratio (dense / DoViT FLOPs of that runtime's own kept tokens) and the efficiency
eta = (dense time / DoViT time, per round) / ideal. Also each runtime's DoViT speedup over PyTorch fp32 DoViT
and its mask agreement with PyTorch fp32.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

RUNTIMES = ("PyTorch fp32", "ORT fp32", "ORT int8")


@dataclass
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def __str__(self) -> str:
        return f"{self.median:.2f} ({self.low:.2f}–{self.high:.2f})"


@dataclass
class RuntimeTiming:
    runtime: str
    dense_ms: Spread  # per image
    dovit_ms: Spread
    speedup: Spread  # dense / DoViT time, per round
    ideal: float  # dense / DoViT FLOPs
    kept: float  # share of patch tokens kept to the last group
    agreement: float  # DoViT mask pixels equal to PyTorch fp32 DoViT's
    over_pytorch: Spread  # PyTorch fp32 DoViT time / this DoViT time, per round

    @property
    def efficiency(self) -> float:
        return self.speedup.median / self.ideal

    @property
    def fps(self) -> float:
        return 1000.0 / self.dovit_ms.median


@dataclass
class Int8Comparison:
    machine: str
    threads: int
    checkpoint: str
    frames: int
    size: tuple[int, int]
    xi: float
    rounds: int
    timings: list[RuntimeTiming] = field(default_factory=list)

    def to_json(self) -> dict:
        document = asdict(self)
        for row, timing in zip(document["timings"], self.timings, strict=True):
            row.update(efficiency=timing.efficiency, fps=timing.fps)
        return document


def time_runtimes(
    models: dict, frames: torch.Tensor, xi: float, warmup: int, repeats: int
) -> dict[str, list]:
    """ms per round of each runtime's dense and DoViT forwards over ``frames``, batch 1, interleaved."""
    from .timing import interleaved_times

    variants = {}
    for name, model in models.items():
        for label, value in (("dense", 1.0), ("dovit", xi)):
            variants[f"{name} {label}"] = lambda model=model, value=value: [
                model(f[None], xi=value) for f in frames
            ]
    with torch.inference_mode():
        return interleaved_times(variants, warmup, repeats, torch.device("cpu"))


def measure(models: dict, frames: torch.Tensor, xi: float, times: dict[str, list]) -> list[RuntimeTiming]:
    """RuntimeTiming per runtime from ``times`` and one more pass for kept tokens and masks."""
    from ..core.flops import forward_flops

    reference = None
    rows = []
    count = len(frames)
    for name, model in models.items():
        with torch.inference_mode():
            outputs = [model(f[None], xi=xi) for f in frames]
        masks = [o.logits.argmax(1) for o in outputs]
        reference = reference or masks
        flops = [forward_flops(model, o.grid, o.group_tokens[0].tolist(), len(o.aux_logits)) for o in outputs]
        tokens = outputs[0].grid[0] * outputs[0].grid[1]
        dense, dovit, first = times[f"{name} dense"], times[f"{name} dovit"], times[f"{RUNTIMES[0]} dovit"]
        rows.append(
            RuntimeTiming(
                name,
                Spread.of([t / count for t in dense]),
                Spread.of([t / count for t in dovit]),
                Spread.of([a / b for a, b in zip(dense, dovit, strict=True)]),
                statistics.mean(f.dense_total for f in flops) / statistics.mean(f.total for f in flops),
                statistics.mean(float(o.group_tokens[0, -1]) / tokens for o in outputs),
                statistics.mean(float((a == b).float().mean())
                                for a, b in zip(masks, reference, strict=True)),
                Spread.of([a / b for a, b in zip(first, dovit, strict=True)]),
            )
        )
    return rows


def format_comparison(result: Int8Comparison) -> str:
    lines = [
        f"{result.checkpoint}: {result.frames} held-back frames at {result.size[0]}x{result.size[1]}, "
        f"batch 1, "
        f"xi {result.xi:g}, {result.threads} threads, {result.rounds} interleaved rounds; median (min–max)",
        "| runtime | dense ms | DoViT ms | DoViT fps | kept | ideal | dense/DoViT | η "
        "| vs PyTorch fp32 DoViT "
        "| mask agreement |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for t in result.timings:
        lines.append(
            f"| {t.runtime} | {t.dense_ms} | {t.dovit_ms} | {t.fps:.1f} | {t.kept:.1%} | {t.ideal:.2f}x | "
            f"{t.speedup} | {t.efficiency:.2f} | {t.over_pytorch}x | {t.agreement:.2%} |"
        )
    return "\n".join(lines)


def run_comparison(
    checkpoint: str,
    data_root: str,
    frame_count: int,
    threads: int | None,
    warmup: int,
    repeats: int,
    export: str | None = None,
    int8_export: str | None = None,
) -> Int8Comparison:
    """Export what is not given (fp32, int8) into a scratch folder; time and measure the three."""
    from ..core.checkpoint import load_checkpoint
    from ..deploy.onnx_graphs import ExportConfig, export_onnx
    from ..deploy.onnx_runtime import OrtSegmenter
    from ..deploy.quantize import QuantizeConfig, export_int8
    from .benchmark_cases import load_frames
    from .timing import machine_description

    model = load_checkpoint(checkpoint).eval()
    frames = load_frames(data_root, frame_count, model)  # val: frames the int8 ranges never saw
    xi = float(model.config.default_xi)
    with tempfile.TemporaryDirectory() as scratch:
        if export is None:
            export = str(
                export_onnx(ExportConfig(checkpoint, f"{scratch}/fp32", check=False), progress=False).output
            )
        if int8_export is None:
            int8_export = f"{scratch}/int8"
            export_int8(
                ExportConfig(checkpoint, int8_export, check=False),
                QuantizeConfig(data_root=data_root),
                progress=False,
            )
        models = {
            RUNTIMES[0]: model,
            RUNTIMES[1]: OrtSegmenter(export, threads=threads),
            RUNTIMES[2]: OrtSegmenter(int8_export, threads=threads),
        }
        times = time_runtimes(models, frames, xi, warmup, repeats)
        rows = measure(models, frames, xi, times)
    return Int8Comparison(
        machine_description(),
        torch.get_num_threads(),
        checkpoint,
        frame_count,
        tuple(frames.shape[-2:]),
        xi,
        repeats,
        rows,
    )


def int8_comparison(args) -> int:
    """``--runtime int8``: run, print and write --json."""
    from ..core.predictor import default_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_comparison(
        args.checkpoint or str(default_checkpoint()),
        args.data_root,
        args.frames,
        args.threads,
        args.warmup,
        args.repeats,
        args.export,
        args.int8_export,
    )
    print(f"Machine: {result.machine}\n")
    print(format_comparison(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 0
