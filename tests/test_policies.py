"""dovit.core.policies: the keep rules' invariants, the forward_from hook, budget matching, run_policies'
API."""
import math

import numpy as np
import pytest
import torch

import dovit
from dovit.core import policies
from dovit.core.policies import POLICIES
from dovit.core.preprocess import logits_to_mask
from dovit.core.token_pass import Forced, Policy
from dovit.data.synthetic import synthetic_dataset

INPUT_SIZE = (128, 192)  # an 8 x 12 grid: 96 tokens, so one token is < 1 % of the dense FLOPs


@pytest.fixture(scope="module")
def predictor() -> dovit.Predictor:
    torch.manual_seed(0)
    model = dovit.build_model("vit_tiny_patch16_224", num_classes=5, input_size=INPUT_SIZE,
                              decoder_channels=16)
    return dovit.Predictor(model)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    dataset = synthetic_dataset(2, (120, 180), seed=5)  # the input's 2:3 aspect: working size 128 x 192
    return [dataset.load(i)[0] for i in range(len(dataset))]


@pytest.fixture(scope="module")
def runner(predictor, images) -> policies.PolicyRunner:
    return policies.PolicyRunner(predictor, images[0])


def run_recorded(runner, decider) -> list:
    """Run ``decider`` from the runner's cached prefix; the (confidence, aux class, previous keep, new keep)
    it saw at each decision."""
    seen = []
    with torch.inference_mode():
        runner.predictor.run(runner.image, 0.0, decider=Policy(recording(decider, seen)))
    return seen


def recording(decider, seen: list):
    """A KeepDecider that records (confidence, aux class, previous keep, new keep) and defers to
    ``decider``."""
    def decide(decision, confidence, logits, keep):
        new_keep = decider(decision, confidence, logits, keep) & keep
        seen.append((confidence, logits.argmax(dim=1).flatten(1), keep, new_keep))
        return new_keep
    return decide


# ------------------------------------------------------------------ keep rules
def test_least_confident_keep_keeps_the_counts_of_lowest_score():
    score = torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.3], [0.2, 0.8, 0.4, 0.6, 0.99]])
    previous = torch.tensor([[True, True, True, False, True], [True] * 5])
    keep = policies.least_confident_keep(score, previous, torch.tensor([2, 3]))
    assert keep.tolist() == [[False, True, False, False, True], [True, False, True, True, False]]


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.77, 1.0])
def test_topk_keeps_floor_or_ceil_of_the_ratio_and_stops_the_most_confident(ratio):
    generator = torch.Generator().manual_seed(1)
    confidence = torch.rand(3, 50, generator=generator)
    previous = torch.rand(3, 50, generator=generator) < 0.8
    keep = policies.topk_keep(confidence, previous, ratio)
    assert not (keep & ~previous).any()
    for row in range(3):
        before, after = int(previous[row].sum()), int(keep[row].sum())
        assert after in (math.floor(ratio * before), math.ceil(ratio * before))
        stopped = previous[row] & ~keep[row]
        if stopped.any() and keep[row].any():
            assert confidence[row][stopped].min() >= confidence[row][keep[row]].max()


@pytest.mark.parametrize("seed", range(4))
def test_dtop_keeps_at_least_k_of_every_class_present(seed):
    generator = torch.Generator().manual_seed(seed)
    confidence = torch.rand(2, 80, generator=generator)
    aux_class = torch.randint(0, 6, (2, 80), generator=generator)
    previous = torch.rand(2, 80, generator=generator) < 0.7
    keep = policies.dtop_keep(confidence, aux_class, previous, xi=0.0, k=3)  # xi 0: only the context stays
    assert not (keep & ~previous).any()
    for row in range(2):
        for value in aux_class[row][previous[row]].unique().tolist():
            member = previous[row] & (aux_class[row] == value)
            assert int((keep[row] & member).sum()) == min(3, int(member.sum()))
            stopped = confidence[row][member & ~keep[row]]
            if stopped.numel():
                assert confidence[row][keep[row] & member].min() >= stopped.max()
    assert (policies.dtop_keep(confidence, aux_class, previous, xi=0.5, k=3)
            >= policies.confidence_keep(confidence, previous, 0.5)).all()


def test_oracle_stops_only_tokens_the_aux_head_gets_right_above_one():
    confidence = torch.tensor([[0.9, 0.99, 0.2, 0.95]])
    aux_class, dense_class = torch.tensor([[1, 2, 1, 0]]), torch.tensor([[1, 1, 1, 0]])
    previous = torch.ones(1, 4, dtype=torch.bool)
    keep = policies.oracle_keep(confidence, aux_class, dense_class, previous, 1.5)
    assert keep.tolist() == [[False, True, True, False]]
    # below 1 every right token stops and the wrong ones above the threshold too
    keep = policies.oracle_keep(confidence, aux_class, dense_class, previous, 0.98)
    assert keep.tolist() == [[False, False, False, False]]


def test_random_keep_stops_the_counts_and_is_seeded():
    previous = torch.rand(2, 40, generator=torch.Generator().manual_seed(0)) < 0.6
    counts = torch.tensor([5, 0])
    first = policies.random_keep(previous, counts, torch.Generator().manual_seed(7))
    again = policies.random_keep(previous, counts, torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    assert ((previous & ~first).sum(dim=1) == counts).all()


def test_search_budget_lands_on_a_step_function():
    steps = lambda u: float(np.floor(u * 500) + 100)  # noqa: E731
    u, flops = policies.search_budget(steps, 330.0, tolerance=0.002)
    assert abs(flops - 330.0) <= 0.66 and flops == steps(u)
    assert policies.search_budget(steps, 50.0)[0] == 0.0  # below the cheapest setting: the cheap end


# ------------------------------------------------------------------ the forward_from hook
def test_confidence_decider_equals_the_threshold_forward(predictor, images):
    model = predictor.model
    pixels = predictor.preprocess(images[0])
    with torch.inference_mode():
        for xi in (0.2, 0.5, 0.9):
            reference = model(pixels, xi=xi)
            hooked = model(pixels, xi=xi, decider=Policy(policies.make_decider("confidence", xi)))
            assert torch.equal(reference.logits, hooked.logits)
            assert torch.equal(reference.group_tokens, hooked.group_tokens)


def test_a_decider_needs_the_aux_heads(predictor, images):
    pixels = predictor.preprocess(images[0])
    with pytest.raises(ValueError, match="aux heads"):
        predictor.model(pixels, with_aux=False, decider=Policy(policies.make_decider("confidence", 0.5)))
    with pytest.raises(ValueError, match="aux heads"):
        predictor.model(pixels, with_aux=False, decider=Forced([torch.ones(1, 96, dtype=torch.bool)] * 3))


# ------------------------------------------------------------------ policies on the model
def test_budget_one_is_the_dense_model_for_every_policy(runner):
    for name in POLICIES:
        result = runner.run(name, 1.0)
        assert np.array_equal(result.mask, runner.dense_mask), name
        assert result.gflops == pytest.approx(result.dense_gflops) and result.agreement == 1.0
        assert (result.halting_depth == len(runner.model.decision_layers) + 1).all()


@pytest.mark.parametrize("budget", [0.45, 0.7])
def test_every_policy_but_shallow_lands_within_two_percent(predictor, images, budget):
    for image in images:
        for result in policies.run_policies(predictor, image, budget):
            assert result.budget_gflops == pytest.approx(budget * result.dense_gflops)
            if result.name != "shallow":
                assert abs(result.budget_ratio - 1.0) <= 0.02, (result.name, result.budget_ratio, result.note)
            assert result.mask.shape == image.shape[:2] and result.mask.dtype == np.int64
            assert result.halting_depth.shape == (8, 12)
            assert 0.0 <= result.agreement <= 1.0 and result.latency_ms > 0


def test_shallow_takes_the_nearest_cut(runner):
    result = runner.run("shallow", 0.45)
    d = len(runner.model.decision_layers)
    cuts = [runner.flops_of_counts([96] * cut + [0] * (d + 1 - cut)) for cut in range(1, d + 1)]
    assert result.gflops * 1e9 == min(cuts, key=lambda f: abs(f - 0.45 * runner.dense_flops))
    assert len(np.unique(result.halting_depth)) == 1


def test_random_stops_confidences_counts_and_is_seeded(predictor, images, runner):
    confidence, random = runner.run("confidence", 0.6), runner.run("random", 0.6)
    assert random.kept_tokens == confidence.kept_tokens and random.gflops == confidence.gflops
    assert [d.kept for d in random.trace.decisions] == [d.kept for d in confidence.trace.decisions]
    assert np.array_equal(runner.run("random", 0.6).halting_depth, random.halting_depth)
    other = policies.PolicyRunner(predictor, images[0], seed=1).run("random", 0.6)
    assert other.kept_tokens == random.kept_tokens and not np.array_equal(other.halting_depth,
                                                                          random.halting_depth)


def test_topk_counts_in_the_forward(runner):
    seen = run_recorded(runner, policies.make_decider("topk", 0.6))
    for _, _, previous, keep in seen:
        before = int(previous.sum())
        assert int(keep.sum()) in (math.floor(0.6 * before), math.ceil(0.6 * before))


def test_dtop_keeps_k_per_class_in_the_forward(runner):
    seen = run_recorded(runner, policies.make_decider("dtop", 0.0, k=2))
    for _, aux_class, previous, keep in seen:
        for value in aux_class[previous].unique().tolist():
            member = previous & (aux_class == value)
            assert int((keep & member).sum()) >= min(2, int(member.sum()))


def test_oracle_stops_only_tokens_whose_aux_class_is_the_dense_class(runner):
    seen = run_recorded(runner, policies.make_decider("oracle", 1.3, dense_class=runner.dense_class))
    assert any((previous & ~keep).any() for _, _, previous, keep in seen)
    for _, aux_class, previous, keep in seen:
        stopped = previous & ~keep
        assert (aux_class[stopped] == runner.dense_class[stopped]).all()


def test_api_errors(predictor, images):
    with pytest.raises(ValueError, match="unknown policy 'greedy'"):
        policies.run_policies(predictor, images[0], 0.5, policies=["confidence", "greedy"])
    for budget in (0.0, 1.5, -0.1, float("nan"), "half"):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            policies.run_policies(predictor, images[0], budget)
    with pytest.raises(ValueError, match="uint8"):
        policies.run_policies(predictor, images[0].astype(np.float32), 0.5)


def test_run_at_a_given_knob_is_that_forward(runner):
    with torch.inference_mode():
        reference = runner.predictor.run(runner.image, 0.6)
    result = runner.run_at("confidence", 0.6, budget=0.5)
    assert np.array_equal(result.mask, logits_to_mask(reference.logits, result.mask.shape)[0].numpy())
    assert result.kept_tokens == tuple(reference.group_tokens[0].tolist()) and result.budget_gflops > 0
    dense = runner.run_at("oracle", 2.0, budget=0.5)  # tau 2 stops nothing: the dense forward
    assert np.array_equal(dense.mask, runner.dense_mask) and dense.gflops == dense.dense_gflops
