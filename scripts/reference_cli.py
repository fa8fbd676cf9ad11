"""Reference outputs of the command-line modules (issue 22's safety net for the CLIs' JSON).

Builds a tiny labelled set in CamVid's layout from the drawn street (``assets/synthetic_street.png``, its
mirror image and a darker copy, labelled with three horizontal bands: no CamVid pixel), runs ``python -m
dovit.evaluate``, ``dovit.analyze`` and ``dovit.compare`` on it with the shipped student, and writes what
their
JSON says that does not depend on timing:

    python scripts/reference_cli.py tests/data/reference_cli.json          # from this checkout's code
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
STUDENT = ROOT / "checkpoints" / "camvid_dovit_vit_tiny"
BANDS = (1, 3, 4)  # CamVid train ids: Building, Road, Sidewalk; a third of the height each


def write_set(root: Path) -> Path:
    """val/ and valannot/ with three 360x480 frames of the drawn street."""
    street = cv2.imread(str(ROOT / "assets" / "synthetic_street.png"))
    frames = [street, street[:, ::-1], (street * 0.6).astype(np.uint8)]
    labels = np.repeat(np.array(BANDS, np.uint8),
                       street.shape[0] // len(BANDS))[:, None].repeat(street.shape[1], 1)
    (root / "val").mkdir(parents=True)
    (root / "valannot").mkdir()
    for index, frame in enumerate(frames):
        cv2.imwrite(str(root / "val" / f"street_{index}.png"), frame)
        cv2.imwrite(str(root / "valannot" / f"street_{index}.png"), labels)
    return root


def run(code_root: Path, *argv: str) -> None:
    """``python -m`` a module of the dovit package found first at ``code_root``."""
    subprocess.run([sys.executable, "-m", *argv], cwd=code_root, check=True, capture_output=True, text=True,
                   env={**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": "1"})


def reference_cli(code_root: Path = ROOT) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        data = write_set(Path(folder) / "camvid")
        out = Path(folder)
        run(code_root, "dovit.evaluate", "--checkpoint", str(STUDENT), "--data-root", str(data), "--xi",
            "0.8", "0.9",
            "1", "--throughput-images", "0", "--threads", "1", "--json", str(out / "evaluate.json"))
        run(code_root, "dovit.analyze", "--input", str(data / "val"), "--dataset", "camvid", "--checkpoint",
            str(STUDENT), "--xi", "0.9", "--xi-grid", "0.8", "0.9", "--threads", "1", "--no-progress",
            "--out", str(out / "report"))
        run(code_root, "dovit.compare", "--checkpoint", str(STUDENT), "--data-root", str(data), "--budgets",
            "0.6",
            "--policies", "confidence", "topk", "shallow", "--threads", "1", "--json",
            str(out / "compare.json"))
        evaluated = json.loads((out / "evaluate.json").read_text())["results"]
        report = json.loads((out / "report" / "report.json").read_text())
        compared = json.loads((out / "compare.json").read_text())
    return {
        "evaluate": [{k: r[k] for k in ("xi", "miou", "pa", "mpa", "gflops", "dense_gflops",
                                        "kept_fraction_per_group")}
                     for r in evaluated],
        "analyze": [{k: r[k] for k in ("xi", "miou", "gflops",
                                       "agreement_with_dense")} for r in report["tradeoff"]],
        "compare": [{k: r[k] for k in ("policy", "budget", "gflops", "miou", "agreement", "parameter_median")}
                    for r in [compared["dense"], *compared["results"]]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the JSON to write")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="the checkout whose dovit runs (default: this one)")
    args = parser.parse_args()
    args.output.write_text(json.dumps(reference_cli(args.code), indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
