"""The commands of ``python -m dovit``: one table of name -> one-line summary (each is ``dovit.<name>``), and
the flags they share (``flags``)."""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": "train a dense teacher or a DoViT student (Eq. 9-12); torchrun gives DDP",
    "evaluate": "mIoU / PA / mPA, GFLOPs and speed of a checkpoint at several xi",
    "calibrate": "label-free DoViT from a dense checkpoint: fit the aux heads to its own predictions",
    "convert": "MMSegmentation and official DoViT checkpoints into DoViT checkpoint folders",
    "export": "a checkpoint as ONNX graphs that keep the token pass",
    "benchmark": "wall time of dense vs token-pass forwards against their FLOPs ratio",
    "analyze": "the data-set report (HTML, JSON, CSV) on a folder of images or a video",
    "compare": "stopping policies at matched FLOPs budgets on a labelled set",
    "robustness": "mIoU under the shifts street photos have, per severity and xi",
    "animate": "one image's token pass as an animated GIF or MP4, group by group (for slides)",
    "familiarity": "store a checkpoint's training-confidence range, to flag unfamiliar images",
    "folds": "leave-one-drive-out validation: teacher and student per held-out drive",
}


def usage() -> str:
    """``python -m dovit``'s listing: every command with its one line."""
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m dovit COMMAND [ARGS...]   (or python -m dovit.COMMAND [ARGS...])", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """No arguments (or -h): list the commands; otherwise run ``dovit.<COMMAND>.main`` on the rest."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] not in COMMANDS:
        print(f"unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return importlib.import_module(f"dovit.{argv[0]}").main(argv[1:]) or 0
