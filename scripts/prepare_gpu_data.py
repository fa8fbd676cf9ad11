"""Write the JPEG copy of CamVid train + val that travels to a lent GPU machine (not into git).

The device tool copies at most 64 MiB (working tree + carried paths): the PNG frames are 119 MB, their
JPEG (quality 95) copies 32 MiB. Labels stay PNG (lossless). Val mIoU on the JPEG copies and on the PNGs
agreed within 0.11 for the shipped teacher (README, Reproduce).

    python scripts/prepare_gpu_data.py [--source ../shared/data/camvid] [--dest .devdata/camvid] [--quality
    95]
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
from tqdm import tqdm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--source", default="../shared/data/camvid",
                        help="CamVid root with train/, val/ and *annot/")
    parser.add_argument("--dest", default=".devdata/camvid", help="where the copy goes (git-ignored)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality")
    parser.add_argument("--splits", nargs="+", default=["train", "val"], help="splits to copy")
    args = parser.parse_args(argv)
    source, dest = Path(args.source), Path(args.dest)
    for split in args.splits:
        if not (source / split).is_dir() or not (source / f"{split}annot").is_dir():
            parser.error(f"{source} has no {split}/ and {split}annot/ (CamVid layout)")
    total = 0
    for split in args.splits:
        shutil.copytree(source / f"{split}annot", dest / f"{split}annot", dirs_exist_ok=True)
        (dest / split).mkdir(parents=True, exist_ok=True)
        for png in tqdm(sorted((source / split).glob("*.png")), desc=split):
            target = dest / split / f"{png.stem}.jpg"
            cv2.imwrite(str(target), cv2.imread(str(png)), [cv2.IMWRITE_JPEG_QUALITY, args.quality])
            total += target.stat().st_size
        total += sum(p.stat().st_size for p in (dest / f"{split}annot").iterdir())
    print(f"{dest}: {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
