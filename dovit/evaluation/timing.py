"""Measuring time fairly: interleaved rounds, per-round ratios, forced kept fractions, the machine's
description.

Shared by ``dovit.benchmark`` and ``dovit.deploy.onnx_runtime.compare_runtimes``. The variants of a case run
one after another within each round (A B A B ...), and ratios are taken within a round, so a change of machine
load between rounds cancels out.
"""
from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
from pathlib import Path

import torch

from ..core.stopwatch import Stopwatch

# --dtype: float32 runs as is; the others run the forwards under torch.autocast (CPU autocast has no float16).
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def synchronise(device: str | torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so that a clock read after it is true."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(variants: dict, warmup: int, rounds: int,
                      device: torch.device) -> dict[str, list[float]]:
    """Milliseconds of each variant (name -> callable) in each of ``rounds`` rounds, the variants timed one
    after another within a round (A B C A B C ...), after ``warmup`` untimed rounds."""
    device = torch.device(device)
    times = {name: [] for name in variants}
    for round_index in range(warmup + rounds):
        for name, fn in variants.items():
            synchronise(device)
            start = Stopwatch()
            fn()
            synchronise(device)
            if round_index >= warmup:
                times[name].append(start.ms())
    return times


def autocast(device: str | torch.device, dtype: str = "float32"):
    """The context the timed forwards run in: ``torch.autocast`` on the device's type at ``dtype`` (a DTYPES
    name), matrix products and convolutions in that precision, weights kept float32; none for float32."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[dtype])


def release_memory(device: str | torch.device) -> None:
    """Return the memory of a finished case (its model, inputs and outputs unreferenced) before the next one:
    on cuda the caching allocator keeps it otherwise, and ViT-B at batch 32 after ViT-T could run out."""
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def ratio_summary(numerator: list[float], denominator: list[float]) -> dict:
    """Per-round ratios numerator[i] / denominator[i]: median, min and max."""
    ratios = [a / b for a, b in zip(numerator, denominator, strict=False)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def forced_masks(num_decisions: int, num_tokens: int, fraction: float, seed: int = 0,
                 batch: int = 1) -> list[torch.Tensor]:
    """D identical masks (batch, N) keeping round(fraction * N) random tokens per image (each image its own
    tokens, the same count) from the first decision on."""
    generator = torch.Generator().manual_seed(seed)
    keep = torch.zeros(batch, num_tokens, dtype=torch.bool)
    for row in range(batch):
        keep[row, torch.randperm(num_tokens, generator=generator)[: round(fraction * num_tokens)]] = True
    return [keep] * num_decisions


def machine_description(device: str | torch.device = "cpu") -> str:
    """CPU, cores, torch and its threads, Python, the load average, and the card's name on cuda."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    card = f", GPU {torch.cuda.get_device_name(device)}" if torch.device(device).type == "cuda" else ""
    return (f"{cpu}, {os.cpu_count()} logical cores{card}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}, load average {load}")
