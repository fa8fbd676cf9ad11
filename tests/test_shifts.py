"""dovit.evaluation.shifts: the shifts, seeded and in range; mIoU per shift, severity and xi; the Cityscapes-C
protocol."""

import numpy as np
import pytest
import torch

import dovit
from dovit import robustness
from dovit.core.predictor import Predictor
from dovit.data import EvalTransform
from dovit.data.augment import HELD_OUT_SHIFTS
from dovit.data.synthetic import synthetic_dataset
from dovit.evaluation import shifts, xi_sweep

INPUT_SIZE = (32, 48)


def street_like(height: int = 60, width: int = 80) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([(x * 3) % 256, (y * 4) % 256, ((x + y) * 2) % 256], -1).astype(np.uint8)
    image[20:40, 30:50] = 200
    return image


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = dovit.build_model("vit_tiny_patch16_224", num_classes=11, input_size=INPUT_SIZE,
                              decoder_channels=16,
                              default_xi=0.5)
    return dovit.save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.mark.parametrize("name", list(robustness.SHIFTS))
def test_every_shift_keeps_the_frame_and_grows_with_severity(name):
    image = street_like()
    distances = []
    for severity in shifts.SEVERITIES:
        shifted = shifts.apply_shift(image, name, severity, seed=3, index=1)
        assert shifted.shape == image.shape and shifted.dtype == np.uint8
        assert np.array_equal(shifted, shifts.apply_shift(image, name, severity, seed=3, index=1))  # seeded
        distances.append(np.abs(shifted.astype(float) - image).mean())
    assert distances[0] > 0.5  # every shift changes the image at severity 1
    assert distances[-1] > distances[0]  # and more at severity 5
    assert image.sum() == street_like().sum()  # the input is not modified in place


def test_random_shifts_draw_per_frame_and_seed():
    image = street_like()
    first = shifts.apply_shift(image, "gaussian_noise", 3, seed=0, index=0)
    assert not np.array_equal(first, shifts.apply_shift(image, "gaussian_noise", 3, seed=0, index=1))
    assert not np.array_equal(first, shifts.apply_shift(image, "gaussian_noise", 3, seed=1, index=0))


def test_families_and_held_out_shifts_are_known():
    assert set(shifts.FAMILIES) == {"noise", "blur", "weather", "digital", "camera"}
    assert set(HELD_OUT_SHIFTS) < set(robustness.SHIFTS)
    assert {"color_temperature_cool", "white_balance", "underexposure", "saturation",
            "tint"} <= set(robustness.SHIFTS)


def test_unknown_shift_and_severity_are_refused():
    with pytest.raises(ValueError, match="unknown shift 'frost'"):
        shifts.apply_shift(street_like(), "frost", 1)
    with pytest.raises(ValueError, match="severity must be one of"):
        shifts.apply_shift(street_like(), "fog", 6)


def test_clean_score_is_evaluates_and_results_are_reproducible(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint)
    raw = synthetic_dataset(3, (40, 56), seed=3)
    names = ["gaussian_noise", "tint"]
    results = shifts.run_robustness(predictor, raw, [0.0, 1.0], names, (1, 5), progress=False)
    assert [r.xi for r in results] == [0.0, 1.0]
    model = dovit.load_checkpoint(checkpoint)
    transformed = synthetic_dataset(3, (40, 56), seed=3,
                                    transform=EvalTransform(INPUT_SIZE, model.config.mean, model.config.std))
    reference = xi_sweep.evaluate_model(model, transformed, [0.0, 1.0], progress=False, throughput_images=0)
    for result, expected in zip(results, reference, strict=False):
        assert result.clean_miou == pytest.approx(expected.miou)
        # The Predictor's trace always counts the aux heads (it runs them for the confidence maps).
        assert result.gflops == pytest.approx(expected.gflops, rel=1e-2)
        assert [(s.shift, s.severity) for s in result.scores] == [(n, s) for n in names for s in (1, 5)]
        assert all(0.0 <= s.miou <= 1.0 for s in result.scores)
        assert result.mean_shifted_miou == pytest.approx(np.mean([s.miou for s in result.scores]))
        assert result.mean_over(["tint"]) == pytest.approx(result.shift_means()["tint"])
    assert results[1].clean_flops_saved <= 0.0  # xi = 1 runs every block (and the aux heads)
    assert results[0].clean_flops_saved > 0.0  # xi = 0 stops every token at the first decision
    again = shifts.run_robustness(predictor, raw, [0.0, 1.0], names, (1, 5), progress=False)
    assert [r.to_dict() for r in again] == [r.to_dict() for r in results]


def test_benchmark_refuses_bad_requests(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint)
    raw = synthetic_dataset(1, (40, 56))
    with pytest.raises(ValueError, match="unknown shift"):
        shifts.run_robustness(predictor, raw, [1.0], ["frost"], progress=False)
    with pytest.raises(ValueError, match="xi must be a number"):
        shifts.run_robustness(predictor, raw, [1.5], ["fog"], progress=False)
    with pytest.raises(ValueError, match="severity"):
        shifts.run_robustness(predictor, raw, [1.0], ["fog"], (0,), progress=False)


def test_frame_step_scores_every_kth_frame(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint)
    raw = synthetic_dataset(5, (40, 56), seed=3)
    seen = []
    original = raw.__getitem__
    raw.__class__ = type("Counting", (raw.__class__,), {"__getitem__": lambda self,
                                                        i: seen.append(i) or original(i)})
    shifts.run_robustness(predictor, raw, [1.0], ["tint"], (1,), max_images=2, frame_step=2, progress=False)
    assert seen == [0, 2]
    with pytest.raises(ValueError, match="frame_step"):
        shifts.run_robustness(predictor, raw, [1.0], ["tint"], (1,), frame_step=0, progress=False)


def test_class_accuracy_counts_each_class_pixels_predicted_as_it(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint)
    raw = synthetic_dataset(2, (40, 56), seed=3)
    result = shifts.run_robustness(predictor, raw, [1.0], ["tint"], (2,), progress=False)[0]
    masks = [p.mask for p in predictor.predict_batch([raw[i][0] for i in range(2)], xi=1.0, dense=False)]
    labels = [raw[i][1] for i in range(2)]
    for c, accuracy in enumerate(result.clean_class_accuracy):
        total = sum(int((label == c).sum()) for label in labels)
        if total == 0:
            assert accuracy is None
        else:
            hits = sum(int(((label == c) & (mask == c)).sum()) for label, mask in zip(labels, masks,
                                                                                      strict=False))
            assert accuracy == pytest.approx(hits / total)
    assert len(result.scores[0].class_accuracy) == 11
