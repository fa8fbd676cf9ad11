import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# the studio's ONNX exports (app.models.EXPORT_CACHE) go to a scratch folder, not the user's cache
os.environ.setdefault("DOVIT_EXPORT_CACHE", tempfile.mkdtemp(prefix="dovit-export-cache-"))
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model():
    """A random-init ViT-Tiny DoViT segmenter on a small input (64 x 96 -> a 4 x 6 token grid)."""
    import dovit

    torch.manual_seed(0)
    return dovit.build_model("vit_tiny_patch16_224", num_classes=5, input_size=(64, 96)).eval()


def write_drives(root: Path, drives: dict[str, int], size=(48, 64)) -> None:
    """A CamVid-layout tree under root/train with ``count`` frames per drive (file prefix = drive)."""
    rng = np.random.default_rng(0)
    for split in ("train", "trainannot"):
        (root / split).mkdir(parents=True, exist_ok=True)
    for drive, count in drives.items():
        for frame in range(count):
            label = rng.integers(0, 11, size=size, dtype=np.uint8)
            image = np.repeat(label[..., None] * 20, 3, axis=2).astype(np.uint8)
            cv2.imwrite(str(root / "train" / f"{drive}_{frame:03d}.png"), image)
            cv2.imwrite(str(root / "trainannot" / f"{drive}_{frame:03d}.png"), label)


@pytest.fixture(scope="module")
def tiny_app_url(tiny_model, tmp_path_factory):
    """The studio on a random-init ViT-T checkpoint (assets/ examples only), served on loopback (browser
    tests)."""
    from app_driver import serve_on_loopback

    import dovit
    from app.ui import build_demo

    checkpoint = dovit.save_checkpoint(tiny_model, tmp_path_factory.mktemp("checkpoint"))
    demo = build_demo(dovit.Predictor.from_checkpoint(checkpoint), examples_dir=None)
    yield serve_on_loopback(demo)
    demo.close()
