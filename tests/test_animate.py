"""dovit.animate: the command writes a GIF or an MP4 of one image's token pass, documents its flags and
refuses bad input in one line."""
import cv2
import numpy as np
import pytest
from PIL import Image
from test_train import assert_help_documents_every_flag

import dovit
from dovit import animate


@pytest.fixture(scope="module")
def checkpoint(tiny_model, tmp_path_factory):
    return dovit.save_checkpoint(tiny_model, tmp_path_factory.mktemp("checkpoint") / "tiny")


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "street.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (70, 100, 3), dtype=np.uint8))
    return path


def test_help_documents_every_flag(monkeypatch):
    assert_help_documents_every_flag(animate, ["image.png", "--out", "pass.gif"], monkeypatch)


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_writes_the_animation_named_by_the_suffix(checkpoint, image_file, tiny_model, tmp_path, capsys,
                                                  suffix):
    out = tmp_path / f"pass{suffix}"
    assert animate.main([str(image_file), "--out", str(out), "--checkpoint", str(checkpoint), "--xi", "0.5",
                         "--fps", "8"]) == 0
    groups = len(tiny_model.group_bounds)
    if suffix == ".gif":
        assert Image.open(out).n_frames >= groups + 1
    else:
        capture = cv2.VideoCapture(str(out))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) >= groups + 1
        capture.release()
    assert f"wrote {out}" in capsys.readouterr().out


@pytest.mark.parametrize("problem", ["missing", "not an image", "suffix", "xi"])
def test_bad_input_is_refused_in_one_line(checkpoint, image_file, tmp_path, capsys, problem):
    image, out, xi = str(image_file), str(tmp_path / "pass.gif"), "0.5"
    if problem == "missing":
        image = str(tmp_path / "nothere.png")
    elif problem == "not an image":
        image = str(tmp_path / "junk.png")
        (tmp_path / "junk.png").write_text("not an image")
    elif problem == "suffix":
        out = str(tmp_path / "pass.avi")
    else:
        xi = "1.5"
    assert animate.main([image, "--out", out, "--checkpoint", str(checkpoint), "--xi", xi]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert {"missing": "no image at", "not an image": "cannot read image", "suffix": ".gif or an .mp4",
            "xi": "xi"}[problem] in error
    assert not (tmp_path / "pass.gif").exists()
