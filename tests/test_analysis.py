"""dovit.report.analysis: pure statistics, agreement with dovit.evaluate, token-count invariants, the
report."""
import dataclasses
import json

import numpy as np
import pytest
from test_evaluate import INPUT_SIZE, checkpoint, fake_camvid  # noqa: F401 (checkpoint: the tiny model fixture)

import dovit
from dovit.data import EvalTransform
from dovit.data.synthetic import synthetic_dataset
from dovit.evaluation import xi_sweep
from dovit.report import analysis

GRID = (0.0, 0.5, 1.0)  # xi 0 stops every token at the first decision, 1 none


@pytest.fixture(scope="module")
def predictor(checkpoint) -> dovit.Predictor:
    return dovit.Predictor.from_checkpoint(checkpoint)


# frames at the checkpoint's aspect, as CamVid's are, so that the report (each image at its own aspect) and
# evaluate (every image squeezed to the input size) see the same pixels
FRAME_SIZE = (2 * INPUT_SIZE[0], 2 * INPUT_SIZE[1])


def synthetic_frames(count: int = 4) -> list[analysis.Frame]:
    dataset = synthetic_dataset(count, FRAME_SIZE, seed=3)
    return [analysis.Frame(f"s{i}", *dataset.load(i), i) for i in range(count)]


@pytest.fixture(scope="module")
def labelled(predictor) -> analysis.ReportAccumulator:
    return analysis.analyse_frames(predictor, synthetic_frames(), 0.0, GRID, has_labels=True, progress=False)


# ------------------------------------------------------------------ pure statistics
def test_calibration_of_a_calibrated_and_an_overconfident_head():
    confidence = np.array([0.95] * 10 + [0.55] * 10)
    calibrated = analysis.calibration_counts(confidence,
                                             np.r_[np.ones(9), np.zeros(1), np.ones(5), np.zeros(5)] > 0)
    # (|0.9 - 0.95| + |0.5 - 0.55|) / 2
    assert analysis.expected_calibration_error(calibrated) == pytest.approx(0.05)
    overconfident = analysis.calibration_counts(np.full(8, 0.9), np.arange(8) < 4)
    assert analysis.expected_calibration_error(overconfident) == pytest.approx(0.4)
    rows = analysis.reliability_rows(overconfident)
    assert [r["tokens"] for r in rows] == [0] * 9 + [8]
    assert (rows[9]["accuracy"] == 0.5 and rows[9]["confidence"] == pytest.approx(0.9)
            and rows[0]["accuracy"] is None)
    assert analysis.expected_calibration_error(analysis.CalibrationCounts.empty()) is None


def test_confidence_one_falls_in_the_last_bin_and_counts_add_up():
    counts = analysis.calibration_counts(np.array([0.0, 0.1, 1.0]), np.array([True, False, True]), bins=10)
    assert counts.tokens.tolist() == [1, 1] + [0] * 7 + [1]
    assert (counts + counts).tokens.sum() == 6


def test_halting_depth_counts_per_class():
    depth = np.array([[1, 1, 4], [2, 4, 4]])
    token_class = np.array([[0, 0, 1], [1, 255, 1]])  # 255: an all-void token, left out
    counts = analysis.halting_depth_counts(depth, token_class, num_classes=2, num_groups=4)
    assert counts.tolist() == [[2, 0, 0, 0], [0, 1, 0, 2]]


def test_stopped_counts_and_rates():
    selected = np.array([True, True, True, False])
    counts = analysis.stopped_counts(selected, token_class=np.array([0, 1, -1, 0]), aux_class=np.array([0, 0,
                                                                                                        0,
                                                                                                        1]),
                                    pixels=np.array([4, 4, 0, 4]), pixel_wrong=np.array([0, 3, 0, 4]),
                                    num_classes=2)
    assert dataclasses.astuple(counts) == (3, 2, 1, 8, 3)
    rates = counts.rates()
    assert rates["aux_error_rate"] == 0.5 and rates["final_pixel_error_rate"] == pytest.approx(3 / 8)
    assert analysis.StoppedCounts().rates()["aux_error_rate"] is None


def test_histogram_of_a_constant_and_of_nothing():
    assert sum(analysis.histogram([2.0, 2.0, 2.0])["counts"]) == 3
    assert analysis.histogram([]) == {"edges": [], "counts": []}


# ------------------------------------------------------------------ agreement with dovit.evaluate
def test_miou_and_gflops_agree_with_evaluate(labelled, checkpoint):
    model = dovit.load_checkpoint(checkpoint)
    dataset = synthetic_dataset(4, FRAME_SIZE, seed=3,
                                transform=EvalTransform(INPUT_SIZE, model.config.mean, model.config.std))
    expected = xi_sweep.evaluate_model(model, dataset, list(GRID), progress=False, throughput_images=0)
    rows = labelled.summary()["tradeoff"]
    assert [r["xi"] for r in rows] == list(GRID)
    for row, reference in zip(rows, expected, strict=False):
        for key in ("miou", "pa", "mpa", "gflops", "dense_gflops", "backbone_gflops",
                    "dense_backbone_gflops"):
            assert row[key] == pytest.approx(getattr(reference, key), rel=1e-9, abs=1e-12), (row["xi"], key)
        assert row["per_class_iou"] == pytest.approx(reference.per_class_iou, nan_ok=True)


def test_records_match_the_predictor(labelled, predictor):
    for record, frame in zip(labelled.records, synthetic_frames(), strict=False):
        trace = predictor.predict(frame.image, xi=0.0).trace
        assert record.kept_tokens == [g.tokens for g in trace.groups] and record.gflops == trace.flops / 1e9


# ------------------------------------------------------------------ token-count invariants
def test_xi_zero_stops_everything_at_the_first_decision(labelled):
    summary = labelled.summary()
    assert [row["mean"] for row in summary["kept_fraction_per_decision"]] == [0.0, 0.0, 0.0]
    for row in summary["halting_depth_per_class"]:
        if row["tokens"]:
            assert row["fraction_per_depth"] == [1.0, 0.0, 0.0, 0.0] and row["mean_depth"] == 1.0
    dense = summary["tradeoff"][-1]
    assert (dense["xi"] == 1.0 and dense["agreement_with_dense"] == 1.0 and dense["gflops"]
            == dense["dense_gflops"])


def test_every_token_is_counted_once(labelled):
    summary = labelled.summary()
    tokens = summary["images"] * summary["num_tokens"]
    stopped = summary["stopped_tokens"]
    assert sum(row["tokens"] for row in stopped) == tokens  # each token stops once or runs every block
    labelled_tokens = sum(row["tokens"] for row in summary["halting_depth_per_class"])
    assert summary["calibration"][0]["tokens"] == labelled_tokens  # every token reaches the first decision
    assert [c["tokens"] for c in summary["calibration"][1:]] == [0, 0]  # none reach later ones at xi 0
    assert stopped[0]["labelled_tokens"] == labelled_tokens
    for entry in summary["calibration"]:
        assert entry["ece"] is None or 0.0 <= entry["ece"] <= 1.0


def test_dense_report_stops_nothing(predictor):
    summary = analysis.analyse_frames(predictor, synthetic_frames(2), 1.0, [1.0], has_labels=True,
                                      progress=False).summary()
    assert [row["tokens"] for row in summary["stopped_tokens"]] == [0, 0, 0, 2 * summary["num_tokens"]]
    assert [c["tokens"] for c in summary["calibration"]] == [summary["calibration"][0]["tokens"]] * 3
    assert [row["mean"] for row in summary["kept_fraction_per_decision"]] == [1.0, 1.0, 1.0]


def test_thumbnails_keep_only_the_cheapest_and_dearest(predictor):
    frame = synthetic_frames(1)[0]
    result = analysis.analyse_image(predictor, frame.image, frame.label, 0.5, GRID)
    accumulator = analysis.ReportAccumulator(predictor.config.class_names, (3, 6, 9), 0.5, GRID, True,
                                             thumbnails=2)
    for index, gflops in enumerate([5.0, 1.0, 3.0, 9.0, 2.0, 7.0]):
        record = dataclasses.replace(result.record, frame=index, name=f"i{index}", gflops=gflops)
        accumulator.add(dataclasses.replace(result, record=record), frame.image)
    ranked = accumulator.ranked_thumbnails()
    assert [(name, g) for name, g, _ in ranked["cheapest"]] == [("i1", 1.0), ("i4", 2.0)]
    assert [(name, g) for name, g, _ in ranked["most_expensive"]] == [("i3", 9.0), ("i5", 7.0)]
    thumb = ranked["cheapest"][0][2]
    assert thumb.dtype == np.uint8 and thumb.shape[1] == 2 * analysis.THUMBNAIL_WIDTH + 4


# ------------------------------------------------------------------ figures (pure)
def test_figures_from_summary_parts(labelled):
    from dovit.report import figures, html

    summary = labelled.summary()
    sections = html.report_figures(summary)
    assert [title for title, _ in sections][-1] == "ξ trade-off" and len(sections) == 6
    halting = dict(sections)["Halting depth per class"]
    present = [row for row in summary["halting_depth_per_class"] if row["tokens"]]
    assert len(halting.data) == 4 and len(halting.data[0].y) == len(present)  # empty classes left out
    unlabelled = figures.tradeoff_figure([{k: v for k, v in row.items() if k not in ("miou", "pa", "mpa")}
                                          for row in summary["tradeoff"]], 0.5)
    assert all("mIoU" not in (trace.name or "") for trace in unlabelled.data)


def test_timeline_marks_the_current_frame():
    from dovit.report.figures import timeline_figure
    from dovit.viz.video import FrameRecord

    records = [FrameRecord(i, 1.0 + i, 3.0, [6, 3, 2, 1], 10.0 + i) for i in range(5)]
    figure = timeline_figure(records, current=2)
    assert [list(trace.y) for trace in figure.data[:2]] == [[1.0, 2.0, 3.0, 4.0, 5.0], [3.0] * 5]
    assert figure.layout.shapes[0].x0 == 2


# ------------------------------------------------------------------ sharding
def _without_timing(summary: dict) -> dict:
    """A summary without what differs from run to run (measured latency, wall time)."""
    summary = json.loads(json.dumps(summary))
    for record in summary["per_image"]:
        record.pop("latency_ms")
    summary.pop("seconds", None)
    return summary


def test_shards_merge_into_the_single_run(predictor):
    frames = synthetic_frames(5)
    single = analysis.analyse_frames(predictor, frames, 0.5, GRID, True, thumbnails=2, progress=False)
    merged = analysis.analyse_frames(predictor, frames[1::2], 0.5, GRID, True, thumbnails=2, progress=False)
    merged.merge(analysis.analyse_frames(predictor, frames[0::2], 0.5, GRID, True, thumbnails=2,
                                         progress=False))
    expected, actual = _without_timing(single.summary()), _without_timing(merged.summary())
    for entry in expected.pop("calibration") + actual.pop("calibration"):  # float sums in another order
        entry["ece"] = None if entry["ece"] is None else round(entry["ece"], 12)
        for row in entry["bins"]:
            row["confidence"] = None if row["confidence"] is None else round(row["confidence"], 12)
    assert actual == expected
    assert [name for name, _, _ in merged.ranked_thumbnails()["cheapest"]] == expected["cheapest"]
    with pytest.raises(ValueError, match="cannot merge"):
        merged.merge(analysis.ReportAccumulator(predictor.config.class_names, (3, 6, 9), 0.9, GRID, True))
