"""scripts/blue_sky.py: the repainted sky stays inside the sky, and the shares it reports are of those
pixels."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_drives

import dovit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts import blue_sky  # noqa: E402


def test_repaint_touches_only_the_sky_and_paints_it_blue():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    sky = np.zeros((20, 30), bool)
    sky[:8] = True
    painted = blue_sky.repaint_sky(image, sky, rng)
    assert np.array_equal(painted[~sky], image[~sky])
    blue, red = painted[sky][:, 2].astype(int), painted[sky][:, 0].astype(int)
    assert (blue > red + 40).all()


def test_scores_are_shares_of_the_sky_pixels(tmp_path):
    write_drives(tmp_path / "camvid", {"0001TP": 3, "0006R0": 2})
    torch.manual_seed(0)
    model = dovit.build_model("vit_tiny_patch16_224", num_classes=11, input_size=(48, 64),
                              decoder_channels=16)
    checkpoint = dovit.save_checkpoint(model, tmp_path / "model")
    out = tmp_path / "sky.json"
    assert blue_sky.main(["--data-root", str(tmp_path / "camvid"), "--split", "train", "--drive", "0001TP",
                          "--models",
                          f"{checkpoint}@1", f"{checkpoint}@0.5", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())
    assert [s["xi"] for s in scores] == [1.0, 0.5] and all(s["images"] == 3 for s in scores)
    assert all(0.0 <= s["sky_as_sky"] + s["sky_as_building"] <= 1.0 for s in scores)
    with pytest.raises(SystemExit):
        blue_sky.main(["--data-root", str(tmp_path / "camvid"), "--split", "train", "--drive", "Seq05VD",
                       "--models",
                       f"{checkpoint}@1"])
    with pytest.raises(SystemExit):
        blue_sky.main(["--data-root", str(tmp_path / "camvid"), "--split", "train", "--models",
                       str(checkpoint)])
