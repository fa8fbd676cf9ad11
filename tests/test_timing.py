"""dovit.evaluation.timing: forced kept fractions, interleaved rounds, per-round ratios, autocast."""
import torch

from dovit.evaluation import timing


def test_forced_masks_keep_the_requested_fraction():
    masks = timing.forced_masks(3, 200, 0.25)
    assert len(masks) == 3 and all(int(m.sum()) == 50 for m in masks)


def test_forced_masks_give_every_image_its_own_tokens_and_the_same_count():
    masks = timing.forced_masks(2, 100, 0.5, batch=3)
    assert masks[0].shape == (3, 100) and masks[0].sum(1).tolist() == [50, 50, 50]
    assert not torch.equal(masks[0][0], masks[0][1])


def test_variants_are_timed_interleaved_never_all_of_one_first():
    calls = []
    times = timing.interleaved_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                        warmup=1, rounds=3, device="cpu")
    assert calls == ["a", "b"] * 4
    assert [len(t) for t in times.values()] == [3, 3]


def test_ratio_summary_takes_per_round_ratios():
    summary = timing.ratio_summary([10.0, 30.0, 20.0], [5.0, 10.0, 20.0])
    assert summary == {"median": 2.0, "min": 1.0, "max": 3.0}


def test_autocast_runs_matrix_products_in_the_dtype_and_float32_as_is():
    layer = torch.nn.Linear(4, 4)
    with timing.autocast("cpu", "bfloat16"):
        assert layer(torch.ones(1, 4)).dtype == torch.bfloat16
    with timing.autocast("cpu", "float32"):
        assert layer(torch.ones(1, 4)).dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
