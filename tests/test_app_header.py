"""app.ui.header_markdown: a pure function of the Predictor; names the decoder kind and a converted source."""
import torch

import dovit
from app.ui import header_markdown


def _predictor(metadata=None, **options) -> dovit.Predictor:
    torch.manual_seed(0)
    config = dovit.ModelConfig(backbone="vit_tiny_patch16_224", num_classes=5, input_size=(64, 96), **options)
    return dovit.Predictor(dovit.DoViTSegmenter(config, metadata=metadata).eval())


def test_header_names_the_segmenter_decoder_and_the_converted_source():
    header = header_markdown(
        _predictor(
            {"stage": "converted", "converted_from": "segmenter_vit-t.pth", "format": "dovit-official"},
            decoder="segmenter",
            decoder_channels=64,
        )
    )
    assert "decoder Segmenter mask transformer (2 layers) (64 ch)" in header
    assert "converted from `segmenter_vit-t.pth` (dovit-official format)" in header
    assert "stage: converted" in header and "converted_from:" not in header  # said once, in its own line


def test_header_of_a_trained_checkpoint_has_no_source_line(tiny_model):
    header = header_markdown(dovit.Predictor(tiny_model))
    assert "decoder SETR-Naive (256 ch)" in header and "converted from" not in header
    assert "decision layers after blocks 3, 6, 9" in header


def test_a_source_name_cannot_break_out_of_its_code_span():
    header = header_markdown(_predictor({"converted_from": "a`b<script>.pth"}, decoder="naive_up4"))
    assert "converted from `ab" in header and "<script>" not in header and "SETR-Naive (MMSeg's" in header


def test_header_says_a_calibrated_model_came_from_a_dense_one_without_labels():
    calibration = {"source": "checkpoints/camvid_dense_vit_tiny", "images": "my_photos", "image_count": 305,
                   "train": "aux", "default_xi": 0.93, "target_agreement": 0.97, "curve": [{"xi": 1.0}]}
    header = header_markdown(_predictor({"stage": "calibrated", "calibration": calibration}))
    assert ("calibrated without labels from `checkpoints/camvid_dense_vit_tiny` on 305 images of `my_photos` "
            "(trained: aux); its label-free rule picked ξ 0.93 (masks agree with the dense model's on 0.97 "
            "of the pixels)") in header
    assert "stage: calibrated" in header and "curve" not in header
