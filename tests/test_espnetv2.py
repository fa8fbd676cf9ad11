"""dovit.core.espnetv2 against the authors' released ESPNetv2 (Cityscapes, s = 2.0).

Fixture ``tests/data/espnetv2_reference.npz`` holds outputs of the AUTHORS' code, not of ours. Provenance:
the segmentation model of the public repository sacmehta/EdgeNets, read file by file (stored versions at
commits 4a6c105d8604455fe15e6846950baf1b4b13f7dc: model/segmentation/espnetv2.py;
16df6b1cb393068ac571fdcc16d61d139cfabc57: model/classification/espnetv2.py, nn_layers/eesp.py;
5067df1fa83a7d31d4615c036ab197409fd2edbc: model/classification/espnetv2_config.py,
nn_layers/{cnn_utils,espnet_utils,efficient_pyramid_pool,efficient_pt}.py), rebuilt unchanged in a scratch
folder outside this repository (only ``utilities/print_utils`` stubbed), built as
``ESPNetv2Segmentation(args, classes=20, dataset='city')`` with args s=2.0, classes=20, dataset='city',
weights='', loaded with ``load_state_dict(torch.load(<file>, map_location="cpu", weights_only=True),
strict=True)``, run in eval mode without grad on the CPU (torch 2.14.1) on the inputs of ``seeded_input`` and
``street_input`` below. Stored: ``seeded_logits_sub8`` (20, 32, 40) float32, the logits on the seeded input at
every 8th pixel; ``seeded_input_sub32``, the input at every 32nd pixel (to tell a changed random generator
from a changed model); ``street_argmax`` (368, 480) uint8, the argmax of the full logit map on the street
image; ``street_logits_sub16`` (20, 23, 30) float32. At both sizes our model matched the authors' exactly
(max |diff| 0.0, argmax 100 %). The authors' decoder up-samples by ``scale_factor=2`` and so fails on sizes
that are not multiples of 16 (360 x 480: 45 vs 46 rows); ours up-samples to the encoder map's size, which
equals the authors' output wherever theirs runs.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dovit.core import espnetv2
from dovit.core.espnetv2 import (
    ESPNetv2Segmentation,
    class_groups,
    group_logits,
    load_released_state,
)
from dovit.data.datasets import CAMVID_CLASSES
from dovit.evaluation.metrics import ConfusionMatrix

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "data" / "espnetv2_reference.npz"
SHARED = ROOT / "../shared/data"
RELEASED = SHARED / "pretrained/espnetv2/espnetv2_s_2.0_city_1024x512.pth"
CAMVID_ROOT = SHARED / "camvid"
STREET = ROOT / "assets/synthetic_street.png"
CAMVID = CAMVID_CLASSES
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
# mIoU of the released Cityscapes weights, grouped to CamVid's classes, on every 10th CamVid val frame at
# 360 x 480 (11 frames): measured 54.8 (55.2 on all 101 frames); the floor sits ~5 points under it.
CAMVID_MIOU_FLOOR = 0.50


def _shared(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing on CI")
        pytest.skip(f"{path} is not here (../shared/data is outside the repository)")
    return path


def _normalise(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W): / 255, then ImageNet mean and std (the released model's input)."""
    x = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - IMAGENET_MEAN) / IMAGENET_STD


def seeded_input() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(1, 3, 256, 320)


def street_input() -> torch.Tensor:
    """assets/synthetic_street.png (480 x 360) normalised, resized to 368 x 480 (bilinear, torch)."""
    x = _normalise(np.asarray(Image.open(STREET).convert("RGB")))[None]
    return F.interpolate(x, size=(368, 480), mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def released() -> ESPNetv2Segmentation:
    model = ESPNetv2Segmentation(num_classes=20)
    model.load_released(_shared(RELEASED))  # strict=True inside
    return model.eval()


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


def test_released_file_loads_strictly(released):
    state = load_released_state(RELEASED)
    ours = released.state_dict()
    assert len(ours) == len(state)
    missing, unexpected = released.load_state_dict(
        {(k if k.startswith("base_net.") else f"decoder.{k}"): v for k, v in state.items()}, strict=True
    )
    assert not missing and not unexpected


def test_matches_the_authors_logits_on_the_seeded_input(released, reference):
    x = seeded_input()
    assert torch.equal(x[0, :, ::32, ::32], torch.from_numpy(reference["seeded_input_sub32"])), (
        "torch.randn under manual_seed(0) no longer gives the fixture's input: the comparison below is void"
    )
    with torch.no_grad():
        logits = released(x)
    assert logits.shape == (1, 20, 256, 320)
    ours = logits[0, :, ::8, ::8].numpy()
    np.testing.assert_allclose(ours, reference["seeded_logits_sub8"], rtol=0, atol=1e-4)


def test_matches_the_authors_argmax_on_the_street_image(released, reference):
    with torch.no_grad():
        logits = released(street_input())
    np.testing.assert_allclose(
        logits[0, :, ::16, ::16].numpy(), reference["street_logits_sub16"], rtol=0, atol=1e-4
    )
    argmax = logits.argmax(1)[0].numpy().astype(np.uint8)
    assert argmax.shape == reference["street_argmax"].shape
    agreement = float((argmax == reference["street_argmax"]).mean())
    assert agreement >= 0.999, f"argmax agrees with the authors' on {agreement:.4%} of the pixels"


def test_any_input_size_runs(released):
    """360 x 480 (CamVid's size, not a multiple of 16) runs where the authors' x2 decoder fails."""
    with torch.no_grad():
        logits = released(torch.zeros(1, 3, 360, 480))
    assert logits.shape == (1, 20, 360, 480) and torch.isfinite(logits).all()


def test_camvid_miou_of_the_grouped_classes(released):
    root = _shared(CAMVID_ROOT)
    frames = sorted((root / "val").glob("*.png"))[::10]
    if not frames:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no frames in {root / 'val'}")
        pytest.skip(f"no CamVid val frames in {root / 'val'}")
    groups = class_groups(CAMVID)
    matrix = ConfusionMatrix(len(CAMVID), ignore_index=11)
    for frame in frames:
        image = _normalise(np.asarray(Image.open(frame).convert("RGB")))[None]
        label = np.asarray(Image.open(root / "valannot" / frame.name), dtype=np.int64)
        with torch.no_grad():
            prediction = group_logits(released(image), groups).argmax(1)[0]
        matrix.update(prediction, torch.from_numpy(label))
    miou = matrix.scores()["miou"]
    assert miou > CAMVID_MIOU_FLOOR, f"mIoU {miou:.3f} on {len(frames)} CamVid val frames"


def test_missing_weights_raise_a_useful_error(tmp_path):
    missing = tmp_path / "nowhere" / "espnetv2.pth"
    with pytest.raises(FileNotFoundError, match="espnetv2_s_2.0_city_1024x512.pth") as error:
        load_released_state(missing)
    assert str(missing) in str(error.value)
    with pytest.raises(FileNotFoundError):
        ESPNetv2Segmentation().load_released(missing)


@torch.no_grad()
def test_the_merge_without_its_shuffle_computes_the_same_sums():
    """Eval mode runs the shuffle and the group conv as one dense conv (PyramidPool._merge)."""
    from dovit.core.espnetv2 import PyramidPool

    torch.manual_seed(0)
    pool = PyramidPool(16, 10, 8).eval()
    merged = torch.randn(2, 50, 12, 16)
    assert torch.allclose(pool._merge(merged, fold=False), pool.br(pool.merge_layer(merged)), atol=1e-5)
    with torch.no_grad():
        pool.merge_layer[2].cbr[0].weight.mul_(2.0)  # a new weight invalidates the cached dense one
    assert torch.allclose(pool._merge(merged, fold=False), pool.br(pool.merge_layer(merged)), atol=1e-5)


def _random_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """BatchNorms that are not the identity: running statistics and affine parameters drawn at random."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                for tensor, (low, high) in zip(
                    (module.running_mean, module.running_var, module.weight, module.bias),
                    ((-0.5, 0.5), (0.5, 2.0), (0.5, 1.5), (-0.2, 0.2)),
                    strict=True,
                ):
                    tensor.copy_(torch.empty_like(tensor).uniform_(low, high, generator=generator))
    return model


def _folded_and_unfolded(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        folded = model(x)
        with espnetv2.as_written():
            unfolded = model(x)
    return folded, unfolded


def _assert_same_map(folded: torch.Tensor, unfolded: torch.Tensor, atol: float = 1e-4) -> None:
    difference = float((folded - unfolded).abs().max())
    agreement = float(folded.argmax(1).eq(unfolded.argmax(1)).float().mean())
    assert difference < atol and agreement >= 0.999, f"max |diff| {difference:.2e}, argmax {agreement:.4%}"


def test_folded_batchnorms_give_the_unfolded_networks_logits_on_the_fixtures_inputs(released):
    """Eval mode without gradients runs each conv + BatchNorm as one conv: the same logits up to float
    rounding on the inputs the authors' outputs were stored for (the tests above compare those outputs)."""
    for x in (seeded_input(), street_input()):
        _assert_same_map(*_folded_and_unfolded(released, x))
    folded = [m for m in released.modules() if any(k.endswith("_cache") for k in vars(m))]
    pairs = (espnetv2.ConvBN, espnetv2.DecoderConvBN)
    convs_with_norms = sum(isinstance(m, pairs) for m in released.modules())
    assert len(folded) >= convs_with_norms  # every conv + BatchNorm pair ran folded


def test_the_folded_weights_follow_the_weights_and_stay_out_of_state_dicts():
    torch.manual_seed(0)
    model = _random_statistics(ESPNetv2Segmentation(num_classes=20)).eval()
    x = torch.randn(1, 3, 64, 96)
    keys = set(model.state_dict())
    _assert_same_map(*_folded_and_unfolded(model, x))
    assert set(model.state_dict()) == keys
    other = _random_statistics(ESPNetv2Segmentation(num_classes=20))
    with torch.no_grad():  # different weights and statistics from another network, loaded in place
        for tensor in other.state_dict().values():
            if tensor.is_floating_point():
                tensor.mul_(1.5)
    model.load_state_dict(other.state_dict(), strict=True)
    folded, unfolded = _folded_and_unfolded(model, x)
    _assert_same_map(folded, unfolded)
    assert torch.allclose(folded, _folded_and_unfolded(other.eval(), x)[1], atol=1e-4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).square().mean().backward()  # eval mode with gradients (as calibration trains): all get one
    unused = {f"base_net.level{level}_0.eesp.module_act.weight" for level in (2, 3, 4)}  # the released layout
    assert {name for name, p in model.named_parameters() if p.grad is None} == unused
    optimizer.step()
    _assert_same_map(*_folded_and_unfolded(model, x))


def test_training_runs_the_batchnorms_as_written():
    torch.manual_seed(0)
    model = _random_statistics(ESPNetv2Segmentation(num_classes=20)).train()
    x = torch.randn(2, 3, 64, 96)
    means = model.base_net.level1.bn.running_mean.clone()
    with torch.no_grad():  # training statistics: the batch's, and the running ones move
        model(x)
    assert not torch.equal(means, model.base_net.level1.bn.running_mean)
    assert not any(k.endswith("_cache") for m in model.modules() for k in vars(m))
