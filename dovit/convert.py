"""python -m dovit.convert: MMSegmentation and official DoViT checkpoints into DoViT checkpoint folders.

    python -m dovit.convert SRC DST --format mmseg|dovit-official [--backbone TIMM_NAME] [--input-size H W]
                                   [--num-classes C] [--skip-auxiliary]

Parses the flags and calls ``dovit.interop.mmseg_checkpoint`` (what is read, mapped and refused is described
there).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from .core.checkpoint import CheckpointError, save_checkpoint
from .interop.mmseg_checkpoint import (
    FORMATS,
    ConversionError,
    convert_dovit_official,
    convert_mmseg,
    load_mmseg_checkpoint,
)


@dataclass
class ConvertConfig:
    """``python -m dovit.convert``'s flags (see its --help for each)."""

    src: str
    dst: str
    format: str = "mmseg"
    backbone: str | None = None
    input_size: list[int] | None = None
    num_classes: int | None = None
    pos_size: list[int] | None = None
    skip_auxiliary: bool = False


# ------------------------------------------------------------------------------------------ CLI
def parse_args(argv: list[str] | None = None) -> ConvertConfig:
    parser = argparse.ArgumentParser(
        prog="python -m dovit.convert",
        description="Convert an MMSegmentation ViT segmenter checkpoint (Segmenter or SETR head), or one of "
                    "the official DoViT code (github.com/FLHonker/DoViT-code, MMSeg 0.x), into a DoViT "
                    "checkpoint folder. Refuses anything it cannot place exactly (exit code 2); at xi = 1 "
                    "the result computes the source's logits. An official DoViT checkpoint's aux heads "
                    "(FCNHead / SETRUPHead: 1x1 conv, BatchNorm, ReLU, 1x1 classifier) are converted with "
                    "it, giving its aux logits; otherwise the DoViT aux heads start random: train them with "
                    "`python -m dovit.train --stage dovit --init DST --teacher DST`. The official format "
                    "follows that repository's code (backbone/do_vit.py, "
                    "tools/model_converters/mmseg2dovit.py) and is tested on synthetic checkpoints with its "
                    "key names and shapes; it was not checked against a real official checkpoint (none can "
                    "be downloaded here).")
    parser.add_argument("src",
                        help="MMSegmentation .pth checkpoint (read with torch.load(weights_only=True))")
    parser.add_argument("dst", help="output DoViT checkpoint folder (model.safetensors + config.json)")
    parser.add_argument("--format", choices=FORMATS, default="mmseg",
                        help="'mmseg': MMSegmentation 1.x; 'dovit-official': "
                        "the official DoViT code's DoEncoderDecoder / distiller checkpoints (timm-style "
                        "attention keys, aux heads inside the backbone and converted with it; decision "
                        "layers from out_indices, default xi from exit_conf)")
    parser.add_argument("--backbone", default=None,
                        help="timm ViT name (default: inferred from width and depth)")
    parser.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="working size (default: the saved config's crop, else the position embedding's "
                             "grid)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="checked against the head's class count")
    parser.add_argument("--pos-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="image size the position embedding was trained at, when it is not square and "
                             "the checkpoint has no saved config")
    parser.add_argument("--skip-auxiliary", action="store_true",
                        help="leave out the auxiliary heads: MMSeg's training-only auxiliary_head (DoViT has "
                             "no place for them), or the official DoViT aux heads (needed for one that is "
                             "not FCNHead / SETRUPHead with one 1x1 conv + BatchNorm); DoViT's aux heads "
                             "then start random")
    return ConvertConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        state, meta = load_mmseg_checkpoint(args.src)
        convert = convert_mmseg if args.format == "mmseg" else convert_dovit_official
        model, notes = convert(state, meta, backbone=args.backbone, input_size=args.input_size,
                               num_classes=args.num_classes, skip_auxiliary=args.skip_auxiliary,
                               pos_size=args.pos_size)
        metadata = {"stage": "converted", "converted_from": str(Path(args.src).name), "format": args.format,
                    "notes": notes}
        save_checkpoint(model, args.dst, metadata=metadata)
    except (ConversionError, CheckpointError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    config = model.config
    print(f"wrote {args.dst}: {config.backbone}, decoder {config.decoder} ({config.decoder_channels} "
          f"channels), {config.num_classes} classes, input {config.input_size[0]}x{config.input_size[1]}")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
