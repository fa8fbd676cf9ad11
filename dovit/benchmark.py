"""python -m dovit.benchmark: wall time of dense vs token-pass forwards, against their FLOPs ratio.

For each case the kept fraction after the first decision is forced (random tokens, fixed seed, kept to the
end), so the measurement isolates how well fewer FLOPs turn into less time: efficiency = speedup /
ideal_speedup, where ideal_speedup = dense FLOPs / dynamic FLOPs (aux heads and decoder included).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from .flops import FLOPS_CONVENTION, forward_flops
from .model import build_model

CASES = (("vit_tiny_patch16_224", (360, 480)), ("vit_small_patch16_224", (512, 1024)))
KEPT_FRACTIONS = (0.75, 0.5, 0.25)


def _median_ms(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def forced_masks(num_decisions: int, num_tokens: int, fraction: float, seed: int = 0) -> list[torch.Tensor]:
    """D identical masks keeping round(fraction * N) random tokens from the first decision on."""
    generator = torch.Generator().manual_seed(seed)
    keep = torch.zeros(1, num_tokens, dtype=torch.bool)
    keep[0, torch.randperm(num_tokens, generator=generator)[: round(fraction * num_tokens)]] = True
    return [keep] * num_decisions


@torch.inference_mode()
def run_case(backbone: str, size: tuple[int, int], fractions=KEPT_FRACTIONS, warmup: int = 3,
             repeats: int = 10) -> list[dict]:
    torch.manual_seed(0)
    model = build_model(backbone, num_classes=19, input_size=size).eval()
    pixels = torch.randn(1, 3, *size)
    grid = model.prefix(pixels).grid
    num_tokens = grid[0] * grid[1]
    dense_flops = forward_flops(model, grid, [num_tokens] * len(model.group_bounds), 0)["total"]
    dense_ms = _median_ms(lambda: model(pixels, xi=1.0), warmup, repeats)
    rows = []
    for fraction in fractions:
        masks = forced_masks(len(model.decision_layers), num_tokens, fraction)
        output = model(pixels, xi=0.0, forced_keep=masks)
        dynamic_flops = forward_flops(model, grid, output.group_tokens[0].tolist(), len(output.aux_logits))["total"]
        dynamic_ms = _median_ms(lambda: model(pixels, xi=0.0, forced_keep=masks), warmup, repeats)
        speedup, ideal = dense_ms / dynamic_ms, dense_flops / dynamic_flops
        rows.append({
            "backbone": backbone, "input": f"{size[0]}x{size[1]}", "kept_fraction": fraction,
            "dense_gflops": dense_flops / 1e9, "dynamic_gflops": dynamic_flops / 1e9,
            "dense_ms": dense_ms, "dynamic_ms": dynamic_ms, "speedup": speedup, "ideal_speedup": ideal,
            "efficiency": speedup / ideal,
        })
    return rows


def machine_description() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def format_table(rows: list[dict]) -> str:
    lines = ["| backbone | input | kept | dense GFLOPs | dynamic GFLOPs | dense ms | dynamic ms | speedup | ideal | efficiency |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backbone']} | {r['input']} | {r['kept_fraction']:.0%} | {r['dense_gflops']:.2f} | "
                     f"{r['dynamic_gflops']:.2f} | {r['dense_ms']:.1f} | {r['dynamic_ms']:.1f} | "
                     f"{r['speedup']:.2f}x | {r['ideal_speedup']:.2f}x | {r['efficiency']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dovit.benchmark",
        description="Time dense vs token-pass forwards (batch 1, random init, median of repeats after warm-up) for "
        "ViT-T at 360x480 and ViT-S at 512x1024 with 75/50/25%% of tokens kept after the first decision; "
        f"report speedup, ideal speedup (dense/dynamic FLOPs) and efficiency. {FLOPS_CONVENTION}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats per forward (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up forwards")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="ViT-T case only")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for backbone, size in CASES[:1] if args.quick else CASES:
        rows += run_case(backbone, size, warmup=args.warmup, repeats=args.repeats)
    machine = machine_description()
    print(f"Machine: {machine}\n{FLOPS_CONVENTION}\n")
    print(format_table(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": machine, "flops_convention": FLOPS_CONVENTION,
                                               "cases": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
