import os

import numpy as np
import PIL.Image
from gradio import processing_utils

from app.image_cache import save_pil_to_cache_atomically, write_image_outputs_atomically


def picture(seed: int = 0) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 255, (20, 30, 3), dtype=np.uint8))


def test_the_file_is_gradios_content_named_file(tmp_path):
    data = processing_utils.encode_pil_to_bytes(picture(), "png")
    path = save_pil_to_cache_atomically(picture(), str(tmp_path), format="png")
    assert path == str((tmp_path / processing_utils.hash_bytes(data) / "image.png").resolve())
    assert open(path, "rb").read() == data
    assert [p.name for p in (tmp_path / processing_utils.hash_bytes(data)).iterdir()] == ["image.png"]


def test_a_second_call_with_the_same_image_leaves_the_file_alone(tmp_path):
    path = save_pil_to_cache_atomically(picture(), str(tmp_path), format="png")
    before = os.stat(path)
    assert save_pil_to_cache_atomically(picture(), str(tmp_path), format="png") == path
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns,
                                                                before.st_size)
    assert save_pil_to_cache_atomically(picture(1), str(tmp_path), format="png") != path


def test_gradios_array_outputs_go_through_it_once_installed(tmp_path):
    write_image_outputs_atomically()
    write_image_outputs_atomically()  # idempotent
    assert processing_utils.save_pil_to_cache is save_pil_to_cache_atomically
    array = np.asarray(picture(2))
    path = processing_utils.save_img_array_to_cache(array, str(tmp_path), format="png")
    assert np.array_equal(np.asarray(PIL.Image.open(path)), array)
    assert not list(tmp_path.rglob("*.partial"))
