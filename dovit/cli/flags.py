"""Flags that several command-line modules share, so that they read, default and behave alike."""
from __future__ import annotations

import argparse

import torch

from ..data import DATASETS, DEFAULT_DATA_ROOT

SEQUENCES_HELP = ("only these recordings (file-name prefix; CamVid drives 0001TP 0006R0 0016E5), e.g. the "
                  "drive a model was trained without")


def add_data_flags(parser: argparse.ArgumentParser, split: str = "val",
                   split_help: str = "split to use ('+' joins splits: train+val)") -> None:
    """--dataset, --data-root, --split, --sequences: a labelled set as ``dovit.data.build_dataset`` reads
    it."""
    add = parser.add_argument
    add("--dataset", choices=sorted(DATASETS), default="camvid", help="data set layout")
    add("--data-root", default=DEFAULT_DATA_ROOT, help="data set root folder")
    add("--split", default=split, help=split_help)
    add("--sequences", nargs="+", default=None, metavar="SEQ", help=SEQUENCES_HELP)


def add_process_flags(parser: argparse.ArgumentParser, device: bool = True) -> None:
    """--threads (and --device): where the forwards run."""
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice)")
    if device:
        parser.add_argument("--device", default="cpu", help="cpu or cuda")


def apply_threads(threads: int | None) -> None:
    """--threads: set torch's CPU threads when given."""
    if threads:
        torch.set_num_threads(threads)
