"""python -m dovit.train --preset: the paper's models as a starting point, explicit flags over the preset, and
the one-line errors (exit code 2) for flags, files and drives that a run cannot start with."""
from types import SimpleNamespace

import pytest
import timm
import torch
from conftest import write_drives
from safetensors.torch import save_file

import dovit
from dovit import train
from dovit.training import trainer

# Synthetic data, 48 x 64 inputs (a 3 x 4 token grid), a few steps: fast on two shared CPU cores.
FAST = ["--dataset", "synthetic", "--input-size", "48", "64", "--batch-size", "2", "--warmup-steps", "1",
        "--drop-path", "0", "--eval-every", "0", "--save-every", "1000", "--max-val-images", "2", "--workers",
        "0",
        "--threads", "1", "--no-progress", "--seed", "0"]
INFO = SimpleNamespace(num_classes=3, class_names=["a", "b", "c"], class_colors=[(1, 2, 3), (4, 5, 6), (7, 8,
                                                                                                        9)])


def config_of(*flags: str) -> dovit.ModelConfig:
    return trainer.model_config(train.parse_args(["--stage", "dense", "--output", "unused", *flags]), INFO)


def test_a_preset_sets_the_architecture_sizes_and_xi():
    args = train.parse_args(["--stage", "dovit", "--output", "unused", "--preset",
                             "segmenter_vit_s_cityscapes"])
    assert args.input_size == [768, 768] and args.xi == 0.985  # Cityscapes crop, the paper's best xi
    config = trainer.model_config(args, INFO)
    assert (config.backbone, config.decoder, config.decoder_channels) == ("vit_small_patch16_384",
                                                                          "segmenter", 384)
    assert config.decision_layers == (3, 6, 9) and config.input_size == (768, 768)
    assert config.mean == (0.5, 0.5, 0.5) and config.default_xi == 0.985
    assert config.num_classes == 3 and config.class_names == ["a", "b", "c"]  # the data set's classes win


def test_explicit_flags_override_the_preset():
    config = config_of("--preset", "setr_vit_l_ade20k", "--backbone", "vit_base_patch16_384", "--decoder",
                       "pup",
                       "--decoder-channels", "128", "--decision-layers", "2", "4", "--input-size", "64", "96")
    assert (config.backbone, config.decoder, config.decoder_channels) == ("vit_base_patch16_384", "pup", 128)
    assert config.decision_layers == (2, 4) and config.input_size == (64, 96)
    args = train.parse_args(["--stage", "dovit", "--output", "unused", "--preset", "setr_vit_l_ade20k",
                             "--xi", "0.9"])
    assert args.xi == 0.9


def test_without_a_preset_the_defaults_are_unchanged():
    args = train.parse_args(["--stage", "dovit", "--output", "unused"])
    assert args.input_size == list(trainer.DEFAULT_INPUT_SIZE) and args.xi == trainer.DEFAULT_XI
    config = trainer.model_config(args, INFO)
    assert config.backbone == dovit.ModelConfig.backbone and config.decoder == dovit.ModelConfig.decoder


def test_an_unknown_preset_is_one_line_listing_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--stage", "dense", "--output", "unused", "--preset", "segmenter_vit_x_ade20k"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "unknown preset 'segmenter_vit_x_ade20k'" in error
    assert all(name in error for name in dovit.PRESETS)


def test_a_local_pretrained_file_initialises_the_preset_backbone(tmp_path):
    torch.manual_seed(1)
    weights = {k: v.contiguous() for k, v in timm.create_model("vit_tiny_patch16_384",
                                                               num_classes=0).state_dict().items()}
    path = tmp_path / "vit_tiny_patch16_384.safetensors"
    save_file(weights, str(path))
    args = train.parse_args(["--stage", "dense", "--output", "unused", "--preset", "segmenter_vit_t_ade20k",
                             "--input-size", "32", "48", "--pretrained", str(path)])
    model = trainer.build_student(args, INFO)
    key = "blocks.5.mlp.fc1.weight"
    assert torch.equal(model.vit.state_dict()[key], weights[key])


def test_a_preset_trains_and_saves_a_checkpoint_of_its_architecture(tmp_path):
    output = tmp_path / "run"
    assert train.main(["--stage", "dense", "--output", str(output), "--preset", "segmenter_vit_t_ade20k",
                       "--steps", "2", *FAST]) == 0
    model = dovit.load_checkpoint(output / "last")
    config = model.config
    assert (config.backbone, config.decoder, config.decoder_channels) == ("vit_tiny_patch16_384", "segmenter",
                                                                          192)
    assert model.decision_layers == (3, 6, 9) and config.input_size == (48, 64)
    assert config.mean == (0.5, 0.5, 0.5) and config.default_xi == 0.98 and config.num_classes == 3
    assert model.checkpoint_metadata["args"]["preset"] == "segmenter_vit_t_ade20k"


# ------------------------------------------------------------------------------ one-line errors, exit code 2
@pytest.mark.parametrize("flags,message", [
    (["--pretrained", "missing.safetensors"], "--pretrained: no such file: missing.safetensors"),
    (["--decision-layers", "3", "6", "20"], "decision_layers must be increasing in [1, 11]"),
    (["--backbone", "vit_tiny_patch16"], "unknown backbone 'vit_tiny_patch16'"),
    (["--decoder", "skip"], "stem='conv'"),
    (["--decoder", "segmenter", "--decoder-channels", "100"], "multiple of 64"),
    (["--preset", "setr_vit_t_ade20k", "--init", "some/checkpoint"], "--preset"),
    (["--init", "no/such/checkpoint"], "--init: "),
])
def test_bad_flags_and_files_are_one_line_errors(tmp_path, capsys, flags, message):
    output = tmp_path / "run"
    assert train.main(["--stage", "dense", "--output", str(output), "--steps", "1", *FAST, *flags]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0], error
    assert not output.exists()  # nothing written for a run that could not start


def test_an_unknown_drive_is_one_line_from_main_and_a_value_error_from_train(tmp_path, capsys):
    write_drives(tmp_path / "data", {"0001TP": 2, "0006R0": 2})
    argv = ["--stage", "dense", "--output", str(tmp_path / "run"), "--steps", "1", "--data-root",
            str(tmp_path / "data"), "--val-split", "train", "--val-sequences", "0005VD",
            *[("camvid" if a == "synthetic" else a) for a in FAST]]
    assert train.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "0005VD" in error[0] and "0001TP (2)" in error[0], error
    with pytest.raises(ValueError, match=r"0005VD.*0001TP \(2\)"):  # the library function still raises
        trainer.train(train.parse_args(argv))
