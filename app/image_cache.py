"""gradio's image outputs, written to its cache atomically.

gradio saves an image output under a name made from its content (``processing_utils.save_pil_to_cache``:
``CACHE/<sha256>/image.png``) and rewrites that file on every call, truncating it first. Two calls that
return the same image (eight clients sending one picture to /predict, or two visitors on one example at one
ξ) write the same file while the first one's download reads it, which can then be empty (seen as
``UnidentifiedImageError`` in ``tests/test_app_security.py``). Here the file is written under a temporary
name and renamed into place, and an existing file (same content) is left alone, as gradio already does
for files it copies into its cache (``save_file_to_cache``).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gradio import processing_utils


def save_pil_to_cache_atomically(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """``processing_utils.save_pil_to_cache``'s file name and content, never a partly written file."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    path = (folder / f"{name}.{format}").resolve()
    if not path.exists():
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".partial")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return str(path)


def write_image_outputs_atomically() -> None:
    """Make gradio save image outputs with ``save_pil_to_cache_atomically`` (idempotent; the serving
    process's setting, applied by ``app.ui.serve``)."""
    processing_utils.save_pil_to_cache = save_pil_to_cache_atomically
