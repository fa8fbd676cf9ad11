"""DoViT Studio's command line: ``python app.py`` or, once installed, ``dovit-studio`` serves the web app on
http://127.0.0.1:7860 (no network needed).

This module only parses flags and launches; the app itself is ``app.ui.build_demo``. ``app.py`` at the
repository root is a shim over :func:`main`, so the README's ``python app.py`` keeps working.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _program_name() -> str:
    """How the user started us, for usage lines and errors: the installed command or ``python app.py``."""
    return "dovit-studio" if Path(sys.argv[0]).name == "dovit-studio" else "python app.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=_program_name(),
        description="DoViT Studio: see which tokens a dynamic token-pass ViT stops, what that saves, and "
        "what it costs in accuracy, for any image and any threshold ξ.",
        epilog=f"Example: {_program_name()} --examples ~/my_street_photos",
    )
    parser.add_argument("--checkpoint", metavar="PATH", action="append", default=[],
                        help="DoViT checkpoint directory (model.safetensors + config.json); repeatable: the "
                             "first is the default model, and the page's model picker offers each of them "
                             "besides every checkpoint under checkpoints/; default: the shipped "
                        "checkpoints/camvid_hybrid_dovit_vit_tiny (the hybrid ESPNetv2 + ViT-T student)")
    parser.add_argument("--export", metavar="DIR", action="append", default=[],
                        help="an ONNX export of one of the models (python -m dovit.export CKPT DIR), used "
                             "when the page's runtime is ONNX Runtime; repeatable. Without one, a model is "
                             "exported on first use into ~/.cache/dovit/exports (DOVIT_EXPORT_CACHE)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default: 127.0.0.1, private to this machine)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default: 7860)")
    parser.add_argument("--examples", metavar="DIR", default=None,
                        help="a folder of images to offer as examples besides assets/; read at run time, "
                             "never copied into the repo (default: ../shared/data/camvid/val when it exists, "
                             "the CamVid scenes the shipped model was trained for; '' for assets/ only)")
    parser.add_argument("--frames-root", metavar="DIR", action="append", default=[],
                        help="a server folder whose image folders (it and two levels below) the Video and "
                             "Data set tabs offer as frame sequences, e.g. ../shared/data/camvid; "
                             "repeatable. Users pick them by name and never type a path (the example folders "
                             "are always offered)")
    parser.add_argument("--share", action="store_true",
                        help="also open a public gradio.live link (needs internet; off by default)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for the forward; default: usable cores - 1 (at least 1, "
                        "at most 8), leaving a core to the server (see app/runtime.py)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for root in args.frames_root:
        if not Path(root).expanduser().is_dir():
            raise SystemExit(f"{_program_name()}: --frames-root {root}: not a folder")
    for export in args.export:
        if not (Path(export) / "config.json").is_file():
            raise SystemExit(f"{_program_name()}: --export {export}: not an export folder (python -m "
                             "dovit.export)")
    from app.examples import default_examples_dir
    from app.models import ModelShelf
    from app.runtime import configure_torch  # heavy imports after parsing, so that --help is instant
    from app.ui import build_demo, serve
    from dovit import CheckpointError, Predictor
    from dovit.core.predictor import default_checkpoint

    threads = configure_torch(args.threads)
    first = args.checkpoint[0] if args.checkpoint else None
    try:
        predictor = Predictor.from_checkpoint(first)
        models = ModelShelf.build(predictor, first or default_checkpoint(), args.checkpoint[1:],
                                  exports=args.export)
        examples = default_examples_dir() if args.examples is None else (args.examples or None)
        demo = build_demo(predictor, examples_dir=examples, models=models,
                          frame_roots=[Path(root).expanduser() for root in args.frames_root])
    except (CheckpointError, FileNotFoundError) as error:
        hint = "" if first else " (the shipped checkpoint; --checkpoint PATH serves another one)"
        raise SystemExit(f"{_program_name()}: {error}{hint}") from None
    print(f"DoViT Studio on http://{args.host}:{args.port} (torch threads: {threads})", flush=True)
    serve(demo, host=args.host, port=args.port, share=args.share)


if __name__ == "__main__":
    main()
