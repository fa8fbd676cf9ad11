"""Paper presets: every one builds (on the meta device: no memory), with the paper's layers and sizes."""
import pytest
import torch

from dovit.training.presets import PRESETS, build_preset, preset_config


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_builds_on_the_meta_device(name):
    with torch.device("meta"):
        model = build_preset(name)
    config = model.config
    depth = len(model.vit.blocks)
    assert model.decision_layers == ((6, 12, 18) if depth == 24 else (3, 6, 9))
    assert config.input_size == ((512, 512) if name.endswith("ade20k") else (768, 768))
    assert config.num_classes == (150 if name.endswith("ade20k") else 19)
    assert config.class_names[0] == ("wall" if name.endswith("ade20k") else "road")
    assert config.class_colors[0] == ((120, 120, 120) if name.endswith("ade20k") else (128, 64, 128))
    assert config.decoder == ("segmenter" if name.startswith("segmenter") else "naive_up4")
    if config.decoder == "segmenter":
        assert config.decoder_channels == model.embed_dim and config.mean == (0.5, 0.5, 0.5)


def test_a_preset_runs_at_a_tiny_input():
    torch.manual_seed(0)
    model = build_preset("segmenter_vit_t_cityscapes", input_size=(32, 48)).eval()
    assert model.config.class_names[0] == "road"
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 48), xi=0.9)
    assert out.logits.shape == (1, 19, 32, 48) and len(out.keep_masks) == 3


def test_overriding_the_classes_drops_the_dataset_names():
    with torch.device("meta"):
        model = build_preset("setr_vit_b_cityscapes", num_classes=11)
    assert model.config.num_classes == 11 and model.config.class_names[0] == "class 0"


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="segmenter_vit_s_ade20k"):
        preset_config("segmenter_vit_x_ade20k")


def test_missing_pretrained_file_is_an_error_not_a_download(tmp_path):
    with pytest.raises(FileNotFoundError):
        build_preset("setr_vit_t_ade20k", pretrained=tmp_path / "missing.safetensors")
