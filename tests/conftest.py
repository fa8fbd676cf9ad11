import os

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model():
    """A random-init ViT-Tiny DoViT segmenter on a small input (64 x 96 -> a 4 x 6 token grid)."""
    import dovit

    torch.manual_seed(0)
    return dovit.build_model("vit_tiny_patch16_224", num_classes=5, input_size=(64, 96)).eval()
