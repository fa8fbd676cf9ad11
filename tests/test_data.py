"""Data sets and augmentation: the real CamVid split, fake Cityscapes / ADE20K / folder trees,
TrainAugment."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dovit.core.config import IMAGENET_MEAN, IMAGENET_STD
from dovit.data import (
    IGNORE_INDEX,
    EvalTransform,
    TrainAugment,
    ade20k,
    balanced_class_weights,
    build_dataset,
    camvid,
    cityscapes,
    class_frequencies,
    folders,
    sequence_of,
)
from dovit.data.datasets import read_label

CAMVID_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"


def write_pair(image_path: Path, label_path: Path, label: np.ndarray, seed: int = 0) -> np.ndarray:
    """Write a random RGB image (saved as BGR by OpenCV) and a uint8 label PNG of the same size."""
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, size=(*label.shape, 3), dtype=np.uint8)
    assert cv2.imwrite(str(image_path), image[..., ::-1])
    assert cv2.imwrite(str(label_path), label.astype(np.uint8))
    return image


def label_grid(values, shape=(12, 16)) -> np.ndarray:
    """A label map cycling through ``values`` row by row, so every value is present."""
    return np.resize(np.asarray(values, dtype=np.uint8), shape[0] * shape[1]).reshape(shape)


# ------------------------------------------------------------------------------ CamVid (real data)
@pytest.mark.skipif(not CAMVID_ROOT.is_dir(), reason=f"CamVid not found at {CAMVID_ROOT}")
def test_camvid_splits_and_label_ids():
    train, val = camvid(CAMVID_ROOT, "train"), camvid(CAMVID_ROOT, "val")
    assert (len(train), len(val)) == (367, 101)
    assert train.info.num_classes == 11
    found_void = False
    for dataset in (train, val):
        for image_path, label_path in dataset.pairs:
            assert image_path.stem == label_path.stem
            raw = read_label(label_path)
            mapped = dataset.label_map(raw)
            # Train ids 0..10 pass through; the void id 11 becomes the ignore index.
            np.testing.assert_array_equal(mapped, np.where(raw == 11, IGNORE_INDEX, raw))
            assert set(np.unique(mapped)) <= set(range(11)) | {IGNORE_INDEX}
            found_void |= bool((raw == 11).any())
    assert found_void, "CamVid has void pixels (id 11); the mapping above was not exercised"
    image, label = val[0]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert label.dtype == np.int64 and label.shape == image.shape[:2]


@pytest.mark.skipif(not CAMVID_ROOT.is_dir(), reason=f"CamVid not found at {CAMVID_ROOT}")
def test_camvid_drives_split_train_and_val():
    # The three drives of train + val, and the overlap that makes val flatter a model: 0016E5 is in both.
    assert camvid(CAMVID_ROOT, "train").sequences == {"0001TP": 62, "0006R0": 101, "0016E5": 204}
    assert camvid(CAMVID_ROOT, "val").sequences == {"0016E5": 101}
    everything = build_dataset("camvid", CAMVID_ROOT, "train+val")
    assert len(everything) == 468 and everything.sequences["0016E5"] == 305
    held_out = build_dataset("camvid", CAMVID_ROOT, "train+val", sequences=["0006R0"])
    rest = build_dataset("camvid", CAMVID_ROOT, "train+val", exclude_sequences=["0006R0"])
    assert len(held_out) == 101 and len(rest) == 367
    assert not {p for p, _ in held_out.pairs} & {p for p, _ in rest.pairs}  # no frame on both sides
    assert {sequence_of(p) for p, _ in rest.pairs} == {"0001TP", "0016E5"}


# ------------------------------------------------------------------------------ fake trees
def test_sequences_select_and_exclude_recordings(tmp_path):
    label = label_grid([0, 1])
    for split, stem in (("train", "driveA_001"), ("train", "driveA_002"), ("train", "driveB_001"),
                        ("val", "driveC_001")):
        write_pair(tmp_path / split / f"{stem}.png", tmp_path / f"{split}annot" / f"{stem}.png", label)
    assert sequence_of(tmp_path / "train" / "driveA_001.png") == "driveA"
    joined = build_dataset("camvid", tmp_path, "train+val")
    assert joined.sequences == {"driveA": 2, "driveB": 1, "driveC": 1}
    only = build_dataset("camvid", tmp_path, "train+val", sequences=["driveC", "driveB"])
    assert sorted(p.stem for p, _ in only.pairs) == ["driveB_001", "driveC_001"]
    without = build_dataset("camvid", tmp_path, "train+val", exclude_sequences=["driveA"])
    assert without.sequences == {"driveB": 1, "driveC": 1}
    image, mapped = without[0]
    assert image.shape[:2] == mapped.shape
    with pytest.raises(ValueError, match=r"driveZ.*driveA \(2\), driveB \(1\)"):
        build_dataset("camvid", tmp_path, "train", sequences=["driveZ"])



def test_cityscapes_layout_pairs_images_with_train_id_labels(tmp_path):
    label = label_grid([0, 5, 18, IGNORE_INDEX])
    for city, frame in (("aachen", "000000_000019"), ("bremen", "000001_000019")):
        stem = f"{city}_{frame}"
        write_pair(tmp_path / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png",
                   tmp_path / "gtFine" / "train" / city / f"{stem}_gtFine_labelTrainIds.png", label)
    # An image without a label file is skipped, not an error.
    write_pair(tmp_path / "leftImg8bit" / "train" / "bremen" / "lonely_leftImg8bit.png",
               tmp_path / "elsewhere" / "x.png", label)
    dataset = cityscapes(tmp_path, "train")
    assert len(dataset) == 2
    assert dataset.info.num_classes == 19
    image, loaded = dataset[0]
    assert image.shape == (12, 16, 3)
    np.testing.assert_array_equal(loaded, label)  # train ids are stored already: unchanged, 255 kept


def test_ade20k_shifts_ids_and_ignores_zero(tmp_path):
    label = label_grid([0, 1, 2, 75, 150])
    image = write_pair(tmp_path / "images" / "validation" / "ADE_val_00000001.png",
                       tmp_path / "annotations" / "validation" / "ADE_val_00000001.png", label)
    dataset = build_dataset("ade20k", tmp_path, "val")  # 'val' maps to the 'validation' folder
    assert len(dataset) == 1 and dataset.info.num_classes == 150
    loaded_image, loaded = dataset[0]
    np.testing.assert_array_equal(loaded_image, image)  # RGB in, RGB out
    np.testing.assert_array_equal(loaded, np.where(label == 0, IGNORE_INDEX, label.astype(np.int64) - 1))
    assert loaded.min() == 0 and loaded[loaded != IGNORE_INDEX].max() == 149


def test_ade20k_jpeg_images_pair_with_png_annotations(tmp_path):
    label = label_grid([3, 4])
    write_pair(tmp_path / "images" / "training" / "ADE_train_1.jpg",
               tmp_path / "annotations" / "training" / "ADE_train_1.png", label)
    image, loaded = ade20k(tmp_path, "train")[0]
    assert image.shape == (12, 16, 3)
    np.testing.assert_array_equal(loaded, label.astype(np.int64) - 1)


def test_generic_folders(tmp_path):
    label = label_grid([0, 1, 2, IGNORE_INDEX])
    for index, suffix in enumerate((".jpg", ".png", ".bmp")):
        write_pair(tmp_path / "images" / f"img{index}{suffix}", tmp_path / "labels" / f"img{index}.png",
                   label, index)
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    dataset = folders(tmp_path / "images", tmp_path / "labels", ["a", "b", "c"])
    assert len(dataset) == 3
    assert dataset.info.class_names == ["a", "b", "c"] and len(dataset.info.class_colors) == 3
    for index in range(3):
        _, loaded = dataset[index]
        np.testing.assert_array_equal(loaded, label)


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "trainannot").mkdir()
    with pytest.raises(FileNotFoundError, match="camvid: no image/label pairs") as error:
        build_dataset("camvid", tmp_path, "train")
    assert str(tmp_path / "train") in str(error.value)  # says where it looked
    with pytest.raises(FileNotFoundError, match="no image/label pairs"):
        folders(tmp_path / "missing", tmp_path / "missing_labels", ["a"])


def test_unknown_dataset_name_lists_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"unknown data set 'kitti'.*camvid"):
        build_dataset("kitti", tmp_path, "train")


def test_image_and_label_size_mismatch_is_reported(tmp_path):
    write_pair(tmp_path / "img" / "a.png", tmp_path / "lab" / "a.png", label_grid([0], (8, 8)))
    cv2.imwrite(str(tmp_path / "lab" / "a.png"), np.zeros((8, 9), dtype=np.uint8))
    with pytest.raises(ValueError, match="differ in size"):
        folders(tmp_path / "img", tmp_path / "lab", ["a"])[0]


# ------------------------------------------------------------------------------ transforms
PALETTE = np.array([(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (40, 220, 220)],
                   dtype=np.uint8)


def colour_coded_sample(seed: int = 0, shape=(40, 56), block: int = 8):
    """Random 8x8-block labels (asymmetric, so a lone flip shows) and an image whose colour IS the label."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, len(PALETTE), size=(shape[0] // block, shape[1] // block))
    label = np.kron(blocks, np.ones((block, block), dtype=np.int64))
    return PALETTE[label], label


def denormalise(pixels: torch.Tensor) -> np.ndarray:
    """Inverse of to_tensors: normalised (3, H, W) -> uint8 (H, W, 3)."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((pixels * std + mean) * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def colour_matches_label(pixels: torch.Tensor, label: torch.Tensor) -> np.ndarray:
    """Per labelled pixel: does the image colour equal the palette colour of its label?"""
    image, label = denormalise(pixels), label.numpy()
    valid = label != IGNORE_INDEX
    return (image[valid] == PALETTE[label[valid]]).all(axis=1)


@pytest.mark.parametrize("seed", range(12))
def test_flip_and_crop_keep_image_and_label_aligned(seed):
    # Scale fixed at 1 and no jitter: crop and flip move pixels without changing them, so every labelled
    # pixel's colour must still be its label's colour. A flip or crop applied to one side only breaks this.
    image, label = colour_coded_sample(seed)
    augment = TrainAugment((32, 40), IMAGENET_MEAN, IMAGENET_STD, scale_range=(1.0, 1.0), jitter=0.0)
    torch.manual_seed(seed)  # TrainAugment draws from a generator seeded by torch's seed
    pixels, out_label = augment(image, label)
    assert pixels.shape == (3, 32, 40) and pixels.dtype == torch.float32
    assert out_label.shape == (32, 40) and out_label.dtype == torch.int64
    assert colour_matches_label(pixels, out_label).all()


def test_flips_do_happen():
    # The alignment test above must see flipped samples: a full-width crop of a flipped image is
    # the mirror image of the input.
    image, label = colour_coded_sample(0)
    augment = TrainAugment(label.shape, IMAGENET_MEAN, IMAGENET_STD, scale_range=(1.0, 1.0), jitter=0.0)
    torch.manual_seed(0)
    outcomes = set()
    for _ in range(20):
        _, out_label = augment(image, label)
        outcomes.add("flipped" if np.array_equal(out_label.numpy(), label[:, ::-1]) else
                     "kept" if np.array_equal(out_label.numpy(), label) else "other")
    assert outcomes == {"flipped", "kept"}


@pytest.mark.parametrize("seed", range(6))
def test_scaled_crops_have_crop_size_valid_labels_and_stay_aligned(seed):
    image, label = colour_coded_sample(seed)
    crop = (48, 64)  # larger than the image at scale < 1.2: exercises the ignore padding
    augment = TrainAugment(crop, IMAGENET_MEAN, IMAGENET_STD, scale_range=(0.5, 2.0), jitter=0.0)
    torch.manual_seed(seed)
    pixels, out_label = augment(image, label)
    assert pixels.shape == (3, *crop) and out_label.shape == crop
    assert set(out_label.unique().tolist()) <= set(range(len(PALETTE))) | {IGNORE_INDEX}
    # Bilinear image vs nearest label: only pixels next to a block edge may blend, so almost all
    # labelled pixels keep their colour; a misaligned pair would match about 1 in 5.
    matches = colour_matches_label(pixels, out_label)
    assert matches.size > 0 and matches.mean() > 0.7


def test_padding_is_ignore_in_the_label():
    image, label = colour_coded_sample(0, shape=(16, 16))
    augment = TrainAugment((32, 40), IMAGENET_MEAN, IMAGENET_STD, scale_range=(1.0, 1.0), jitter=0.0)
    torch.manual_seed(0)
    _, out_label = augment(image, label)
    assert (out_label != IGNORE_INDEX).sum() == 16 * 16  # the whole image, nothing more
    assert (out_label == IGNORE_INDEX).sum() == 32 * 40 - 16 * 16


def test_jitter_changes_colours_not_labels_and_is_reproducible():
    image, label = colour_coded_sample(3)
    augment = TrainAugment((32, 40), IMAGENET_MEAN, IMAGENET_STD, scale_range=(0.75, 1.5), jitter=0.3)
    torch.manual_seed(5)
    first = augment(image, label)
    again = TrainAugment((32, 40), IMAGENET_MEAN, IMAGENET_STD, scale_range=(0.75, 1.5), jitter=0.3)
    torch.manual_seed(5)
    second = again(image, label)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert set(first[1].unique().tolist()) <= set(range(len(PALETTE))) | {IGNORE_INDEX}
    plain = TrainAugment((32, 40), IMAGENET_MEAN, IMAGENET_STD, scale_range=(0.75, 1.5), jitter=0.0)
    torch.manual_seed(5)
    unjittered = plain(image, label)
    assert torch.equal(unjittered[1], first[1])  # jitter draws after the geometry: same crop and flip
    assert not torch.equal(unjittered[0], first[0])


def test_camera_effects_change_pixels_not_labels_and_are_reproducible():
    image, label = colour_coded_sample(4)

    def augmented(camera: float, seed: int = 7):
        torch.manual_seed(seed)
        return TrainAugment((32, 40), IMAGENET_MEAN, IMAGENET_STD, scale_range=(1.0, 1.0), jitter=0.0,
                            camera=camera)(image, label)

    plain, every_effect = augmented(0.0), augmented(1.0)
    # the effects draw after the geometry: same crop, same labels
    assert torch.equal(plain[1], every_effect[1])
    assert not torch.equal(plain[0], every_effect[0])
    assert torch.equal(augmented(1.0)[0], every_effect[0])  # same seed, same effects
    assert every_effect[0].isfinite().all()
    with pytest.raises(ValueError, match="camera augmentation probability"):
        TrainAugment((32, 40), IMAGENET_MEAN, IMAGENET_STD, camera=1.5)


def test_eval_transform_resizes_the_image_but_not_the_label():
    image, label = colour_coded_sample(0)
    pixels, out_label = EvalTransform((32, 48), IMAGENET_MEAN, IMAGENET_STD)(image, label)
    assert pixels.shape == (3, 32, 48)
    np.testing.assert_array_equal(out_label.numpy(), label)  # metrics stay at full resolution


# ------------------------------------------------------------------------------ class balance
def test_class_frequencies_and_median_frequency_weights(tmp_path):
    # 3 classes over two label maps: class 0 on 24 pixels, class 1 on 8, class 2 absent; 16 ignored.
    first = np.zeros((4, 8), dtype=np.uint8)
    first[2:, :] = 255
    second = np.zeros((4, 8), dtype=np.uint8)
    second[:1, :] = 1
    second[1:2, :] = 0
    second[2:, :] = 255
    second[3, :] = 1
    write_pair(tmp_path / "img" / "a.png", tmp_path / "lbl" / "a.png", first)
    write_pair(tmp_path / "img" / "b.png", tmp_path / "lbl" / "b.png", second, seed=1)
    dataset = folders(tmp_path / "img", tmp_path / "lbl", ["zero", "one", "two"])
    frequencies = class_frequencies(dataset)
    np.testing.assert_allclose(frequencies, [24 / 40, 16 / 40, 0.0])
    np.testing.assert_allclose(balanced_class_weights(frequencies, 0.0), [1.0, 1.0, 1.0])
    median = np.median([24 / 40, 16 / 40])
    np.testing.assert_allclose(balanced_class_weights(frequencies, 1.0), [median / 0.6, median / 0.4, 1.0])
    half = balanced_class_weights(frequencies, 0.5)
    assert half[1] > 1.0 > half[0]  # the rarer class weighs more, the commoner less


def test_camvid_jpeg_images_pair_with_png_labels(tmp_path):
    """Images re-encoded as JPEG (to save space) still find their SegNet-layout PNG labels."""
    label = label_grid([0, 3, 11])
    write_pair(tmp_path / "train" / "0001TP_000010.jpg", tmp_path / "trainannot" / "0001TP_000010.png", label)
    dataset = camvid(tmp_path, "train")
    assert len(dataset) == 1
    image, mapped = dataset[0]
    assert image.shape[:2] == label.shape
    np.testing.assert_array_equal(mapped, np.where(label == 11, IGNORE_INDEX, label))
