"""app.controls (ξ slider scale, working sizes), app.examples and app.readouts."""
import numpy as np
import pytest

from app import controls
from app.examples import default_examples_dir, find_examples
from app.readouts import prediction_summary, readouts_markdown
from dovit import Predictor


def test_xi_scale_covers_0_to_1_and_is_finer_near_1():
    assert controls.xi_from_position(0.0) == 0.0 and controls.xi_from_position(1.0) == 1.0
    positions = np.arange(0, 1.0001, controls.SLIDER_STEP)
    xis = np.array([controls.xi_from_position(p) for p in positions])
    steps = np.diff(xis)
    assert (steps >= 0).all() and steps[-100:].max() < steps[:100].min() / 10
    assert abs(xis[np.argmin(np.abs(xis - 0.985))] - 0.985) < 0.0003  # paper's Cityscapes ξ is reachable
    for xi in (0.0, 0.5, 0.95, 0.985, 0.999, 1.0):
        assert controls.xi_from_position(controls.position_from_xi(xi)) == pytest.approx(xi, abs=0.002)


def test_sweep_values_increase_to_1_denser_near_1():
    values = controls.sweep_values(20, lowest=0.5)
    assert values[-1] == 1.0 and abs(values[0] - 0.5) < 0.01 and np.all(np.diff(values) > 0)
    assert np.diff(values)[-1] < np.diff(values)[0]


def test_working_size_choices_and_parsing():
    choices = dict((value, label) for label, value in controls.working_size_choices((360, 480), 16))
    assert "checkpoint's input" in choices["360x480"] and "180x240" in choices
    wide = controls.working_size_choices((360, 480), 16, image_size=(720, 1280))
    label, value = wide[-1]
    height, width = controls.parse_size(value, (1, 1))
    assert "image aspect" in label and abs(height / width - 720 / 1280) < 0.02
    assert abs(height * width - 360 * 480) < 0.05 * 360 * 480
    assert controls.parse_size(None, (360, 480)) == (360, 480)
    with pytest.raises(ValueError):
        controls.parse_size("big", (360, 480))


def test_find_examples(tmp_path):
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    found = find_examples(tmp_path, assets_dir=tmp_path / "none")
    assert [p.name for p in found] == ["a.jpg", "b.png"]
    assert any(p.name == "synthetic_street.png" for p in find_examples())
    with pytest.raises(FileNotFoundError):
        find_examples(tmp_path / "missing")


def test_default_examples_are_the_camvid_val_folder_when_it_exists(tmp_path):
    assert default_examples_dir(tmp_path) == tmp_path
    assert default_examples_dir(tmp_path / "missing") is None


def test_prediction_summary_numbers_are_consistent(tiny_model):
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    prediction = Predictor(tiny_model).predict(image, xi=0.3)
    summary = prediction_summary(prediction)
    assert summary.kept_tokens == [g.tokens for g in prediction.trace.groups]
    assert summary.gflops == pytest.approx(prediction.trace.flops / 1e9)
    assert summary.speedup == pytest.approx(summary.dense_latency_ms / summary.latency_ms)
    assert summary.fps == pytest.approx(1000 / summary.latency_ms)
    text = readouts_markdown(summary)
    assert "GFLOPs" in text and "speedup" in text and f"B1: {summary.num_tokens}" in text


def test_speed_panel_gives_the_ideal_speedup_and_the_efficiency(tiny_model):
    from app.readouts import LOW_EFFICIENCY, _efficiency

    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    prediction = Predictor(tiny_model).predict(image, xi=0.0)
    summary = prediction_summary(prediction)
    assert summary.ideal_speedup == pytest.approx(prediction.trace.dense_flops / prediction.trace.flops)
    assert summary.efficiency == pytest.approx(summary.speedup / summary.ideal_speedup)
    assert "ideal speed-up" in readouts_markdown(summary) and "efficiency" in readouts_markdown(summary)
    slow = _efficiency(1.2, 2.0)  # 0.6 of ideal: the panel says what eats the difference
    assert slow["efficiency"] == pytest.approx(0.6) and "fixed costs" in slow["efficiency_note"]
    assert _efficiency(1.9, 2.0)["efficiency_note"] is None and LOW_EFFICIENCY == 0.7
    assert _efficiency(0.5, 1.0)["efficiency_note"] is None  # xi = 1: nothing to save, nothing to explain
    assert _efficiency(None, 2.0) == {"efficiency": None, "efficiency_note": None}
