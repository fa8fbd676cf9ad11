"""python -m dovit.convert: conversions from the command line, --help, one-line refusals."""
import numpy as np
import pytest
import torch
from test_mmseg_checkpoint import (  # noqa: F401 (mmseg: the fixture)
    CLASSES,
    SIZE,
    TOLERANCE,
    _build,
    _convert,
    _mmseg_logits,
    _official_checkpoint,
    _save,
    mmseg,
)

import dovit
from dovit import convert


def test_help_documents_every_flag_and_what_the_official_format_rests_on(monkeypatch, capsys):
    from test_train import assert_help_documents_every_flag

    assert_help_documents_every_flag(convert, ["src.pth", "dst"], monkeypatch)
    with pytest.raises(SystemExit):
        convert.parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert ("FLHonker/DoViT-code" in help_text
            and "not checked against a real official checkpoint" in help_text)


def test_missing_file_exits_2(tmp_path, capsys):
    assert convert.main([str(tmp_path / "none.pth"), str(tmp_path / "out")]) == 2
    assert "not found" in capsys.readouterr().err


def test_bare_state_dict_needs_the_position_grid_when_not_square(mmseg, tmp_path, capsys):
    """No saved config: the 4 x 6 position grid cannot be read from 24 positions; --pos-size gives it."""
    vit, head, cfg = _build(mmseg, "segmenter")
    path = _save(tmp_path, vit, head, cfg, meta=False)
    assert convert.main([path, str(tmp_path / "refused")]) == 2
    assert "--pos-size" in capsys.readouterr().err
    model = _convert(tmp_path, path, "--pos-size", *map(str, SIZE))
    assert "no saved config" in capsys.readouterr().out and model.config.mean == (0.5, 0.5, 0.5)
    pixels = torch.randn(1, 3, *SIZE)
    _, expected = _mmseg_logits(vit, head, pixels)
    with torch.no_grad():
        assert float((model(pixels, xi=1.0).logits - expected).abs().max()) <= TOLERANCE


def test_mmseg_auxiliary_heads_need_the_flag(mmseg, tmp_path, capsys):
    vit, head, cfg = _build(mmseg, "naive")
    extra = {f"auxiliary_head.0.{k}": v for k, v in head.state_dict().items()}
    path = _save(tmp_path, vit, head, cfg, extra)
    assert convert.main([path, str(tmp_path / "refused")]) == 2
    assert "--skip-auxiliary" in capsys.readouterr().err and not (tmp_path / "refused").exists()
    assert convert.main([path, str(tmp_path / "dovit"), "--skip-auxiliary"]) == 0
    assert "auxiliary_head" in capsys.readouterr().out


def test_an_unplaceable_key_is_refused(mmseg, tmp_path, capsys):
    vit, head, cfg = _build(mmseg, "segmenter")
    path = _save(tmp_path, vit, head, cfg, {"decode_head.extra_scale": torch.ones(1)})
    assert convert.main([path, str(tmp_path / "out")]) == 2
    assert "decode_head.extra_scale" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind,options,message", [
    ("segmenter", dict(final_norm=False), "final_norm=False"),
    ("naive", dict(final_norm=True), "two LayerNorms"),
    ("segmenter", dict(with_cls_token=False), "with_cls_token"),
    ("segmenter", dict(norm_cfg=dict(type="LN")), "eps"),
])
def test_configurations_dovit_does_not_compute_are_refused(mmseg, tmp_path, capsys, kind, options, message):
    vit, head, cfg = _build(mmseg, kind, **options)
    assert convert.main([_save(tmp_path, vit, head, cfg), str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flags,message", [(["--num-classes", "7"], "5 classes"),
                                           (["--backbone", "vit_tiny_patch16"], "unknown backbone"),
                                           (["--backbone", "vit_small_patch16_224"], "width 384")])
def test_flags_are_checked_against_the_tensors(mmseg, tmp_path, capsys, flags, message):
    vit, head, cfg = _build(mmseg, "segmenter")
    assert convert.main([_save(tmp_path, vit, head, cfg), str(tmp_path / "out"), *flags]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind,options,extra,message", [
    ("segmenter", dict(concat_input=True), None, "concat_input=True (conv_cat)"),
    ("segmenter", dict(num_convs=2), None, "num_convs > 1"),
    ("naive", dict(num_convs=2), None, "num_convs > 1"),
    ("segmenter", dict(kernel_size=3), None, "kernel_size=1 heads only"),
    ("segmenter", dict(norm_cfg=None), None, "without BatchNorm"),
    ("segmenter", dict(act_cfg=dict(type="GELU")), None, "act_cfg 'GELU'"),
    ("segmenter", dict(norm_cfg=dict(type="BN", eps=1e-3)), None, "norm_cfg eps 0.001"),
    ("segmenter", None, {"backbone.auxiliary_head.1.extra_scale": torch.ones(1)},
     "backbone.auxiliary_head.1.extra_scale"),
])
def test_official_aux_heads_dovit_cannot_place_are_refused_by_name(mmseg, tmp_path, capsys, kind, options,
                                                                   extra,
                                                                     message):
    path, _, _, _ = _official_checkpoint(mmseg, tmp_path, kind=kind, aux_options=options, extra=extra)
    assert convert.main([path, str(tmp_path / "out"), "--format", "dovit-official"]) == 2
    error = capsys.readouterr().err
    assert message in error and "--skip-auxiliary" in error and not (tmp_path / "out").exists()
    # --skip-auxiliary leaves them out: DoViT's default heads, random
    model = _convert(tmp_path, path, "--format", "dovit-official", "--skip-auxiliary")
    assert (model.config.aux_head == "linear"
            and "left out the 3 official aux heads" in capsys.readouterr().out)


def test_an_official_checkpoint_read_as_mmseg_is_refused(mmseg, tmp_path, capsys):
    """Read as MMSeg 1.x, the timm-style attention keys have no place."""
    path, _, _, _ = _official_checkpoint(mmseg, tmp_path)
    assert convert.main([path, str(tmp_path / "out"), "--format", "mmseg", "--skip-auxiliary"]) == 2
    assert "attn.qkv" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_official_setr_with_two_layernorms_is_refused(mmseg, tmp_path, capsys):
    """The official SETR-DoViT configs set final_norm=True, and SETRUPHead adds its own LayerNorm."""
    vit, head, cfg = _build(mmseg, "naive", final_norm=True)
    state = {f"backbone.{k}".replace("attn.attn.in_proj_", "attn.qkv."): v
             for k, v in vit.state_dict().items()}
    state.update({f"decode_head.{k}": v for k, v in head.state_dict().items()})
    path = tmp_path / "setr.pth"
    torch.save({"state_dict": state, "meta": {"config": cfg.pretty_text}}, path)
    assert convert.main([str(path), str(tmp_path / "out"), "--format", "dovit-official"]) == 2
    assert "two LayerNorms" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ the README's path
def test_convert_then_train_the_aux_heads_then_open_in_the_predictor(mmseg, tmp_path, capsys):
    """README "Models from MMSegmentation": convert, train the aux heads self-distilled from the converted
    dense model (a few steps on synthetic data), load the result with Predictor.from_checkpoint."""
    from dovit import train

    vit, head, cfg = _build(mmseg, "segmenter", num_classes=3)  # the synthetic data set's 3 classes
    converted = tmp_path / "converted"
    assert convert.main([_save(tmp_path, vit, head, cfg), str(converted), "--format", "mmseg"]) == 0
    run = ["--stage", "dovit", "--dataset", "synthetic", "--input-size", *map(str, SIZE), "--init",
           str(converted),
           "--teacher", str(converted), "--steps", "2", "--batch-size", "2", "--warmup-steps", "1",
           "--eval-every",
           "0", "--max-val-images", "2", "--workers", "0", "--threads", "1", "--no-progress"]
    assert train.main([*run, "--output", str(tmp_path / "student")]) == 0
    predictor = dovit.Predictor.from_checkpoint(tmp_path / "student" / "last")
    assert predictor.config.decoder == "segmenter" and predictor.config.mean == (0.5, 0.5, 0.5)
    assert predictor.model.checkpoint_metadata["converted_from"] == "mmseg.pth"  # the studio header shows it
    predictor.set_image(np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8))
    assert predictor.predict(xi=0.9).mask.shape == (70, 90)
    # a converted model of other classes than the data set's is one line, exit 2
    vit, head, cfg = _build(mmseg, "segmenter")
    assert convert.main([_save(tmp_path, vit, head, cfg), str(tmp_path / "five"), "--format", "mmseg"]) == 0
    capsys.readouterr()
    assert train.main([*run, "--init", str(tmp_path / "five"), "--output", str(tmp_path / "refused")]) == 2
    assert "predicts 5 classes, the data set has 3" in capsys.readouterr().err


def test_convert_then_calibrate_without_labels_then_open_in_the_predictor(mmseg, tmp_path):
    """README "Bring your own segmenter": an MMSeg checkpoint converted, its aux heads calibrated on
    unlabelled images (dovit.calibrate), xi = 1 still the converted model's logits, loaded by the
    Predictor."""
    import cv2

    from dovit import calibrate

    vit, head, cfg = _build(mmseg, "segmenter")
    converted = tmp_path / "converted"
    assert convert.main([_save(tmp_path, vit, head, cfg), str(converted), "--format", "mmseg"]) == 0
    images = tmp_path / "photos"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        cv2.imwrite(str(images / f"{index}.jpg"), rng.integers(0, 256, (70, 90, 3), dtype=np.uint8))
    assert calibrate.main([str(converted), str(tmp_path / "calibrated"), "--images", str(images), "--minutes",
                           "0.02",
                           "--train", "aux", "--batch-size", "2", "--threads", "1", "--no-progress"]) == 0
    source, calibrated = dovit.load_checkpoint(converted), dovit.load_checkpoint(tmp_path / "calibrated")
    pixels = torch.randn(1, 3, *SIZE)
    with torch.inference_mode():
        assert torch.equal(source(pixels, xi=1.0).logits, calibrated(pixels, xi=1.0).logits)
    assert calibrated.checkpoint_metadata["converted_from"] == "mmseg.pth"  # the header names the source
    assert calibrated.config.class_names == list(CLASSES)
    predictor = dovit.Predictor.from_checkpoint(tmp_path / "calibrated")
    assert predictor.predict(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)).mask.shape == (70, 90)
