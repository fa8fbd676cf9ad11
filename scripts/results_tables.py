"""Markdown tables from the JSON files that dovit.evaluate and dovit.robustness wrote (no number typed by
hand).

    python scripts/results_tables.py evaluate A.json B.json ...      # mIoU / GFLOPs per xi, one row each
    python scripts/results_tables.py robustness A.json B.json ...    # clean, shifted, families, Sky kept as
    Sky
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

SKY = 0  # CamVid's class 0


def evaluate_table(paths: list[str]) -> str:
    lines = ["| checkpoint | ξ | mIoU | total GFLOPs (dense) | total FLOPs saved | backbone FLOPs saved |",
             "|---|---|---|---|---|---|"]
    for path in paths:
        data = json.loads(Path(path).read_text())
        for r in data["results"]:
            lines.append(f"| {Path(path).stem} | {r['xi']:g} | {100 * r['miou']:.2f} | "
                         f"{r['gflops']:.2f} ({r['dense_gflops']:.2f}) | "
                         f"{100 * (1 - r['gflops'] / r['dense_gflops']):.1f}% | "
                         f"{100 * (1 - r['backbone_gflops'] / r['dense_backbone_gflops']):.1f}% |")
    return "\n".join(lines)


def _sky(scores: list[dict], shift: str) -> float:
    values = [s["class_accuracy"][SKY] for s in scores if s["shift"] == shift
              and s["class_accuracy"][SKY] is not None]
    return float(np.mean(values)) if values else float("nan")


def robustness_table(paths: list[str]) -> str:
    families = ("noise", "blur", "weather", "digital", "camera")
    head = ["model", "ξ", "clean mIoU", "shifted mean", "trained-on shifts", "held-out shifts", *families,
            "Sky kept as Sky: clean / cool light / saturation", "FLOPs saved clean / shifted"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for path in paths:
        data = json.loads(Path(path).read_text())
        for r in data["results"]:
            fam = [np.mean([s["miou"] for s in r["scores"] if s["family"] == f]) for f in families]
            sky = (r["clean_class_accuracy"][SKY], _sky(r["scores"], "color_temperature_cool"),
                   _sky(r["scores"], "saturation"))
            lines.append(f"| {Path(path).stem} | {r['xi']:g} | {100 * r['clean_miou']:.2f} | "
                         f"{100 * r['mean_shifted_miou']:.2f} | {100 * r['trained_mean_miou']:.2f} | "
                         f"{100 * r['held_out_mean_miou']:.2f} | "
                         + " | ".join(f"{100 * v:.1f}" for v in fam)
                         + f" | {' / '.join(f'{100 * v:.1f}' for v in sky)} | "
                         f"{100 * r['clean_flops_saved']:.1f}% / {100 * r['mean_flops_saved_shifted']:.1f}% "
                         "|")
    return "\n".join(lines)


if __name__ == "__main__":
    kind, files = sys.argv[1], sys.argv[2:]
    print({"evaluate": evaluate_table, "robustness": robustness_table}[kind](files))
