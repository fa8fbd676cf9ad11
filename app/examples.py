"""Example images offered in the gallery: the project's own assets/ plus an optional folder (--examples)."""
from __future__ import annotations

from pathlib import Path

from dovit.data import data_root_beside

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
# Real street scenes where this project's machines keep them (beside the checkout, never copied into it).
CAMVID_VAL_DIR = data_root_beside(Path(__file__).resolve().parent.parent) / "val"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_EXAMPLES = 24  # the gallery pages them; more would only slow the start-up


def find_examples(examples_dir: str | Path | None = None, assets_dir: Path = ASSETS_DIR,
                  limit: int = MAX_EXAMPLES) -> list[Path]:
    """Image files of assets_dir then examples_dir (sorted by name), at most ``limit`` in all.

    Raises FileNotFoundError when ``examples_dir`` is given but is not a folder.
    """
    found = _images_in(assets_dir) if assets_dir.is_dir() else []
    if examples_dir is not None:
        folder = Path(examples_dir).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"--examples {examples_dir}: not a folder")
        found += _images_in(folder)
    return found[:limit]


def default_examples_dir(candidate: Path = CAMVID_VAL_DIR) -> Path | None:
    """The CamVid val folder beside the checkout when it exists (the shipped model's domain), else None."""
    return candidate if candidate.is_dir() else None


def _images_in(folder: Path) -> list[Path]:
    return sorted(p.resolve() for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
