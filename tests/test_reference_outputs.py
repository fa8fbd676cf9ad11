"""The shipped student's outputs on the drawn street stay what they were (issue 22's safety net).

``tests/data/reference_student.json`` was written by ``scripts/reference_outputs.py`` before the forward
paths were merged; the Predictor, the data-set analysis and the stopping policies must still give the same
kept tokens, FLOPs, masks and confidences. Tolerances cover another machine's float rounding (a token whose
confidence sits on ξ may flip), not a changed algorithm.
"""
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")
from scripts.reference_outputs import reference_outputs  # noqa: E402

REFERENCE = Path(__file__).parent / "data" / "reference_student.json"


@pytest.fixture(scope="module")
def outputs():
    return json.loads(REFERENCE.read_text()), reference_outputs()


def assert_counts_close(now, then, share):
    """Two histograms (or kept-token lists) differ by at most ``share`` of their total."""
    now, then = np.asarray(now), np.asarray(then)
    assert now.shape == then.shape
    assert np.abs(now - then).sum() <= share * then.sum() + 1, (now.tolist(), then.tolist())


def test_predictor_outputs_match_the_reference(outputs):
    then, now = outputs
    assert now["predict"].keys() == then["predict"].keys()
    for xi, old in then["predict"].items():
        new = now["predict"][xi]
        assert_counts_close(new["kept_tokens"], old["kept_tokens"], 0.005)
        assert new["dense_flops"] == old["dense_flops"]
        assert new["flops"] == pytest.approx(old["flops"], rel=0.005)
        assert_counts_close(new["mask_counts"], old["mask_counts"], 0.005)
        assert new["mean_confidence"] == pytest.approx(old["mean_confidence"], abs=1e-4)
        assert new["dense_confidence"] == pytest.approx(old["dense_confidence"], abs=1e-4)


def test_analysis_outputs_match_the_reference(outputs):
    then, now = outputs
    old, new = then["analysis"], now["analysis"]
    assert_counts_close(new["kept_tokens"], old["kept_tokens"], 0.005)
    assert_counts_close(new["depth_counts"], old["depth_counts"], 0.005)
    assert [p["xi"] for p in new["sweep"]] == [p["xi"] for p in old["sweep"]]
    for a, b in zip(new["sweep"], old["sweep"], strict=False):
        assert a["flops"] == pytest.approx(b["flops"], rel=0.005)
        assert a["agreeing_pixels"] == pytest.approx(b["agreeing_pixels"], rel=0.005)


def test_policy_outputs_match_the_reference(outputs):
    then, now = outputs
    old, new = then["policies_at_budget_0.6"], now["policies_at_budget_0.6"]
    assert new.keys() == old.keys()
    for name in old:
        assert new[name]["gflops"] == pytest.approx(old[name]["gflops"], rel=0.01), name
        assert new[name]["agreement"] == pytest.approx(old[name]["agreement"], abs=0.005), name
        assert new[name]["parameter"] == pytest.approx(old[name]["parameter"], rel=0.02, abs=1e-3), name
        assert_counts_close(new[name]["mask_counts"], old[name]["mask_counts"], 0.01)
