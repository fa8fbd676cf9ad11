"""dovit.evaluation.policy_scores: stopping policies at matched FLOPs over a labelled set."""
from pathlib import Path

import pytest
import torch
from test_evaluate import fake_camvid

import dovit
from dovit.core.policies import POLICIES
from dovit.data.synthetic import synthetic_dataset
from dovit.evaluation import policy_scores
from dovit.report.analysis import Frame


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random-init ViT-Tiny checkpoint with CamVid's 11 classes on a 4 x 6 token grid."""
    torch.manual_seed(0)
    model = dovit.build_model("vit_tiny_patch16_224", num_classes=11, input_size=(64, 96),
                              decoder_channels=16)
    return dovit.save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return fake_camvid(tmp_path_factory.mktemp("camvid") / "camvid", count=2)


@pytest.mark.parametrize("match", ["set", "image"])
def test_every_policy_but_shallow_meets_the_budget_on_the_set(match):
    from test_policies import INPUT_SIZE  # an 8 x 12 grid: one token is < 1 % of the FLOPs

    torch.manual_seed(0)
    predictor = dovit.Predictor(dovit.build_model("vit_tiny_patch16_224", num_classes=5,
                                                  input_size=INPUT_SIZE,
                                                  decoder_channels=16))
    dataset = synthetic_dataset(2, (120, 200), seed=7)
    frames = [Frame(f"s{i}", *dataset.load(i), i) for i in range(len(dataset))]
    dense, rows = policy_scores.compare_policies(predictor, frames, [0.55], match=match, progress=False)
    assert [row.policy for row in rows] == list(POLICIES) and dense.images == 2
    for row in rows:
        assert row.images == 2 and (row.within_budget or row.policy == "shallow"), (row.policy,
                                                                                    row.gflops_ratio)
        if match == "image" and row.policy != "shallow":  # every image at the budget, not only the mean
            assert abs(row.image_ratio_min - 1) <= 0.02 and abs(row.image_ratio_max - 1) <= 0.02
    random, confidence = rows[POLICIES.index("random")], rows[POLICIES.index("confidence")]
    assert random.gflops == confidence.gflops and random.parameter_median == confidence.parameter_median
