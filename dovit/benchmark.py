"""python -m dovit.benchmark: wall time of dense vs token-pass forwards against their FLOPs ratio (the cases:
``dovit.evaluation.benchmark_cases``; the timing primitives: ``dovit.evaluation.timing``). Parses the flags,
refuses bad ones before any case runs, runs the cases, prints the tables and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .core.flops import FLOPS_CONVENTION
from .data import DEFAULT_DATA_ROOT
from .evaluation.benchmark_cases import (
    BATCH_SIZES,
    KEPT_FRACTIONS,
    compare_batchnorm_folding,
    compare_with_baseline,
    format_baseline,
    format_checkpoint,
    format_folding,
    format_profile,
    format_table,
    load_frames,
    random_init_cases,
    run_case,
    run_checkpoint_case,
    stage_profile,
)
from .evaluation.timing import DTYPES, machine_description, release_memory


@dataclass
class BenchmarkConfig:
    """``python -m dovit.benchmark``'s flags (see its --help for each)."""

    batch: list[int] = field(default_factory=lambda: [1, 8])
    device: str = "cpu"
    dtype: str = "float32"
    backbone: list[str] | None = None
    input_size: list[list[int]] | None = None
    fractions: list[float] = field(default_factory=lambda: [0.75, 0.5, 0.25])
    json: str | None = None
    repeats: int = 10
    warmup: int = 2
    threads: int | None = None
    quick: bool = False
    profile: bool = False
    no_forced: bool = False
    no_frames: bool = False
    checkpoint: str | None = None
    data_root: str = DEFAULT_DATA_ROOT
    frames: int = 16
    runtime: str = "pytorch"
    export: str | None = None
    int8_export: str | None = None
    baseline: str | None = None
    batchnorm_folding: bool = False


def _check_device(device: str, dtype: str) -> None:
    """ValueError for a device torch cannot parse, cuda without a card, or float16 on cpu."""
    try:
        kind = torch.device(device).type
    except RuntimeError as error:
        raise ValueError(f"--device {device!r}: {error}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch {torch.__version__} sees no CUDA device here")
    if dtype == "float16" and kind == "cpu":
        raise ValueError("--dtype float16 needs --device cuda: CPU autocast runs bfloat16, not float16 "
                         "(use --dtype bfloat16 on cpu)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dovit.benchmark",
        description="Time dense vs token-pass forwards per batch size, interleaved (A B A B ...), median of "
        "per-round ratios: random-init ViT-T at 360x480 and ViT-S at 512x1024 (or the --backbone cases) with "
        "75/50/25% (or --fractions) of tokens kept after the first decision, and a trained checkpoint on "
        "real CamVid frames at its default xi. Reports img/s, speedup, ideal speedup (dense/dynamic FLOPs) "
        f"and efficiency. {FLOPS_CONVENTION}.",
        epilog="GPU example (issue 11's target): --device cuda --dtype bfloat16 --backbone "
               "vit_base_patch16_224 --input-size 512 1024 --batch 1 32 --fractions 0.5 0.25 --frames 32 "
               "--json OUT.json",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--batch", type=int, nargs="+", default=list(BATCH_SIZES), help="batch sizes")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32",
                        help="precision of the timed forwards: float32 as is, the others under "
                             "torch.autocast (weights stay float32); float16 on cuda only")
    parser.add_argument("--backbone", action="append", metavar="NAME",
                        help="a timm ViT/DeiT name for a random-init case, instead of the default cases; "
                             "repeat for several cases; without it: ViT-T 360x480 and ViT-S 512x1024")
    parser.add_argument("--input-size", action="append", type=int, nargs=2, metavar=("H", "W"),
                        help="input size of the --backbone cases: once for all, or once per --backbone in "
                             "the same order; without it: the model's default size")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(KEPT_FRACTIONS),
                        help="kept fractions after the first decision, each in (0, 1]")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds (medians reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true",
                        help="ViT-T case only among the default random-init cases")
    parser.add_argument("--profile", action="store_true",
                        help="only the per-stage ms of the first random-init case (default ViT-T 360x480), "
                             "batch 1, dense vs 25%% kept, and exit")
    parser.add_argument("--no-forced", action="store_true", help="skip the random-init forced-fraction cases")
    parser.add_argument("--no-frames", action="store_true", help="skip the real-frame case")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint for the real-frame case (default: the shipped CamVid DoViT student)")
    parser.add_argument("--data-root", default=DEFAULT_DATA_ROOT,
                        help="CamVid root for the real-frame case (skipped when missing)")
    parser.add_argument("--frames", type=int, default=16,
                        help="real frames per round (a multiple of each batch)")
    add_mode_flags(parser)
    return parser


def add_mode_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that replace the default cases by one comparison: runtimes, a baseline, BN folding."""
    parser.add_argument("--runtime", choices=("pytorch", "onnxruntime", "int8"), default="pytorch",
                        help="onnxruntime: only time ORT dense, ORT DoViT and PyTorch (dense, DoViT) "
                             "interleaved, batch 1, on --frames real frames of the checkpoint at its default "
                             "xi and with the last of --fractions kept (ORT's efficiency = its dense time / "
                             "its DoViT time over the FLOPs ratio)")
    parser.add_argument("--export", default=None,
                        help="with --runtime onnxruntime: the checkpoint's export folder (python -m "
                             "dovit.export); default: export it into a temporary folder first")
    parser.add_argument("--int8-export", default=None, help="with --runtime int8 (PyTorch fp32, ORT fp32, "
                        "ORT int8; dense and DoViT interleaved): the int8 export (dovit.export --quantize "
                        "int8); default: quantized into a temporary folder (calibrated on --data-root)")
    parser.add_argument("--baseline", default=None, metavar="CHECKPOINT",
                        help="only time --checkpoint (default: the default student) against this checkpoint "
                             "(e.g. checkpoints/camvid_dovit_vit_tiny) on --frames real frames at batch 1, "
                             "dense and at each one's default xi, interleaved; prints ms per frame and the "
                             "per-round ratios with their spread")
    parser.add_argument("--batchnorm-folding", action="store_true",
                        help="only time the hybrid --checkpoint (default: the default student) with "
                             "ESPNetv2's BatchNorms folded into the convs and as written, on --frames real "
                             "frames at batch 1 and its default xi, interleaved; prints stem, decoder and "
                             "forward ms per frame and the per-round ratios with their spread")


def _check_args(args: BenchmarkConfig, run_frames: bool) -> None:
    """Every refusal before any case runs (a GPU session must not lose minutes to a typo); ValueError."""
    _check_device(args.device, args.dtype)
    if min(args.batch) < 1 or args.repeats < 1 or args.warmup < 0:
        raise ValueError("--batch sizes and --repeats must be at least 1, --warmup at least 0")
    if not all(0.0 < fraction <= 1.0 for fraction in args.fractions):
        raise ValueError(f"--fractions must each be in (0, 1], got {args.fractions}")
    uneven = [batch for batch in args.batch if batch > 1 and args.frames % batch]
    if run_frames and uneven:
        raise ValueError(f"--frames {args.frames} is not a multiple of batch size {uneven[0]} (the "
                         "real-frame case runs whole batches): raise --frames, or skip that case with "
                         "--no-frames")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = BenchmarkConfig(**vars(parser.parse_args(argv)))
    if args.runtime == "onnxruntime":
        return _runtime_comparison(args)
    if args.runtime == "int8":
        from .evaluation.runtimes import int8_comparison

        return int8_comparison(args)
    if args.baseline or args.batchnorm_folding:
        return _checkpoint_comparison(args)
    run_frames = not args.no_frames and Path(args.data_root).is_dir()
    try:
        _check_args(args, run_frames)
        cases = random_init_cases(args.backbone, args.input_size, args.quick)
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    if args.threads:
        torch.set_num_threads(args.threads)
    header = f"device {args.device}, dtype {args.dtype}"
    if args.profile:
        backbone, size = cases[0]
        print(f"Machine: {machine_description(args.device)}, {header}\n{backbone} {size[0]}x{size[1]}, batch "
              "1\n")
        print(format_profile(stage_profile(backbone, size, warmup=args.warmup, repeats=args.repeats,
                                           device=args.device, dtype=args.dtype)))
        return 0
    rows = []
    if not args.no_forced:
        for backbone, size in cases:
            rows += run_case(backbone, size, fractions=args.fractions, batch_sizes=args.batch,
                             warmup=args.warmup,
                             repeats=args.repeats, device=args.device, dtype=args.dtype)
            release_memory(args.device)
    checkpoint_results = []
    if run_frames:
        checkpoint_results = _real_frame_results(args)
        release_memory(args.device)
    _report(args, header, rows, checkpoint_results, run_frames)
    return 0


def _report(args: BenchmarkConfig, header: str, rows: list, checkpoint_results: list,
            run_frames: bool) -> None:
    """Print the tables (and why the real-frame case was skipped); write --json."""
    machine = machine_description(args.device)
    print(f"Machine: {machine}, {header}\n{FLOPS_CONVENTION}\n")
    if rows:
        print(format_table(rows))
    for result in checkpoint_results:
        print("\n" + format_checkpoint(result))
    if not checkpoint_results:
        reason = ("--no-frames" if args.no_frames else "no batch size > 1" if run_frames
                  else f"no data at {args.data_root}")
        print(f"\n(real-frame case skipped: {reason})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": machine, "device": args.device, "dtype": args.dtype,
                                               "flops_convention": FLOPS_CONVENTION, "cases": rows,
                                               "checkpoint_cases": checkpoint_results}, indent=2) + "\n")


def _runtime_comparison(args: BenchmarkConfig) -> int:
    """--runtime onnxruntime: PyTorch and ONNX Runtime on real frames, printed (and written to --json)."""
    import dataclasses
    import tempfile

    from .core.checkpoint import load_checkpoint
    from .core.predictor import default_checkpoint
    from .deploy.onnx_graphs import ExportConfig, ExportError, export_onnx
    from .deploy.onnx_runtime import OrtSegmenter, compare_runtimes, format_runtime_cases

    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or str(default_checkpoint())
    with tempfile.TemporaryDirectory() as scratch:
        export = args.export
        if export is None:
            try:
                export = str(export_onnx(ExportConfig(checkpoint, f"{scratch}/export", check=False),
                                         progress=False).output)
            except ExportError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
        model = load_checkpoint(checkpoint)
        ort_model = OrtSegmenter(export, threads=args.threads)
        frames = load_frames(args.data_root, args.frames, model)
        cases = compare_runtimes(model, ort_model, frames, float(model.config.default_xi), args.fractions[-1],
                                 args.warmup, args.repeats)
    machine = machine_description()
    print(f"Machine: {machine}; {ort_model.runtime}\n{checkpoint}, {args.frames} frames at "
          f"{frames.shape[-2]}x{frames.shape[-1]}, batch 1, {args.repeats} interleaved rounds\n")
    print(format_runtime_cases(cases))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": machine,
                    "runtime": ort_model.runtime,
                    "checkpoint": checkpoint,
                    "cases": [
                        dict(
                            dataclasses.asdict(c),
                            ort_efficiency=c.ort_efficiency,
                            pytorch_efficiency=c.pytorch_efficiency,
                        )
                        for c in cases
                    ],
                },
                indent=2,
            )
            + "\n"
        )
    return 0


def _checkpoint_comparison(args: BenchmarkConfig) -> int:
    """--baseline (the checkpoint against another on the same frames) or --batchnorm-folding (the hybrid
    checkpoint's BatchNorms folded vs as written): batch 1, interleaved, printed and written to --json."""
    import dataclasses

    from .core.checkpoint import CheckpointError, load_checkpoint
    from .core.predictor import default_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or str(default_checkpoint())
    try:
        model = load_checkpoint(checkpoint)
        frames = load_frames(args.data_root, args.frames, model)
        if args.batchnorm_folding:
            result = compare_batchnorm_folding(model, frames, args.warmup, args.repeats, name=checkpoint)
        else:
            baseline = load_checkpoint(args.baseline)
            baseline_frames = load_frames(args.data_root, args.frames, baseline)
    except (CheckpointError, OSError, ValueError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    if not args.batchnorm_folding:
        result = compare_with_baseline(model, baseline, frames, baseline_frames, args.warmup, args.repeats,
                                       names=(checkpoint, args.baseline))
    print(f"Machine: {machine_description()}, {torch.get_num_threads()} threads\n")
    print(format_folding(result) if args.batchnorm_folding else format_baseline(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        document = {"machine": machine_description(), "threads": torch.get_num_threads(),
                    **dataclasses.asdict(result)}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


def _real_frame_results(args: BenchmarkConfig) -> list[dict]:
    """The checkpoint case at each batch size > 1 (its model and frames freed on return)."""
    from .core.checkpoint import load_checkpoint
    from .core.predictor import default_checkpoint

    model = load_checkpoint(args.checkpoint or default_checkpoint())
    frames = load_frames(args.data_root, args.frames, model)
    return [run_checkpoint_case(model, frames, batch, warmup=1, repeats=args.repeats, device=args.device,
                                dtype=args.dtype)
            for batch in args.batch if batch > 1]


if __name__ == "__main__":
    sys.exit(main())
