"""ModelConfig validates every field: a bad value fails at once with a sentence naming the field."""
import dataclasses
import math
import time

import pytest

import dovit
from dovit import ModelConfig

NAN = float("nan")


@pytest.mark.parametrize("field, value, message", [
    ("decoder_channels", -5, "decoder_channels"),
    ("decoder_channels", 10**9, "decoder_channels"),
    ("decoder_channels", 2.5, "decoder_channels"),
    ("input_size", (10**6, 10**6), r"input_size\[0\]"),
    ("input_size", (0, 0), r"input_size\[0\]"),
    ("input_size", (64,), "input_size must have 2 entries"),
    ("num_classes", 0, "num_classes"),
    ("num_classes", True, "num_classes"),
    ("mean", (0.5, 0.5), "mean must have 3 entries"),
    ("mean", (NAN, 0.5, 0.5), r"mean\[0\] must be a finite number"),
    ("std", (0.0, 0.0, 0.0), "std must be positive"),
    ("std", (0.2, math.inf, 0.2), r"std\[1\] must be a finite number"),
    ("default_xi", NAN, "default_xi"),
    ("default_xi", 1.5, "default_xi"),
    ("drop_path_rate", -0.1, "drop_path_rate"),
    ("backbone", "vit_tiny_patch16_2244", "unknown backbone 'vit_tiny_patch16_2244' .*vit_tiny_patch16_224"),
    ("backbone", 7, "unknown backbone"),
    ("decision_layers", (), "decision_layers"),
    ("decision_layers", (6, 3), "strictly increasing"),
    ("decision_layers", (3, 3), "strictly increasing"),
    ("decision_layers", (0, 3), "decision_layers"),
    ("decision_layers", (2.5,), "decision_layers"),
    ("decoder", "fpn", "decoder must be one of"),
    ("stem", "hybrid", "stem must be one of"),
    ("merge_stopped", "yes", "merge_stopped"),
    ("class_names", ["road"] * 3, "class_names must have 11 entries"),
    ("class_names", [1] * 11, "class_names must all be strings"),
    ("class_colors", [(300, 0, 0)] * 11, r"class_colors\[0\]"),
    ("class_colors", [(1, 2)] * 11, r"class_colors\[0\] must have 3 entries"),
    ("ignore_index", "255", "ignore_index"),
])
def test_every_field_is_checked(field, value, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{field: value})


def test_absurd_sizes_are_refused_before_anything_is_allocated():
    """num_classes 10**9 used to build a billion class names and colours (8 GB in 29 s) before failing."""
    start = time.perf_counter()
    for options in (dict(num_classes=10**9), dict(decoder_channels=10**9), dict(input_size=(10**6, 10**6))):
        with pytest.raises(ValueError):
            ModelConfig(**options)
    assert time.perf_counter() - start < 1.0


def test_defaults_and_json_round_trip_still_work():
    config = ModelConfig(num_classes=3, input_size=[48, 64], mean=[0.5, 0.5, 0.5], decision_layers=[2, 4])
    assert config.input_size == (48, 64) and config.mean == (0.5, 0.5, 0.5) and config.decision_layers == (2,
                                                                                                           4)
    assert len(config.class_names) == 3 and len(config.class_colors) == 3
    assert ModelConfig.from_dict(config.to_dict()) == config
    # The caps sit far above real data sets and resolutions.
    ModelConfig(num_classes=1203, input_size=(1024, 2048), decoder_channels=1024)


def test_from_dict_refuses_what_is_not_a_config():
    with pytest.raises(ValueError, match="JSON object"):
        ModelConfig.from_dict([1, 2])
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({**ModelConfig().to_dict(), "typo": 1})


def test_fields_assigned_after_construction_are_checked_before_use(tiny_model, tmp_path):
    config = dataclasses.replace(tiny_model.config)
    config.std = (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="std"):
        dovit.DoViTSegmenter(config)
    model = dovit.build_model("vit_tiny_patch16_224", 3, input_size=(32, 32))
    model.config.default_xi = NAN
    with pytest.raises(ValueError, match="default_xi"):
        dovit.save_checkpoint(model, tmp_path / "ck")
    assert not (tmp_path / "ck").exists()
