"""Decoders: Segmenter's mask transformer (shapes, its definition, config checks, training, Predictor)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dovit
from dovit import train
from dovit.core.decoders import SegmenterMaskTransformer, build_decoder


@pytest.fixture(scope="module")
def segmenter_model():
    torch.manual_seed(0)
    return dovit.build_model("vit_tiny_patch16_224", 5, input_size=(64, 96), decoder="segmenter",
                             decoder_channels=64).eval()


def test_segmenter_masks_are_normalised_class_feature_products():
    """The definition, written out: cosine similarities of patch and class features, LayerNorm over
    classes."""
    torch.manual_seed(0)
    decoder = build_decoder("segmenter", embed_dim=32, num_classes=3, channels=64).eval()
    feature_map = torch.randn(2, 32, 4, 5)
    with torch.no_grad():
        masks = decoder(feature_map)
        x = decoder.project(feature_map.flatten(2).transpose(1, 2))
        x = torch.cat([x, decoder.class_embedding.expand(2, -1, -1)], dim=1)
        for block in decoder.blocks:
            x = block(x)
        x = decoder.norm(x)
        patches, classes = decoder.patch_proj(x[:, :20]), decoder.classes_proj(x[:, 20:])
        cosine = F.cosine_similarity(patches[:, :, None], classes[:, None], dim=-1)  # (B, N, C)
        expected = F.layer_norm(cosine, (3,), decoder.mask_norm.weight, decoder.mask_norm.bias)
    assert masks.shape == (2, 3, 4, 5)
    torch.testing.assert_close(masks, expected.transpose(1, 2).reshape(2, 3, 4, 5), atol=1e-5, rtol=1e-5)
    assert len(decoder.blocks) == 2 and decoder.blocks[0].attn.num_heads == 1


def test_segmenter_patches_do_not_depend_on_batch_mates():
    torch.manual_seed(0)
    decoder = SegmenterMaskTransformer(16, 4, 64).eval()
    maps = torch.randn(3, 16, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(decoder(maps)[1:2], decoder(maps[1:2]), atol=1e-5, rtol=1e-5)


def test_segmenter_model_xi_one_equals_dense_and_token_pass_runs(segmenter_model):
    pixels = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        dense = segmenter_model(pixels, xi=1.0)
        also_dense = segmenter_model(pixels, xi=1.0, with_aux=True)
        sparse = segmenter_model(pixels, xi=0.0)
    assert dense.logits.shape == (2, 5, 64, 96)
    torch.testing.assert_close(dense.logits, also_dense.logits)
    assert int(sparse.group_tokens[:, -1].max()) == 0 and torch.isfinite(sparse.logits).all()


@pytest.mark.parametrize("channels", [32, 100])
def test_segmenter_channels_must_be_whole_heads(channels):
    with pytest.raises(ValueError, match="multiple of 64"):
        dovit.ModelConfig(decoder="segmenter", decoder_channels=channels)


def test_predictor_on_a_segmenter_model_returns_mask_and_trace(segmenter_model):
    image = np.random.default_rng(0).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    prediction = dovit.Predictor(segmenter_model).predict(image, xi=0.4)
    assert prediction.mask.shape == (70, 100) and 0 <= prediction.mask.min() <= prediction.mask.max() < 5
    trace = prediction.trace
    assert trace.decoder_flops == segmenter_model.decoder.flops(trace.grid) > 0
    assert trace.flops == trace.backbone_flops + trace.aux_head_flops + trace.decoder_flops
    assert trace.grid == (5, 6)  # 70 x 100 at its own aspect, 64 x 96 pixels of budget: 66 x 94, padded
    assert [d.confidence.shape for d in trace.decisions] == [trace.grid] * 3


def test_segmenter_checkpoint_round_trip(segmenter_model, tmp_path):
    dovit.save_checkpoint(segmenter_model, tmp_path / "seg")
    loaded = dovit.load_checkpoint(tmp_path / "seg").eval()
    assert loaded.config.decoder == "segmenter"
    pixels = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels).logits, segmenter_model(pixels).logits)


def test_train_with_the_segmenter_decoder(tmp_path):
    argv = ["--stage", "dense", "--dataset", "synthetic", "--decoder", "segmenter", "--input-size", "48",
            "64",
            "--steps", "3", "--threads", "1", "--workers", "0", "--no-progress", "--output", str(tmp_path)]
    assert train.main(argv) == 0
    assert dovit.read_config(tmp_path / "last")[0].decoder == "segmenter"


def test_every_configurable_decoder_has_a_builder():
    from dovit.core.config import DECODERS
    from dovit.core.decoders import DECODER_BUILDERS

    assert set(DECODER_BUILDERS) == set(DECODERS)
