"""python -m dovit.export CKPT OUT --format onnx: a checkpoint as ONNX graphs that keep the token pass
(``--quantize int8``: int8 graphs, ``dovit.deploy.quantize``).

The graphs and what runs between them: ``dovit.deploy.onnx_graphs``; running them: ``dovit.OrtPredictor``.
"""
from __future__ import annotations

import argparse
import sys

from .cli.flags import apply_threads
from .deploy.onnx_graphs import OPSET, ExportConfig, ExportError, export_onnx
from .deploy.quantize import QuantizeConfig, add_quantize_args, quantize_config, run_int8_export


def parse_args(argv: list[str] | None = None) -> tuple[ExportConfig, int | None, QuantizeConfig | None]:
    """(the export, torch threads, the int8 settings or None for fp32)."""
    parser = argparse.ArgumentParser(
        prog="python -m dovit.export",
        description="Export a DoViT checkpoint to ONNX with the token pass kept: one graph for the prefix "
                    "(embedding and the dense first group), one per later block group with a dynamic token "
                    "axis (only kept tokens run through it), one per aux head and one for the decoder. The "
                    "decisions (Eq. 2-5), gathers and the Eq. 8 merge run between graphs in "
                    "dovit.OrtPredictor. The graphs take any working height and width. Each graph is "
                    "checked against PyTorch in onnxruntime after export. Writes OUT/*.onnx and "
                    "OUT/config.json; refuses (exit 2, one line) what it cannot export.",
        epilog="Run it: OrtPredictor.from_export(OUT); time it: python -m dovit.benchmark --runtime "
               "onnxruntime --export OUT; studio: python app.py --export OUT",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("checkpoint", help="a DoViT checkpoint directory (trained, converted or calibrated)")
    parser.add_argument("output", help="folder for the graphs and config.json (new, or an earlier export's)")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="export format")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="working size the graphs are traced and checked at (default: the checkpoint's "
                             "input size); they run at any size (each image at its own aspect), the groups "
                             "at any number of kept tokens")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset ({OPSET} or later)")
    parser.add_argument("--no-check", action="store_true", help="skip running each graph against PyTorch")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    add_quantize_args(parser)
    args = parser.parse_args(argv)
    return ExportConfig(args.checkpoint, args.output, tuple(args.size) if args.size else None, args.opset,
                        not args.no_check), args.threads, quantize_config(args)


def main(argv: list[str] | None = None) -> int:
    config, threads, quantize = parse_args(argv)
    apply_threads(threads)
    if quantize is not None:
        return run_int8_export(config, quantize)
    try:
        result = export_onnx(config)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {config.checkpoint} -> {result.output} in {result.seconds:.0f} s: {len(result.graphs)} "
          f"graphs of any working size, checked at {result.size[0]}x{result.size[1]} (token grid "
          f"{result.grid[0]}x{result.grid[1]})")
    for name, error in result.max_abs_error.items():
        print(f"  {name}.onnx: onnxruntime vs PyTorch, max |difference| {error:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
