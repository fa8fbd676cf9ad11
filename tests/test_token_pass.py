import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dovit.core import token_pass as tp


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 3), tokens=st.integers(1, 40), kept=st.integers(0, 40), seed=st.integers(0,
                                                                                                     10_000))
def test_scatter_inverts_gather(batch, tokens, kept, seed):
    """R(G(T, M), I) = T for any equal-count mask; updated kept tokens land exactly at their positions."""
    kept = min(kept, tokens)
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(batch, tokens, 8, generator=generator)
    keep = torch.zeros(batch, tokens, dtype=torch.bool)
    for row in range(batch):
        keep[row, torch.randperm(tokens, generator=generator)[:kept]] = True
    indices, valid = tp.padded_kept_indices(keep)
    assert bool(valid.all())  # equal counts: no padding
    gathered = tp.gather_tokens(values, indices)
    assert gathered.shape == (batch, kept, 8)
    assert torch.equal(tp.scatter_tokens(values, gathered, indices), values)
    # Indices ascend and point at kept positions only.
    assert bool((indices[:, 1:] > indices[:, :-1]).all())
    assert bool(keep.gather(1, indices).all())
    updated = tp.scatter_tokens(values, gathered + 1.0, indices)
    assert torch.equal(updated[keep], values[keep] + 1.0)
    assert torch.equal(updated[~keep], values[~keep])


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 4), tokens=st.integers(1, 40), seed=st.integers(0, 10_000))
def test_padded_gather_and_masked_scatter_with_different_counts(batch, tokens, seed):
    """Any kept counts: each row lists its kept positions ascending, then distinct stopped positions as
    padding; scattering back writes the valid entries only, so padding never changes a stopped token."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(batch, tokens, 8, generator=generator)
    keep = torch.rand(batch, tokens, generator=generator) < torch.rand(batch, 1, generator=generator)
    indices, valid = tp.padded_kept_indices(keep)
    counts = keep.sum(1)
    assert indices.shape == valid.shape == (batch, int(counts.max()))
    assert torch.equal(valid.sum(1), counts)
    for row in range(batch):
        k = int(counts[row])
        assert indices[row, :k].tolist() == keep[row].nonzero().flatten().tolist()
        assert not bool(keep[row, indices[row, k:]].any())
        assert len(set(indices[row].tolist())) == indices.shape[1]
    gathered = tp.gather_tokens(values, indices)
    updated = tp.scatter_tokens(values, gathered + 1.0, indices, valid)
    assert torch.equal(updated[keep], values[keep] + 1.0)
    assert torch.equal(updated[~keep], values[~keep])
    assert torch.equal(tp.scatter_tokens(values, gathered, indices, valid), values)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 700), min_size=1, max_size=12), overhead=st.floats(0.0, 5000.0))
def test_packing_partitions_the_batch_at_no_more_than_the_simple_plans_cost(counts, overhead):
    """Every image runs exactly once; the plan costs no more than one padded forward or one per image."""
    groups = tp.pack_by_kept_count(counts, 1, 192, overhead)
    assert sorted(i for group in groups for i in group) == list(range(len(counts)))
    assert all(group == sorted(group) for group in groups)

    def cost(plan):
        return sum(overhead + len(g) * (1 + max(counts[i] for i in g)) * (1 + (1 + max(counts[i]
                                                                                       for i in g)) / 1152)
                   for g in plan)

    assert cost(groups) <= cost([list(range(len(counts)))]) + 1e-6
    assert cost(groups) <= cost([[i] for i in range(len(counts))]) + 1e-6


def test_packing_extremes():
    assert tp.pack_by_kept_count([5, 300, 5, 120], 1, 192, float("inf")) == [[0, 1, 2, 3]]
    assert tp.pack_by_kept_count([5, 300, 5, 120], 1, 192, 0.0) == [[1], [3], [0, 2]]
    assert tp.pack_by_kept_count([40] * 6, 1, 192, 0.0) == [[0, 1, 2, 3, 4, 5]]  # equal counts: one forward
    assert tp.pack_by_kept_count([200, 199, 198, 10], 1, 192, 16.0) == [[0, 1, 2], [3]]


def test_key_padding_mask_attends_to_prefix_and_real_tokens_only():
    valid = torch.tensor([[True, True, False], [True, False, False]])
    mask = tp.key_padding_mask(valid, num_prefix_tokens=1)
    assert mask.shape == (2, 1, 1, 4) and mask.dtype == torch.bool
    assert mask[:, 0, 0].tolist() == [[True, True, True, False], [True, True, False, False]]


def test_masked_attention_over_padding_equals_attention_over_real_tokens():
    """What the padded path relies on: SDPA with the key-padding mask gives the unpadded rows' result."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 4, generator=generator) for _ in range(3))
    padded = [torch.cat([t, torch.randn(1, 2, 3, 4, generator=generator)], dim=2) for t in (q, k, v)]
    mask = tp.key_padding_mask(torch.tensor([[True] * 4 + [False] * 3]), num_prefix_tokens=1)
    out = torch.nn.functional.scaled_dot_product_attention(*padded, attn_mask=mask)[:, :, :5]
    assert torch.allclose(out, torch.nn.functional.scaled_dot_product_attention(q, k, v), atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), xis=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4))
def test_keep_masks_are_monotone(seed, xis):
    """Eq. 5: M_l = M~_l * M_{l-1}, so a stopped token never returns, whatever the thresholds."""
    generator = torch.Generator().manual_seed(seed)
    keep = torch.ones(2, 30, dtype=torch.bool)
    for xi in xis:
        confidence = torch.rand(2, 30, generator=generator)
        new_keep = tp.decide_keep(confidence, xi, keep)
        assert not bool((new_keep & ~keep).any())
        assert bool((~new_keep[keep] == (confidence[keep] > xi)).all())
        keep = new_keep


def test_confidence_is_max_softmax():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    confidence = tp.token_confidence(logits)
    expected = torch.softmax(logits, -1).amax(-1)
    assert torch.allclose(confidence, expected)
    assert abs(confidence[0, 1].item() - 1 / 3) < 1e-6


def test_equalise_keeps_mean_count_of_least_confident():
    confidence = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.2, 0.4, 0.95, 0.99]])
    previous = torch.tensor([[True, True, True, True], [True, True, True, False]])
    keep = tp.decide_keep(confidence, 0.35, previous)  # counts: row0 {0.1, 0.3} = 2, row1 {0.2} = 1
    equal = tp.equalise_keep(confidence, keep, previous)
    assert equal.sum(1).tolist() == [2, 2]  # round(mean(2, 1)) = 2 (round half to even)
    assert equal[0].tolist() == [True, False, False, True]
    assert equal[1].tolist() == [True, True, False, False]  # least confident two among previously kept
    assert not bool((equal & ~previous).any())


def test_merge_blends_mean_of_newly_stopped_into_class_token():
    class_token = torch.ones(2, 1, 3)
    tokens = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    stopped = torch.tensor([[True, False, True, False], [False, False, False, False]])
    merged = tp.merge_stopped_into_class_token(class_token, tokens, stopped)
    expected = 0.5 * class_token[0, 0] + tokens[0, [0, 2]].mean(0)
    assert torch.allclose(merged[0, 0], expected)
    assert torch.equal(merged[1], class_token[1])  # nothing stopped: unchanged (xi = 1 stays dense)


def test_halting_depth_counts_the_group_a_token_stopped_after():
    masks = [
        torch.tensor([[True, True, False]]),
        torch.tensor([[True, False, False]]),
        torch.tensor([[True, False, False]]),
    ]
    assert tp.halting_depth(masks).tolist() == [[4, 2, 1]]
