"""app.images: every upload becomes (H, W, 3) uint8 RGB or a clear ImageInputError."""
import base64
import io

import cv2
import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest

from app import images
from app.images import ImageInputError, decode_data_url, decode_image, load_image_file, upload_problem

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 255, (20, 30, 3), dtype=np.uint8)


def encode(array: np.ndarray, ext: str) -> bytes:
    """(H, W[, C]) RGB(A) -> file bytes via OpenCV (which expects BGR)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buffer = cv2.imencode(ext, array)
    assert ok
    return buffer.tobytes()


@pytest.mark.parametrize("ext", [".png", ".bmp", ".webp"])
def test_lossless_formats_round_trip(ext):
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []
    ok, buffer = cv2.imencode(ext, cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR), params)
    decoded = decode_image(buffer.tobytes())
    np.testing.assert_array_equal(decoded.rgb, RGB)
    assert decoded.notices == [] and decoded.original_size == (20, 30)


def test_jpeg_decodes_close_to_the_original():
    smooth = cv2.GaussianBlur(RGB, (9, 9), 3)
    decoded = decode_image(encode(smooth, ".jpg"))
    assert decoded.rgb.shape == (20, 30, 3) and np.abs(decoded.rgb.astype(int) - smooth).mean() < 8


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation):
    picture = PIL.Image.fromarray(RGB)
    exif = picture.getexif()
    exif[images.EXIF_ORIENTATION] = orientation
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", exif=exif)
    expected = np.asarray(PIL.ImageOps.exif_transpose(PIL.Image.open(io.BytesIO(buffer.getvalue()))))
    np.testing.assert_array_equal(decode_image(buffer.getvalue()).rgb, expected)


def test_grey_rgba_and_16_bit_are_converted():
    grey = decode_image(encode(RGB[:, :, 0], ".png"))
    assert grey.rgb.shape == (20, 30, 3) and (grey.rgb[:, :, 0] == grey.rgb[:, :, 2]).all()
    assert any("Greyscale" in n for n in grey.notices)

    rgba = np.dstack([RGB, np.zeros((20, 30), np.uint8)])
    rgba[0, 0, 3] = 255
    clear = decode_image(encode(rgba, ".png"))
    assert (clear.rgb[1:, 1:] == images.ALPHA_BACKGROUND).all() and tuple(clear.rgb[0, 0]) == tuple(RGB[0, 0])
    assert any("Transparency" in n for n in clear.notices)
    opaque = decode_image(encode(np.dstack([RGB, np.full((20, 30), 255, np.uint8)]), ".png"))
    np.testing.assert_array_equal(opaque.rgb, RGB)
    assert opaque.notices == []  # e.g. a webcam snapshot: RGBA but nothing to composite

    deep = (RGB.astype(np.uint16) * 257)[:, :, ::-1].copy()  # BGR, full 16-bit range
    decoded = decode_image(cv2.imencode(".png", deep)[1].tobytes())
    np.testing.assert_array_equal(decoded.rgb, RGB)
    assert any("16-bit" in n for n in decoded.notices)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"definitely not an image", "not an image"),
    (encode(RGB, ".png")[:200], "corrupt or truncated"),
], ids=["empty", "text", "truncated"])
def test_bad_bytes_raise_clear_errors(data, message):
    with pytest.raises(ImageInputError, match=message):
        decode_image(data)


def test_unsupported_format_is_named():
    buffer = io.BytesIO()
    PIL.Image.fromarray(RGB).save(buffer, "GIF")
    with pytest.raises(ImageInputError, match="GIF images are not supported"):
        decode_image(buffer.getvalue())


def test_huge_images_are_refused_or_downscaled(monkeypatch):
    data = encode(RGB, ".png")
    downscaled = decode_image(data, max_side=15)
    assert downscaled.rgb.shape == (10, 15, 3) and "downscaled from 30×20 to 15×10" in downscaled.notices[0]
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(ImageInputError, match="limit is"):
        decode_image(data)


def test_upload_files_missing_empty_or_too_big(tmp_path, monkeypatch):
    allowed = [tmp_path]
    with pytest.raises(ImageInputError, match="No image"):
        load_image_file(None, allowed)
    with pytest.raises(ImageInputError, match="could not be found"):
        load_image_file(tmp_path / "gone.png", allowed)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageInputError, match="empty"):
        load_image_file(empty, allowed)
    good = tmp_path / "good.png"
    good.write_bytes(encode(RGB, ".png"))
    assert load_image_file(good, allowed).rgb.shape == (20, 30, 3)
    with pytest.raises(ImageInputError, match="30×20 px, smaller than one 32×32-pixel patch"):
        load_image_file(good, allowed, min_side=32)
    monkeypatch.setattr(images, "MAX_UPLOAD_BYTES", 10)
    with pytest.raises(ImageInputError, match="limit is"):
        load_image_file(good, allowed)


# ---------------------------------------------------------------- defects of issue 1, 2 and 7 (hardening)
def test_paths_outside_the_allowed_folders_are_refused_and_answers_reveal_nothing(tmp_path):
    """Issue item 1: any file on the server was read. Outside the allowed folders (symbolic links
    resolved), a real image, a non-image, a missing path and a big file all get one and the same answer."""
    uploads, elsewhere = tmp_path / "uploads", tmp_path / "elsewhere"
    uploads.mkdir()
    elsewhere.mkdir()
    (elsewhere / "photo.png").write_bytes(encode(RGB, ".png"))
    (elsewhere / "notes.txt").write_text("secret")
    (elsewhere / "big.bin").write_bytes(bytes(images.MAX_UPLOAD_BYTES + 1))
    (uploads / "link.png").symlink_to(elsewhere / "photo.png")
    answers = set()
    for path in ("/etc/passwd", "/no/such/file.png", elsewhere / "photo.png", elsewhere / "notes.txt",
                 elsewhere / "big.bin", uploads / "link.png", uploads / ".." / "elsewhere" / "photo.png",
                 "relative.png"):
        with pytest.raises(ImageInputError) as refused:
            load_image_file(str(path), [uploads])
        answers.add(str(refused.value))
    assert answers == {images.NOT_UPLOADED}
    for secret in ("passwd", "photo", "MB", "empty", str(tmp_path), "/"):
        assert secret not in images.NOT_UPLOADED


def test_data_urls_are_capped_like_files_before_decoding(monkeypatch):
    """Issue item 2: data: URL bytes skipped the size check. One cap, checked on the encoded length."""
    png = encode(RGB, ".png")
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    assert decode_data_url(url) == png
    monkeypatch.setattr(images, "MAX_UPLOAD_BYTES", len(png) - 1)
    decoded = []
    monkeypatch.setattr(images.base64, "b64decode", lambda *a, **k: decoded.append(1))
    with pytest.raises(ImageInputError, match="limit is"):
        decode_data_url(url)
    with pytest.raises(ImageInputError, match="limit is"):
        load_image_file(png)
    assert not decoded


def test_minimum_size_is_checked_before_downscaling(tmp_path):
    """Issue item 7: a valid 16×8192 image was refused as 4×2048 (checked after downscaling)."""
    tall = tmp_path / "strip.png"
    cv2.imwrite(str(tall), np.zeros((16, 8192, 3), np.uint8))
    decoded = load_image_file(str(tall), [tmp_path], min_side=16)
    assert decoded.original_size == (16, 8192) and decoded.rgb.shape[1] == images.MAX_SIDE


def test_upload_problem_names_what_is_wrong_with_a_stored_upload(tmp_path):
    good, text, empty = tmp_path / "good.png", tmp_path / "notes.png", tmp_path / "empty.png"
    good.write_bytes(encode(RGB, ".png"))
    text.write_text("not an image")
    empty.write_bytes(b"")
    gif = tmp_path / "anim.gif"
    PIL.Image.fromarray(RGB).save(gif, "GIF")
    assert upload_problem(good) is None
    assert "not an image we can read" in upload_problem(text) and "empty" in upload_problem(empty)
    assert "GIF images are not supported" in upload_problem(gif)
