"""Decoding uploads into (H, W, 3) uint8 RGB: where a file may come from, one size cap for files and
data: URLs, format check, EXIF orientation, grey/RGBA/16-bit.

Pillow reads only the header (format, size, EXIF orientation) so that oversized or foreign files are
refused before any pixel is decoded; OpenCV decodes the pixels (it keeps 16-bit channels, which Pillow
truncates for RGB PNGs).
"""
from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import PIL.Image

from dovit.core.preprocess import resize_image

ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "BMP")  # MPO: the JPEG variant phone cameras write
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_PIXELS = 40_000_000  # refuse above this (decompression bombs); 40 MP covers phone photos
MAX_SIDE = 2048  # downscale above this, with a notice: views are drawn at the working size anyway
ALPHA_BACKGROUND = 255  # transparent pixels are composited onto white, as a browser shows them
EXIF_ORIENTATION = 274

NOT_UPLOADED = "The image could not be found on the server; please upload it again."

# Errors only: a truncated file is reported to the user, not as an OpenCV warning on stderr.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class ImageInputError(ValueError):
    """An upload that cannot be used; the message is meant for the user."""


@dataclass
class DecodedImage:
    """rgb (H, W, 3) uint8; original_size (height, width) as stored in the file; notices for the user."""

    rgb: np.ndarray
    original_size: tuple[int, int]
    notices: list[str] = field(default_factory=list)


def read_upload(path: str | Path | None, allowed_dirs: Sequence[str | Path]) -> bytes:
    """The bytes of an uploaded file inside one of ``allowed_dirs`` (gradio's upload folder, the example
    folders), refusing a missing, empty or oversized one.

    A path elsewhere (symbolic links resolved) gets the same answer as a missing file, and no answer
    names the path, so that nothing is learnt about the server's files.
    """
    if path is None:
        raise ImageInputError("No image given: upload an image, take a webcam snapshot or pick an example.")
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(Path(folder).resolve())
               for folder in allowed_dirs) or not resolved.is_file():
        raise ImageInputError(NOT_UPLOADED)
    check_upload_size(resolved.stat().st_size)
    return resolved.read_bytes()


def check_upload_size(size: int) -> None:
    """The one size cap of every way an image arrives (upload, example, data: URL): empty or over
    MAX_UPLOAD_BYTES raises ImageInputError."""
    if size == 0:
        raise ImageInputError("The upload is empty (0 bytes).")
    if size > MAX_UPLOAD_BYTES:
        raise ImageInputError(f"The upload is {size / 2**20:.2f} MB, too big: the limit is "
                              f"{MAX_UPLOAD_BYTES / 2**20:.0f} MB.")


def decode_data_url(url: str) -> bytes:
    """The bytes of a base64 ``data:`` URL (a webcam snapshot, or an API client's inline image), with the
    size cap checked on the encoded length before anything is decoded."""
    encoded = url.split(",", 1)[1] if "," in url else ""
    check_upload_size(len(encoded) // 4 * 3 - encoded[-2:].count("="))
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        raise ImageInputError("The image data sent by the browser could not be decoded.") from None


def upload_problem(path: str | Path) -> str | None:
    """Why a stored upload is not an image we accept (the message for the user), or None when its size
    is within the cap and its header is PNG, JPEG, WebP or BMP. Reads only the header."""
    try:
        check_upload_size(os.stat(path).st_size)
        with open(path, "rb") as file:
            image_format = _read_header(file)[0]
    except ImageInputError as error:
        return str(error)
    except OSError:
        return NOT_UPLOADED
    return None if image_format in ALLOWED_FORMATS else unsupported_format(image_format)


def unsupported_format(image_format: str) -> str:
    return f"{image_format} images are not supported; use PNG, JPEG, WebP or BMP."


def decode_image(data: bytes, max_side: int = MAX_SIDE) -> DecodedImage:
    """Decode PNG/JPEG/WebP/BMP bytes to upright (H, W, 3) uint8 RGB, downscaled to ``max_side``."""
    if not data:
        raise ImageInputError("The upload is empty (0 bytes).")
    image_format, (width, height), orientation = _read_header(io.BytesIO(data))
    if image_format not in ALLOWED_FORMATS:
        raise ImageInputError(unsupported_format(image_format))
    if width * height > MAX_PIXELS:
        raise ImageInputError(
            f"The image is {width}×{height} = {width * height / 1e6:.0f} MP; the limit is "
            f"{MAX_PIXELS / 1e6:.0f} MP."
        )
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImageInputError(f"The {image_format} file is corrupt or truncated: its pixels could not be "
                              "decoded.")
    notices = []
    rgb = apply_orientation(to_rgb8(pixels), orientation)
    if pixels.dtype != np.uint8:
        notices.append(f"{pixels.dtype.itemsize * 8}-bit image converted to 8-bit.")
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        notices.append("Greyscale image converted to RGB.")
    elif pixels.shape[2] == 4 and _has_transparency(pixels):
        notices.append("Transparency removed (composited onto white).")
    if orientation != 1:
        notices.append("Rotated upright following the EXIF orientation tag.")
    rgb, downscaled = fit_within(rgb, max_side)
    if downscaled:
        notices.append(f"Large image downscaled from {width}×{height} to {rgb.shape[1]}×{rgb.shape[0]}.")
    return DecodedImage(rgb=rgb, original_size=(height, width), notices=notices)


def _read_header(file: BinaryIO) -> tuple[str, tuple[int, int], int]:
    """(format, (width, height), EXIF orientation) of an image file, reading only its header."""
    try:
        with PIL.Image.open(file) as header:
            return header.format, header.size, _orientation(header)
    except PIL.Image.DecompressionBombError as error:
        raise ImageInputError(f"The image is too large to decode safely ({error}).") from error
    except (PIL.UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageInputError("The file is not an image we can read (PNG, JPEG, WebP or BMP "
                              "expected).") from error


def _orientation(header: PIL.Image.Image) -> int:
    """The EXIF orientation tag (1-8) of an opened image; 1 when absent or unreadable (truncated file)."""
    try:
        return int(header.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except (OSError, ValueError, SyntaxError, TypeError):
        return 1


def to_rgb8(pixels: np.ndarray) -> np.ndarray:
    """OpenCV's decoded array ((H, W), (H, W, 1|3|4) BGR[A], uint8/uint16/float) -> (H, W, 3) uint8 RGB."""
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)  # 65535 -> 255 exactly
    elif pixels.dtype != np.uint8:
        pixels = np.clip(pixels.astype(np.float32) * (255.0 if pixels.max() <= 1.0 else 1.0), 0,
                         255).astype(np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if channels == 4 and not _has_transparency(pixels):
        pixels = pixels[:, :, :3]  # an opaque alpha channel (e.g. a webcam snapshot) carries nothing
    elif channels == 4:
        alpha = pixels[:, :, 3:4].astype(np.float32) / 255.0
        blended = pixels[:, :, :3].astype(np.float32) * alpha + ALPHA_BACKGROUND * (1.0 - alpha)
        pixels = np.round(blended).astype(np.uint8)
    return np.ascontiguousarray(cv2.cvtColor(pixels[:, :, :3], cv2.COLOR_BGR2RGB))


def _has_transparency(pixels: np.ndarray) -> bool:
    """(H, W, 4) BGRA: is any pixel not fully opaque?"""
    opaque = np.iinfo(pixels.dtype).max if pixels.dtype.kind in "ui" else 1.0
    return bool((pixels[:, :, 3] < opaque).any())


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip (H, W, C) as EXIF orientation 1-8 says, so that the result is upright."""
    operations = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, k=1),
    }
    operation = operations.get(orientation)
    return image if operation is None else np.ascontiguousarray(operation(image))


def fit_within(image: np.ndarray, max_side: int) -> tuple[np.ndarray, bool]:
    """Downscale (H, W, C) so that its longer side is at most ``max_side``; returns (image,
    was_downscaled)."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return image, False
    return resize_image(image, (max(1, round(height * scale)), max(1, round(width * scale)))), True


def load_image_file(source: str | Path | bytes | None, allowed_dirs: Sequence[str | Path] = (),
                    min_side: int = 1,
                    max_side: int = MAX_SIDE) -> DecodedImage:
    """An uploaded file path inside ``allowed_dirs`` (or the file's bytes) -> ``DecodedImage``; raises
    ImageInputError for the user, also when the image as stored is smaller than ``min_side`` pixels (one
    patch) on a side (checked before any downscaling, so a long thin image is judged by its own size)."""
    if isinstance(source, bytes):
        check_upload_size(len(source))
        decoded = decode_image(source, max_side)
    else:
        decoded = decode_image(read_upload(source, allowed_dirs), max_side)
    height, width = decoded.original_size
    if min(height, width) < min_side:
        raise ImageInputError(
            f"The image is {width}×{height} px, smaller than one {min_side}×{min_side}-pixel patch."
        )
    return decoded
