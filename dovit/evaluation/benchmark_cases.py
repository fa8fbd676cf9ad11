"""Speed cases of ``python -m dovit.benchmark``: wall time of dense vs token-pass forwards against their FLOPs
ratio. Notes and measurements: docs/library_notes.md.
"""
from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.espnetv2 import as_written
from ..core.flops import forward_flops
from ..core.model import DoViTSegmenter, build_model
from ..core.stopwatch import Stopwatch
from ..core.token_pass import Forced
from .timing import autocast, forced_masks, interleaved_times, ratio_summary, synchronise

CASES = (("vit_tiny_patch16_224", (360, 480)), ("vit_small_patch16_224", (512, 1024)))
KEPT_FRACTIONS = (0.75, 0.5, 0.25)
BATCH_SIZES = (1, 8)
# Packing plans compared on real frames (see DoViTSegmenter.pack_overhead_tokens): the device's default,
# the whole batch in one padded forward, and image by image.
PACKINGS = {"planned": None, "one padded forward": float("inf"), "image by image": 0.0}


def _mean_flops(model: DoViTSegmenter, output) -> float:
    """Mean analytic FLOPs per image of one forward's output."""
    return statistics.mean(
        forward_flops(model, output.grid, tokens.tolist(), len(output.aux_logits)).total
        for tokens in output.group_tokens
    )


@torch.inference_mode()
def run_case(backbone: str, size: tuple[int, int], fractions=KEPT_FRACTIONS, batch_sizes=BATCH_SIZES,
             warmup: int = 2, repeats: int = 10, device: str | torch.device = "cpu",
             dtype: str = "float32") -> list[dict]:
    """Random-init ``backbone`` at ``size``: one row per (batch size, kept fraction), dense and token-pass
    forwards interleaved, under ``autocast(device, dtype)``. Times are per batch; img/s = batch / median
    time."""
    device = torch.device(device)
    torch.manual_seed(0)
    model = build_model(backbone, num_classes=19, input_size=size).to(device).eval()
    rows = []
    with autocast(device, dtype):
        for batch in batch_sizes:
            rows += _case_rows(model, backbone, size, batch, fractions, warmup, repeats, device, dtype)
    return rows


def _case_rows(model: DoViTSegmenter, backbone: str, size: tuple[int, int], batch: int, fractions,
               warmup: int,
               repeats: int, device: torch.device, dtype: str) -> list[dict]:
    """run_case's rows of one batch size (its inputs and outputs freed on return)."""
    pixels = torch.randn(batch, 3, *size, device=device)
    grid = model.prefix(pixels[:1]).grid
    num_tokens = grid[0] * grid[1]
    dense_flops = forward_flops(model, grid, [num_tokens] * len(model.group_bounds), 0).total
    masks = {fraction: [m.to(device) for m in forced_masks(len(model.decision_layers), num_tokens, fraction,
                                                           batch=batch)]
             for fraction in fractions}
    variants = {"dense": lambda: model(pixels, xi=1.0)}
    for fraction, mask in masks.items():
        variants[fraction] = lambda mask=mask: model(pixels, xi=0.0, decider=Forced(mask))
    times = interleaved_times(variants, warmup, repeats, device)
    dense_ms = statistics.median(times["dense"])
    rows = []
    for fraction in fractions:
        dynamic_flops = _mean_flops(model, model(pixels, xi=0.0, decider=Forced(masks[fraction])))
        speedup = ratio_summary(times["dense"], times[fraction])
        dynamic_ms = statistics.median(times[fraction])
        ideal = dense_flops / dynamic_flops
        rows.append({
            "case": "forced", "backbone": backbone, "input": f"{size[0]}x{size[1]}", "batch": batch,
            "dtype": dtype,
            "kept_fraction": fraction, "dense_gflops": dense_flops / 1e9,
            "dynamic_gflops": dynamic_flops / 1e9,
            "dense_ms": dense_ms, "dynamic_ms": dynamic_ms,
            "dense_img_s": 1000.0 * batch / dense_ms, "dynamic_img_s": 1000.0 * batch / dynamic_ms,
            "speedup": speedup["median"], "speedup_min": speedup["min"], "speedup_max": speedup["max"],
            "ideal_speedup": ideal, "efficiency": speedup["median"] / ideal,
        })
    return rows


@torch.inference_mode()
def stage_profile(backbone: str, size: tuple[int, int], fractions=(0.25,), warmup: int = 2, repeats: int = 10,
                  device: str | torch.device = "cpu", dtype: str = "float32") -> dict[str, dict[str, float]]:
    """Median ms per forward stage (the model's ``timings_ms``: embed, group_1, decision_k, group_k,
    decoder, upsample) of a batch-1 random-init forward, dense and at each forced kept fraction, interleaved,
    under ``autocast(device, dtype)``."""
    device = torch.device(device)
    torch.manual_seed(0)
    model = build_model(backbone, num_classes=19, input_size=size).to(device).eval()
    pixels = torch.randn(1, 3, *size, device=device)
    grid = model.prefix(pixels).grid
    variants = {"dense": dict(xi=1.0)}
    for fraction in fractions:
        masks = [m.to(device) for m in forced_masks(len(model.decision_layers), grid[0] * grid[1], fraction)]
        variants[f"{fraction:.0%} kept"] = dict(xi=0.0, decider=Forced(masks))
    stages = {name: [] for name in variants}
    with autocast(device, dtype):
        for round_index in range(warmup + repeats):
            for name, options in variants.items():
                synchronise(device)
                timings = model(pixels, **options).timings_ms
                if round_index >= warmup:
                    stages[name].append(timings)
    return {name: {stage: statistics.median(t[stage] for t in runs) for stage in runs[0]}
            for name, runs in stages.items()}


def format_profile(profile: dict[str, dict[str, float]]) -> str:
    names = list(profile)
    stages = list(dict.fromkeys(stage for timings in profile.values() for stage in timings))
    lines = ["| stage | " + " | ".join(f"{name} ms" for name in names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for stage in stages + ["total"]:
        values = [sum(profile[name].values()) if stage == "total" else profile[name].get(stage)
                  for name in names]
        lines.append(f"| {stage} | " + " | ".join("–" if v is None else f"{v:.1f}" for v in values) + " |")
    return "\n".join(lines)


def load_frames(data_root: str | Path, count: int, model: DoViTSegmenter, split: str = "val") -> torch.Tensor:
    """The first ``count`` frames of ``split`` as normalised (count, 3, H, W) at the model's input size."""
    from ..data import EvalTransform, build_dataset

    config = model.config
    dataset = build_dataset("camvid", str(data_root), split, EvalTransform(config.input_size, config.mean,
                                                                           config.std))
    if len(dataset) < count:
        raise ValueError(f"{data_root} {split} has {len(dataset)} frames, the benchmark needs {count}")
    return torch.stack([dataset[index][0] for index in range(count)])


@torch.inference_mode()
def run_checkpoint_case(model: DoViTSegmenter, frames: torch.Tensor, batch: int, xi: float | None = None,
                        warmup: int = 1, repeats: int = 10, device: str | torch.device = "cpu",
                        packings: dict | None = None, dtype: str = "float32") -> dict:
    """A trained model on real frames (B, 3, H, W), B a multiple of ``batch``: each round runs all frames
    dense and at ``xi`` (default: the model's default xi), at batch 1 and at ``batch``, and the batched
    token pass with each packing plan (``PACKINGS``), under ``autocast(device, dtype)`` (the kept tokens, and
    so the FLOPs, are those of the forwards in that precision). Returns img/s per variant and the per-round
    ratios."""
    device = torch.device(device)
    model = model.to(device).eval()
    frames = frames.to(device)
    xi = float(model.config.default_xi if xi is None else xi)
    chunks = {size: list(frames.split(size)) for size in {1, batch}}
    packings = PACKINGS if packings is None else packings
    default_overhead = model.pack_overhead_tokens

    def run(size: int, threshold: float, overhead=default_overhead):
        model.pack_overhead_tokens = overhead
        try:
            for chunk in chunks[size]:
                model(chunk, xi=threshold)
        finally:
            model.pack_overhead_tokens = default_overhead

    variants = {"dense_b1": lambda: run(1, 1.0), "dovit_b1": lambda: run(1, xi),
                f"dense_b{batch}": lambda: run(batch, 1.0)}
    for name, overhead in packings.items():
        variants[f"dovit_b{batch} {name}"] = lambda overhead=overhead: run(batch, xi, overhead)
    with autocast(device, dtype):
        times = interleaved_times(variants, warmup, repeats, device)
        outputs = [model(chunk, xi=xi) for chunk in chunks[1]]
    dense_flops = forward_flops(model, outputs[0].grid, [outputs[0].grid[0] * outputs[0].grid[1]]
                                * len(model.group_bounds),
                                0).total
    dynamic_flops = statistics.mean(_mean_flops(model, output) for output in outputs)
    ideal = dense_flops / dynamic_flops
    planned = f"dovit_b{batch} {next(iter(packings))}"
    ratios = {
        "speedup_b1": ratio_summary(times["dense_b1"], times["dovit_b1"]),
        f"speedup_b{batch}": ratio_summary(times[f"dense_b{batch}"], times[planned]),
        f"dovit_b{batch}_over_b1": ratio_summary(times["dovit_b1"], times[planned]),  # throughput ratio
        f"dense_b{batch}_over_b1": ratio_summary(times["dense_b1"], times[f"dense_b{batch}"]),
    }
    for name in list(packings)[1:]:
        ratios[f"throughput {name} / {next(iter(packings))}"] = ratio_summary(times[planned],
                                                                           times[f"dovit_b{batch} {name}"])
    return {
        "case": "checkpoint", "images": len(frames), "input": "x".join(str(v) for v in frames.shape[-2:]),
        "batch": batch, "dtype": dtype, "xi": xi,
        "dense_gflops": dense_flops / 1e9, "dynamic_gflops": dynamic_flops / 1e9,
        "ideal_speedup": ideal,
        "kept_fraction_last_group": statistics.mean(
            float(o.group_tokens[0, -1]) / (o.grid[0] * o.grid[1]) for o in outputs),
        "img_s": {name: 1000.0 * len(frames) / statistics.median(t) for name, t in times.items()},
        "ratios": ratios,
        "efficiency_b1": ratios["speedup_b1"]["median"] / ideal,
        f"efficiency_b{batch}": ratios[f"speedup_b{batch}"]["median"] / ideal,
    }


def format_table(rows: list[dict]) -> str:
    lines = ["| backbone | input | batch | kept | dense GFLOPs/img | dynamic GFLOPs/img | dense img/s | "
             "DoViT img/s | speedup (min–max) | ideal | efficiency |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backbone']} | {r['input']} | {r['batch']} | {r['kept_fraction']:.0%} | "
                     f"{r['dense_gflops']:.2f} | {r['dynamic_gflops']:.2f} | {r['dense_img_s']:.2f} | "
                     f"{r['dynamic_img_s']:.2f} | {r['speedup']:.2f}x "
                     f"({r['speedup_min']:.2f}–{r['speedup_max']:.2f}) | {r['ideal_speedup']:.2f}x | "
                     f"{r['efficiency']:.2f} |")
    return "\n".join(lines)


def format_checkpoint(result: dict) -> str:
    batch = result["batch"]
    lines = [f"{result['images']} frames at {result['input']}, ξ = {result['xi']:g}, batch {batch}, "
             f"{result['dtype']}: "
             f"{result['dynamic_gflops']:.2f} / {result['dense_gflops']:.2f} GFLOPs per image "
             f"(ideal {result['ideal_speedup']:.2f}x), {result['kept_fraction_last_group']:.0%} of tokens "
             "kept to the end",
             "", "| variant | img/s |", "|---|---|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in result["img_s"].items()]
    lines += ["", "| ratio (per round) | median | min | max |", "|---|---|---|---|"]
    lines += [f"| {name} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} |"
              for name, r in result["ratios"].items()]
    lines += ["", f"efficiency (speedup / ideal): batch 1 {result['efficiency_b1']:.2f}, "
              f"batch {batch} {result[f'efficiency_b{batch}']:.2f}"]
    return "\n".join(lines)


def random_init_cases(backbones: list[str] | None, input_sizes: list[list[int]] | None,
                      quick: bool = False) -> list[tuple[str, tuple[int, int]]]:
    """(backbone, (H, W)) of the random-init cases: ``CASES`` (only the first when ``quick``) when no backbone
    is named; else each backbone with its own input size (the i-th size for the i-th backbone), one size for
    all, or, with none, the model's default size. Each is built on the meta device (nothing allocated), so a
    name or size the model builder refuses raises its ValueError before any case runs."""
    if not backbones:
        if input_sizes:
            raise ValueError("--input-size sets the size of a --backbone case: name the backbone too")
        return list(CASES[:1] if quick else CASES)
    if quick:
        raise ValueError("--quick picks the ViT-T case among the default cases; "
                         "with --backbone, name only the cases to run")
    sizes = input_sizes or [None]
    if len(sizes) not in (1, len(backbones)):
        raise ValueError(f"{len(backbones)} --backbone but {len(sizes)} --input-size: give one size for all "
                         "or one per backbone, in the same order")
    cases = []
    for backbone, size in zip(backbones, sizes * len(backbones) if len(sizes) == 1 else sizes, strict=False):
        options = {} if size is None else {"input_size": tuple(size)}
        with torch.device("meta"):
            model = build_model(backbone, num_classes=19, **options)
        cases.append((backbone, tuple(model.config.input_size)))
    return cases


@dataclass
class BaselineComparison:
    """Two checkpoints timed on the same frames at batch 1, interleaved: ms per frame (median over rounds)
    and per-round ratios this / baseline (median, min, max), dense and at each one's default xi."""

    checkpoint: str
    baseline: str
    frames: int
    input: str
    xi: float
    baseline_xi: float
    ms: dict[str, float]  # variant -> median ms per frame
    ratios: dict[str, dict[str, float]]  # "dovit" / "dense": this over baseline, per round


@torch.inference_mode()
def compare_with_baseline(model: DoViTSegmenter, baseline: DoViTSegmenter, frames: torch.Tensor,
                          baseline_frames: torch.Tensor, warmup: int = 1, repeats: int = 10,
                          names: tuple[str, str] = ("checkpoint", "baseline")) -> BaselineComparison:
    """Each round runs every frame through both models, dense and at their default xi (A B A B ...)."""
    model, baseline = model.eval(), baseline.eval()
    xi, baseline_xi = float(model.config.default_xi), float(baseline.config.default_xi)

    def run(net: DoViTSegmenter, images: torch.Tensor, threshold: float):
        for image in images.split(1):
            net(image, xi=threshold)

    variants = {"dovit": lambda: run(model, frames, xi),
                "baseline_dovit": lambda: run(baseline, baseline_frames, baseline_xi),
                "dense": lambda: run(model, frames, 1.0),
                "baseline_dense": lambda: run(baseline, baseline_frames, 1.0)}
    times = interleaved_times(variants, warmup, repeats, torch.device("cpu"))
    count = len(frames)
    return BaselineComparison(
        checkpoint=names[0], baseline=names[1], frames=count,
        input="x".join(str(v) for v in frames.shape[-2:]),
        xi=xi, baseline_xi=baseline_xi, ms={name: statistics.median(t) / count for name, t in times.items()},
        ratios={kind: ratio_summary(times[kind], times[f"baseline_{kind}"]) for kind in ("dovit", "dense")})


def format_baseline(result: BaselineComparison) -> str:
    lines = [f"{result.frames} frames at {result.input}, batch 1, interleaved: {result.checkpoint} "
             f"(ξ {result.xi:g}) against {result.baseline} (ξ {result.baseline_xi:g})", "",
             "| forward | this, ms/frame | baseline, ms/frame | this / baseline: median (min–max) |",
             "|---|---|---|---|"]
    for kind in ("dovit", "dense"):
        ratio = result.ratios[kind]
        label = "DoViT at default ξ" if kind == "dovit" else "dense (ξ = 1)"
        lines.append(f"| {label} | {result.ms[kind]:.1f} | {result.ms[f'baseline_{kind}']:.1f} | "
                     f"{ratio['median']:.2f}× "
                     f"({ratio['min']:.2f}–{ratio['max']:.2f}) |")
    return "\n".join(lines)


@dataclass
class FoldingComparison:
    """A hybrid checkpoint (stem and decoder 'espnetv2') on the same frames at batch 1 and its default xi,
    ESPNetv2's BatchNorms folded into the convs (eval mode's default) against run as written
    (``espnetv2.as_written``), interleaved. Per part — "stem" (the model's ``embed`` timing: encoder,
    projection, position embedding), "decoder", "forward" (the whole call) — ms per frame (median over
    rounds) of each variant, and per-round ratios unfolded / folded (median, min, max)."""

    checkpoint: str
    frames: int
    input: str
    xi: float
    ms: dict[str, dict[str, float]]  # "folded" / "unfolded" -> part -> median ms per frame
    speedups: dict[str, dict[str, float]]  # part -> unfolded / folded, per round


@torch.inference_mode()
def compare_batchnorm_folding(model: DoViTSegmenter, frames: torch.Tensor, warmup: int = 1,
                              repeats: int = 30, name: str = "checkpoint") -> FoldingComparison:
    """Each round runs every frame folded, then unfolded (A B A B ... frame by frame); ValueError for a
    non-hybrid model."""
    if model.config.stem != "espnetv2":
        raise ValueError(f"{name} has stem {model.config.stem!r}: BatchNorm folding serves the hybrid "
                         "('espnetv2') stem and decoder")
    model, xi = model.eval(), float(model.config.default_xi)
    contexts = {"folded": contextlib.nullcontext, "unfolded": as_written}
    rounds: dict[str, list[dict[str, float]]] = {variant: [] for variant in contexts}
    for round_index in range(warmup + repeats):
        parts = {variant: dict.fromkeys(("stem", "decoder", "forward"), 0.0) for variant in contexts}
        for image in frames.split(1):  # the variants alternate frame by frame: a shared CPU's load hits both
            for variant, context in contexts.items():
                with context():
                    watch = Stopwatch()
                    timings = model(image, xi=xi).timings_ms
                    parts[variant]["forward"] += watch.ms()
                parts[variant]["stem"] += timings["embed"]
                parts[variant]["decoder"] += timings["decoder"]
        if round_index >= warmup:
            for variant, sums in parts.items():
                rounds[variant].append({part: ms / len(frames) for part, ms in sums.items()})
    names = ("stem", "decoder", "forward")
    return FoldingComparison(
        checkpoint=name, frames=len(frames), input="x".join(str(v) for v in frames.shape[-2:]), xi=xi,
        ms={variant: {part: statistics.median(r[part] for r in runs) for part in names}
            for variant, runs in rounds.items()},
        speedups={part: ratio_summary([r[part] for r in rounds["unfolded"]],
                                      [r[part] for r in rounds["folded"]]) for part in names})


def format_folding(result: FoldingComparison) -> str:
    lines = [f"{result.checkpoint}: {result.frames} frames at {result.input}, batch 1, ξ {result.xi:g}; "
             "ESPNetv2's BatchNorms folded into the convs vs as written, interleaved", "",
             "| part | folded, ms/frame | unfolded, ms/frame | unfolded / folded: median (min–max) |",
             "|---|---|---|---|"]
    for part, ratio in result.speedups.items():
        lines.append(f"| {part} | {result.ms['folded'][part]:.1f} | {result.ms['unfolded'][part]:.1f} | "
                     f"{ratio['median']:.2f}× ({ratio['min']:.2f}–{ratio['max']:.2f}) |")
    return "\n".join(lines)
