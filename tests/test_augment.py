"""dovit.data.augment: the named presets keep image and label together, are seeded, and refuse bad names."""
import numpy as np
import pytest
import torch

from dovit.data import TrainAugment
from dovit.data.augment import AUGMENT_PRESETS, build_augment

MEAN, STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def labelled_image(height: int = 48, width: int = 64):
    """A label map and an image whose grey level encodes it (label * 20), so alignment can be checked."""
    rng = np.random.default_rng(0)
    label = np.kron(rng.integers(0, 11, (height // 8, width // 8)), np.ones((8, 8), dtype=np.int64))
    return np.repeat((label * 20).astype(np.uint8)[..., None], 3, axis=2), label


@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
def test_presets_give_the_crop_and_only_known_labels(preset):
    image, label = labelled_image()
    augment = TrainAugment((40, 56), MEAN, STD, preset=preset)
    for seed in range(6):
        torch.manual_seed(seed)
        pixels, labels = augment(image, label)
        assert pixels.shape == (3, 40, 56) and labels.shape == (40, 56) and labels.dtype == torch.int64
        # nearest, ignore padding
        assert set(labels.unique().tolist()) <= set(np.unique(label).tolist()) | {255}


def test_standard_geometry_moves_image_and_label_together():
    image, label = labelled_image()
    augment = TrainAugment((40, 56), MEAN, STD, scale_range=(0.5, 2.0), jitter=0.0)
    for seed in range(8):
        torch.manual_seed(seed)
        pixels, labels = augment(image, label)
        grey = (pixels[0] * 255).round()
        inside = (labels != 255)
        # Away from block edges (bilinear mixing) the grey level is the label's.
        agree = (grey[inside] == labels[inside] * 20).float().mean()
        assert agree > 0.7


def test_presets_are_reproducible_from_torchs_seed_and_differ_between_seeds():
    image, label = labelled_image()
    augment = TrainAugment((40, 56), MEAN, STD, preset="robust")
    torch.manual_seed(5)
    first = augment(image, label)
    again = TrainAugment((40, 56), MEAN, STD, preset="robust")
    torch.manual_seed(5)
    second = again(image, label)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    torch.manual_seed(6)
    assert not torch.equal(again(image, label)[0], first[0])


def test_robust_preset_changes_colour_more_than_standard():
    image = np.full((48, 64, 3), 128, dtype=np.uint8)
    label = np.zeros((48, 64), dtype=np.int64)
    spread = {}
    for preset in AUGMENT_PRESETS:
        augment = TrainAugment((48, 64), MEAN, STD, scale_range=(1.0, 1.0), jitter=0.1, preset=preset)
        means = []
        for seed in range(12):
            torch.manual_seed(seed)
            means.append(augment(image, label)[0].mean(dim=(1, 2)).numpy())
        spread[preset] = np.std(np.array(means), axis=0).mean()
    assert spread["robust"] > 1.5 * spread["standard"]


def test_bad_preset_and_probability_are_refused():
    with pytest.raises(ValueError, match="unknown augmentation preset 'heavy'"):
        build_augment("heavy", (32, 32))
    with pytest.raises(ValueError, match="camera augmentation probability"):
        build_augment("standard", (32, 32), camera=1.5)
