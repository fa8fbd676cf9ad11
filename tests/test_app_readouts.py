"""app/readouts.py: the readout's time by part keeps the stem apart from the blocks."""
import numpy as np

from app.readouts import part_times, prediction_summary, readouts_markdown
from dovit import Predictor


def test_part_times_sum_the_stages_by_part():
    timings = {"embed": 5.0, "group_1": 2.0, "decision_1": 0.5, "group_2": 1.5, "decoder": 3.0,
               "upsample": 1.0}
    assert part_times(timings) == {"stem": 5.0, "blocks": 3.5, "aux heads": 0.5, "decoder": 4.0}


def test_the_readout_shows_the_stems_time_apart_from_the_blocks(tiny_model):
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    prediction = Predictor(tiny_model).predict(image, xi=0.5)
    summary = prediction_summary(prediction)
    assert set(summary.part_ms) == {"stem", "blocks", "aux heads", "decoder"}
    assert summary.part_ms["stem"] == prediction.trace.timings_ms["embed"] > 0
    assert "Time by part (this ξ): stem" in readouts_markdown(summary)
