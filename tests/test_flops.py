import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import dovit
from dovit.core.flops import count_flops, forward_flops


def _relative_gap(counted: int, analytic: int) -> float:
    return abs(counted - analytic) / analytic


@pytest.mark.parametrize("options", [dict(), dict(stem="conv"), dict(decoder="pup", decoder_channels=32),
                                     dict(stem="conv", decoder="skip", decoder_channels=32),
                                     dict(merge_stopped=False),
                                     dict(decoder="segmenter", decoder_channels=64),
                                     dict(decoder="naive_up4", decoder_channels=32),
                                     dict(aux_head="fcn", aux_head_channels=64),
                                     dict(aux_head="setr_up", aux_head_channels=32, merge_stopped=False)])
@pytest.mark.parametrize("xi", [1.0, 0.5, 0.3, 0.0])
def test_analytic_flops_agree_with_the_counter(options, xi):
    torch.manual_seed(0)
    model = dovit.build_model("vit_tiny_patch16_224", 5, input_size=(96, 128), **options).eval()
    pixels = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        counted, out = count_flops(model, pixels, xi=xi)
    analytic = forward_flops(model, out.grid, out.group_tokens[0].tolist(), len(out.aux_logits))
    assert _relative_gap(counted, analytic.total) <= 0.01
    all_kept = bool(out.group_tokens[0].eq(6 * 8).all())
    assert (analytic.backbone == analytic.dense_backbone) == all_kept
    assert analytic.backbone <= analytic.dense_backbone
    if xi == 1.0:
        assert analytic.total == analytic.dense_total


def test_cpu_attention_is_counted():
    """torch 2.14 has no formula for the CPU flash-attention op; without ours attention counts as 0."""
    model = dovit.build_model("vit_tiny_patch16_224", 5, input_size=(96, 128)).eval()
    pixels = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        with FlopCounterMode(display=False) as plain:
            model(pixels)
        counted, _ = count_flops(model, pixels)
    n, e, depth = 6 * 8 + 1, model.embed_dim, len(model.vit.blocks)
    attention = 4 * n * n * e * depth
    assert counted - plain.get_total_flops() == attention


def test_token_pass_flops_scale_with_kept_tokens(tiny_model):
    formula = dovit.core.flops.flop_formula(tiny_model, (4, 6))
    assert formula.block(0) > 0
    assert formula.block(24) > formula.block(12) > formula.block(0)
    # Attention is quadratic: doubling the sequence more than doubles the attention term.
    assert formula.block(2 * 11 + 1) - 2 * formula.block(11) > 0


@pytest.mark.parametrize("grid,classes,channels", [((3, 4), 2, 64), ((5, 7), 19, 128)])
def test_segmenter_decoder_flops_agree_with_the_counter(grid, classes, channels):
    decoder = dovit.core.decoders.build_decoder("segmenter", 48, classes, channels).eval()
    with torch.no_grad():
        counted, _ = count_flops(decoder, torch.randn(1, 48, *grid))
    assert _relative_gap(counted, decoder.flops(grid)) <= 0.01
