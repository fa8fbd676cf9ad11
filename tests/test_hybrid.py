"""The hybrid DoViT (dovit.core.hybrid): ESPNetv2's encoder as patch embedding, its decoder as the head."""

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import dovit
from dovit.core import espnetv2
from dovit.core.checkpoint import load_checkpoint, save_checkpoint
from dovit.core.flops import count_flops, flop_formula
from dovit.core.hybrid import ReleasedTeacher, build_hybrid, load_released_espnetv2
from dovit.data.datasets import CAMVID_CLASSES

CAMVID = CAMVID_CLASSES
RELEASED = (
    Path(__file__).resolve().parents[1]
    / "../shared/data/pretrained/espnetv2/espnetv2_s_2.0_city_1024x512.pth"
)


def _released() -> Path:
    if not RELEASED.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{RELEASED} is missing on CI")
        pytest.skip("the released ESPNetv2 weights (../shared/data/pretrained) are not here")
    return RELEASED


def _hybrid(**options) -> dovit.DoViTSegmenter:
    torch.manual_seed(0)
    model = dovit.build_model(
        num_classes=11,
        class_names=CAMVID,
        stem="espnetv2",
        decoder="espnetv2",
        input_size=(64, 96),
        **options,
    )
    with torch.no_grad():  # the zero-initialised entry of the tokens into the decoder, opened
        model.decoder.inject.weight.normal_(0, 0.05)
    return model.eval()


def _pixels(batch: int = 1, size=(64, 96)) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def test_xi_one_equals_the_dense_hybrid_exactly():
    model = _hybrid()
    pixels = _pixels(2)
    dense = model(pixels, xi=1.0)
    with_aux = model(pixels, xi=1.0, with_aux=True)
    assert torch.equal(dense.logits, with_aux.logits)
    assert all(bool(mask.all()) for mask in with_aux.keep_masks)


@torch.no_grad()
def test_the_hybrid_token_grid_is_one_token_per_16_pixels_and_stopped_tokens_shrink_the_work():
    model = _hybrid()
    out = model(_pixels(1), xi=0.0)
    assert out.grid == (4, 6)
    assert out.logits.shape == (1, 11, 64, 96)
    assert out.group_tokens[0, 0] == 24 and out.group_tokens[0, -1] == 0


@torch.no_grad()
def test_flops_count_the_stem_and_the_encoders_decoder():
    model = _hybrid()
    formula = flop_formula(model, (4, 6))
    measured_stem = count_flops(model.vit.patch_embed, _pixels(1))[0]
    assert formula.embed == measured_stem > 0
    with espnetv2.as_written():  # the network's own operations: the group conv, not the dense merge
        measured, _ = count_flops(model, _pixels(1), xi=1.0)
    analytic = formula.embed + formula.decoder + 12 * formula.block(24)
    assert abs(measured - analytic) / measured < 0.02
    fast, _ = count_flops(model, _pixels(1), xi=1.0)  # the dense merge multiplies zeros too: not counted
    assert fast > measured


def test_decoder_and_stem_go_together_and_need_mappable_classes():
    with pytest.raises(ValueError, match="go together"):
        dovit.build_model(num_classes=11, class_names=CAMVID, stem="espnetv2", decoder="naive")
    with pytest.raises(ValueError, match="no Cityscapes class maps"):
        dovit.build_model(num_classes=2, class_names=["Sky", "Lava"], stem="espnetv2", decoder="espnetv2")
    with pytest.raises(FileNotFoundError, match="ESPNetv2 weights not found"):
        espnetv2.load_released_state("/nonexistent/espnetv2.pth")


def test_a_frozen_encoder_keeps_its_statistics_and_gets_no_gradient():
    model = _hybrid()
    model.vit.patch_embed.freeze_encoder()
    model.train()
    assert not model.vit.patch_embed.encoder.training and model.vit.patch_embed.proj.training
    before = {k: v.clone() for k, v in model.vit.patch_embed.encoder.state_dict().items()}
    model(_pixels(2), xi=1.0).logits.sum().backward()
    assert all(p.grad is None for p in model.vit.patch_embed.encoder.parameters())
    assert model.vit.patch_embed.proj.weight.grad is not None
    after = model.vit.patch_embed.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@torch.no_grad()
def test_before_training_the_hybrid_gives_the_released_networks_answers():
    released = _released()
    model = build_hybrid(released, class_names=CAMVID, num_classes=11, input_size=(64, 96)).eval()
    reference = espnetv2.ESPNetv2Segmentation()
    reference.load_released(released)
    reference.eval()
    pixels = _pixels(1, (96, 128))
    expected = espnetv2.group_logits(reference.decoder(*reference.base_net(pixels)), model.decoder.groups)
    expected = F.interpolate(expected, size=(96, 128), mode="bilinear", align_corners=False)
    logits = model(pixels, xi=1.0).logits  # channels-last kernels: equal up to float rounding
    assert torch.allclose(logits, expected, atol=1e-4) and logits.argmax(1).eq(expected.argmax(1)).all()
    teacher = ReleasedTeacher(released, CAMVID)
    teacher.train()
    assert not teacher.training
    assert (
        teacher(pixels)
        .argmax(1)
        .eq(espnetv2.group_logits(reference(pixels), model.decoder.groups).argmax(1))
        .all()
    )


def test_folded_batchnorms_give_the_default_students_answers_on_a_street_frame():
    """Eval mode without gradients runs ESPNetv2's conv + BatchNorm pairs (stem and decoder) as single convs:
    the same logits as the modules as written, up to float rounding, at the studio's size and default xi."""
    import numpy as np
    from PIL import Image

    from dovit.core.predictor import default_checkpoint

    model = load_checkpoint(default_checkpoint()).eval()
    street = Path(__file__).resolve().parents[1] / "assets/synthetic_street.png"
    rgb = torch.from_numpy(np.asarray(Image.open(street).convert("RGB"), dtype=np.float32) / 255.0)
    mean, std = torch.tensor(model.config.mean), torch.tensor(model.config.std)
    pixels = ((rgb - mean) / std).permute(2, 0, 1)[None]
    pixels = F.interpolate(pixels, size=tuple(model.config.input_size), mode="bilinear", align_corners=False)
    xi = model.config.default_xi
    with torch.inference_mode():
        folded = model(pixels, xi=xi)
        with espnetv2.as_written():
            unfolded = model(pixels, xi=xi)
    difference = float((folded.logits - unfolded.logits).abs().max())
    agreement = float(folded.logits.argmax(1).eq(unfolded.logits.argmax(1)).float().mean())
    assert difference < 1e-3 and agreement >= 0.999, f"max |diff| {difference:.2e}, argmax {agreement:.4%}"
    assert torch.equal(folded.group_tokens, unfolded.group_tokens)


def test_a_hybrid_checkpoint_is_self_contained(tmp_path, monkeypatch):
    model = _hybrid()
    save_checkpoint(model, tmp_path / "hybrid")

    def no_released_file(path):
        raise AssertionError(f"a saved hybrid must not read {path}")

    monkeypatch.setattr(espnetv2, "load_released_state", no_released_file)
    loaded = load_checkpoint(tmp_path / "hybrid").eval()
    pixels = _pixels(1)
    with torch.no_grad():
        assert torch.equal(model(pixels, xi=0.9).logits, loaded(pixels, xi=0.9).logits)


def test_released_weights_load_strictly_into_the_hybrid():
    released = _released()
    model = _hybrid()
    load_released_espnetv2(model, released)
    state = espnetv2.load_released_state(released)
    assert torch.equal(model.vit.patch_embed.encoder.level1.conv.weight, state["base_net.level1.conv.weight"])
    assert torch.equal(
        model.decoder.decoder.bu_dec_l4.merge_layer[3].bias, state["bu_dec_l4.merge_layer.3.bias"]
    )


def test_the_default_checkpoint_is_the_hybrid_student_and_loads_offline(monkeypatch):
    """No network and no ../shared at run time: the encoder's weights travel in the checkpoint."""
    from dovit.core.predictor import default_checkpoint

    def no_released_file(path):
        raise AssertionError(f"the default checkpoint must not read {path}")

    monkeypatch.setattr(espnetv2, "load_released_state", no_released_file)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_checkpoint(default_checkpoint()).eval()
    assert (model.config.stem, model.config.decoder) == ("espnetv2", "espnetv2")
    pixels = _pixels(1, (96, 128))
    with torch.no_grad():
        dense, with_aux = model(pixels, xi=1.0), model(pixels, xi=1.0, with_aux=True)
        student = model(pixels, xi=model.config.default_xi)
    assert torch.equal(dense.logits, with_aux.logits)
    assert student.group_tokens[0, -1] < student.group_tokens[0, 0]
