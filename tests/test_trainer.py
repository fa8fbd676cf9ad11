"""dovit.training.trainer's config: the CLI's defaults are the dataclass's, and check_config refuses in one
line."""
from dataclasses import fields

import pytest

from dovit import train
from dovit.training import trainer


def test_flags_parse_into_a_train_config_with_the_dataclass_defaults():
    parsed = train.parse_args(["--stage", "dense", "--output", "run"])
    assert isinstance(parsed, trainer.TrainConfig)
    assert parsed == trainer.TrainConfig(stage="dense", output="run")
    assert {f.name for f in fields(trainer.TrainConfig)} == set(vars(parsed))


def test_a_preset_fills_the_input_size_and_xi_the_flags_leave_open():
    parsed = train.parse_args(["--stage", "dovit", "--output", "run", "--preset", "segmenter_vit_t_ade20k"])
    assert parsed.input_size == [512, 512] and parsed.xi == 0.98
    assert train.parse_args(["--stage", "dovit", "--output", "run", "--preset", "segmenter_vit_t_ade20k",
                             "--xi", "0.9"]).xi == 0.9


@pytest.mark.parametrize("changes, message", [
    (dict(stage="dovit", xi=1.5), "--xi"),
    (dict(xi_range=[0.9, 0.8]), "--xi-range"),
    (dict(dense_fraction=1.2), "--dense-fraction"),
    (dict(init="a", init_weights="b"), "not both"),
    (dict(preset="setr_vit_t_ade20k", init="a"), "use one"),
    (dict(pretrained="missing.safetensors"), "no such file"),
])
def test_check_config_refuses_what_no_run_can_start_with(changes, message):
    with pytest.raises(trainer.SetupError, match=message):
        trainer.check_config(trainer.TrainConfig(**{"stage": "dense", "output": "run", **changes}))
    trainer.check_config(trainer.TrainConfig(stage="dovit", output="run", xi=0.9))  # a sound one passes
