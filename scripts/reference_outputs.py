"""Reference outputs of the shipped student for tests/test_reference_outputs.py (issue 22's safety net).

Writes what the Predictor, ``analyse_image`` and ``PolicyRunner`` give on ``assets/synthetic_street.png``
(a drawn street, not CamVid) at xi 0.8, 0.9, 1: kept tokens per group, FLOPs, mask class histograms and
mean confidences. Run it only when a change is meant to change the outputs, and say why in the commit:

    python scripts/reference_outputs.py tests/data/reference_student.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from dovit import Predictor
from dovit.core.policies import POLICIES, PolicyRunner
from dovit.report.analysis import analyse_image

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "assets" / "synthetic_street.png"
STUDENT = ROOT / "checkpoints" / "camvid_dovit_vit_tiny"  # the reference's model (the default until issue 30)
XI_VALUES = (0.8, 0.9, 1.0)
BUDGET = 0.6


def class_counts(mask: np.ndarray, num_classes: int) -> list[int]:
    return np.bincount(mask.ravel(), minlength=num_classes).tolist()


def reference_outputs() -> dict:
    """Everything the test compares, as plain JSON values."""
    torch.manual_seed(0)
    image = cv2.cvtColor(cv2.imread(str(IMAGE)), cv2.COLOR_BGR2RGB)
    predictor = Predictor.from_checkpoint(STUDENT)
    classes = predictor.config.num_classes
    predictions = {}
    for xi in XI_VALUES:
        prediction = predictor.predict(image, xi)
        predictions[str(xi)] = {
            "kept_tokens": [group.tokens for group in prediction.trace.groups],
            "flops": prediction.trace.flops, "dense_flops": prediction.trace.dense_flops,
            "mask_counts": class_counts(prediction.mask, classes),
            "mean_confidence": [float(np.mean(d.confidence)) for d in prediction.trace.decisions],
            "dense_confidence": prediction.dense_confidence,
        }
    analysis = analyse_image(predictor, image, None, 0.9, xi_grid=XI_VALUES)
    policies = {}
    runner = PolicyRunner(predictor, image)
    for name in POLICIES:
        result = runner.run(name, BUDGET)
        policies[name] = {"gflops": result.gflops, "agreement": result.agreement,
                          "parameter": result.parameter,
                          "mask_counts": class_counts(result.mask, classes)}
    return {
        "image": IMAGE.name, "predict": predictions,
        "analysis": {"kept_tokens": analysis.record.kept_tokens,
                     "depth_counts": analysis.depth_counts.tolist(),
                     "sweep": [{"xi": p.xi, "flops": p.flops, "agreeing_pixels": p.agreeing_pixels}
                               for p in analysis.sweep]},
        "policies_at_budget_0.6": policies,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the JSON to write")
    output = parser.parse_args().output
    output.write_text(json.dumps(reference_outputs(), indent=1) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
