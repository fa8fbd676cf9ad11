"""dovit.core.trace: the Trace agrees with itself (halting depth, keep masks, kept counts, FLOPs) and with its
JSON."""
import json

import numpy as np
import pytest
import torch

from dovit import Predictor
from dovit.core.trace import halting_counts, token_centres, top_classes


@pytest.fixture(scope="module")
def traces(tiny_model):
    image = np.random.default_rng(3).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    predictor = Predictor(tiny_model)
    return {xi: predictor.predict(image, xi=xi).trace for xi in (0.0, 0.4, 0.7, 1.0)}


@pytest.mark.parametrize("xi", [0.0, 0.4, 0.7, 1.0])
def test_halting_depth_keep_masks_and_kept_counts_agree(traces, xi):
    trace = traces[xi]
    depth = trace.halting_depth
    assert depth.shape == trace.grid and depth.min() >= 1 and depth.max() <= len(trace.groups)
    previous = np.ones(trace.grid, bool)
    for index, decision in enumerate(trace.decisions):
        assert not (decision.keep_mask & ~previous).any()  # Eq. 5: a stopped token never returns
        assert np.array_equal(decision.stopped_here, previous & ~decision.keep_mask)
        assert np.array_equal(decision.stopped_here, depth == index + 1)  # stopped after group B_{index+1}
        assert decision.kept == int(decision.keep_mask.sum()) == trace.groups[index + 1].tokens
        previous = decision.keep_mask
    assert np.array_equal(previous, depth == len(trace.groups))  # the rest ran every block
    assert trace.groups[0].tokens == trace.num_tokens == trace.grid[0] * trace.grid[1]


@pytest.mark.parametrize("xi", [0.0, 0.4, 1.0])
def test_flops_add_up_and_the_json_says_what_the_trace_does(traces, xi):
    trace = traces[xi]
    assert trace.flops == trace.backbone_flops + trace.aux_head_flops + trace.decoder_flops
    assert trace.flops_saved == pytest.approx(1.0 - trace.flops / trace.dense_flops)
    document = json.loads(json.dumps(trace.to_json()))
    assert document["grid"] == list(trace.grid) and document["kept_tokens"] == [g.tokens
                                                                                for g in trace.groups]
    assert np.array_equal(np.array(document["halting_group"]), trace.halting_depth)
    assert np.allclose(document["confidence"], [d.confidence for d in trace.decisions], atol=1e-5)
    if xi == 0.0:  # every token stops at the first decision
        assert document["kept_tokens"][1:] == [0] * (len(trace.groups) - 1) and trace.flops_saved > 0


def test_token_centres_and_top_classes():
    rows, cols = token_centres((2, 3), (20, 40), 16)  # the last column is cut short by the padding
    assert rows.tolist() == [8, 18] and cols.tolist() == [8, 24, 36]
    logits = torch.tensor([[[0.0]], [[2.0]], [[1.0]]])  # (C=3, 1, 1)
    classes, probabilities = top_classes(logits, k=5)  # k is cut to C
    assert classes[0, 0].tolist() == [1, 2, 0] and np.isclose(probabilities[0, 0].sum(), 1.0)
    assert probabilities[0, 0, 0] == pytest.approx(float(torch.softmax(logits[:, 0, 0], 0).max()))


@pytest.mark.parametrize("xi", [0.0, 0.4, 0.7, 1.0])
def test_halting_by_class_counts_every_token_once_by_its_class_and_group(traces, xi):
    trace = traces[xi]
    halting = trace.halting_by_class()
    assert halting.counts.shape == (len(trace.class_names), len(trace.groups))
    assert halting.counts.sum() == trace.num_tokens
    expected = np.zeros_like(halting.counts)  # token by token, the slow way
    for row in range(trace.grid[0]):
        for col in range(trace.grid[1]):
            expected[trace.decoder_top_classes[row, col, 0], trace.halting_depth[row, col] - 1] += 1
    assert np.array_equal(halting.counts, expected)
    if xi == 1.0:  # nothing stops: every token ran to the end
        assert halting.counts[:, :-1].sum() == 0


def test_halting_counts_by_hand():
    depth = np.array([[1, 3, 3], [2, 1, 3]])  # group after which each token stopped; 3 = ran every block
    classes = np.array([[0, 0, 2], [2, 2, 1]])
    counts = halting_counts(depth, classes, num_classes=4, num_groups=3)
    assert counts.tolist() == [[1, 0, 1], [0, 0, 1], [1, 1, 1], [0, 0, 0]]


def test_halting_by_class_json_names_every_class_and_sums_to_the_grid(traces):
    trace = traces[0.7]
    document = json.loads(json.dumps(trace.to_json()))["halting_by_class"]
    assert list(document) == trace.class_names
    assert all(len(counts) == len(trace.groups) for counts in document.values())
    assert sum(map(sum, document.values())) == trace.grid[0] * trace.grid[1]
    assert document == trace.halting_by_class().to_json()
