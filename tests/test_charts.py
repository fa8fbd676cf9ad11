"""app.charts: plotly figures built from a Trace / sweep points, checked on their data."""
import numpy as np
import pytest
from test_drawing import make_trace  # not tests.test_drawing: an installed "tests" package can shadow ours

from app.charts import SweepPoint, _interpolate, halting_by_class_figure, sweep_figure, tokens_flops_figure
from app.controls import position_from_xi


def test_tokens_flops_figure_has_one_bar_per_block_with_group_tokens():
    trace = make_trace()
    figure = tokens_flops_figure(trace)
    bars, flops, dense = figure.data
    assert list(bars.x) == [1, 2, 3, 4]
    assert list(bars.y) == [6, trace.groups[1].tokens, trace.groups[2].tokens, trace.groups[2].tokens]
    # group FLOPs split over its blocks
    assert list(flops.y) == pytest.approx([600e-9, 400e-9, 250e-9, 250e-9])
    assert list(dense.y) == pytest.approx([600e-9] * 4)
    assert "tokens" in bars.hovertemplate and "GFLOPs" in flops.hovertemplate
    decision_lines = [shape.x0 for shape in figure.layout.shapes]
    assert decision_lines == [1.5, 2.5]


def test_sweep_figure_marks_the_current_xi():
    points = [SweepPoint(xi, gflops, 2.0, agreement, [4, 2]) for xi, gflops, agreement in
              ((0.5, 0.5, 0.6), (0.9, 1.0, 0.9), (1.0, 2.0, 1.0))]
    figure = sweep_figure(points, current_xi=0.95)
    flops, agreement, flops_marker, agreement_marker = figure.data
    assert list(flops.y) == pytest.approx([25.0, 50.0, 100.0])
    assert list(agreement.y) == pytest.approx([60.0, 90.0, 100.0])
    x = position_from_xi(0.95, snap=False)  # the x axis is the slider's scale, labelled in ξ
    assert list(flops.x) == pytest.approx([position_from_xi(p.xi, snap=False) for p in points])
    assert flops_marker.x == (x,) and points[1].xi < 0.95 < points[2].xi
    assert 50.0 < flops_marker.y[0] < 100.0 and 90.0 < agreement_marker.y[0] < 100.0
    assert [shape.x0 for shape in figure.layout.shapes] == [x]
    assert "0.95" in figure.layout.xaxis.ticktext and [p[0] for p in flops.customdata] == [0.5, 0.9, 1.0]
    assert len(sweep_figure(points).data) == 2  # no current ξ: no marker


def test_interpolate_clamps_outside_the_range():
    assert _interpolate([0.0, 1.0], [0.0, 10.0], -1.0) == 0.0
    assert _interpolate([0.0, 1.0], [0.0, 10.0], 2.0) == 10.0
    assert _interpolate([0.0, 1.0], [0.0, 10.0], 0.25) == pytest.approx(2.5)


def test_halting_by_class_figure_stacks_every_token_once_and_leaves_absent_classes_out():
    trace = make_trace()  # 2 x 3 grid, three groups
    trace.class_names = ["road", "sky", "car", "tree"]
    trace.decoder_top_classes = np.array([[0, 0, 2], [2, 2, 1]])[..., None]  # no "tree" token
    figure = halting_by_class_figure(trace.halting_by_class())
    assert [bar.name for bar in figure.data] == ["stopped after B1", "stopped after B2", "ran all blocks"]
    assert all(list(bar.x) == ["road", "sky", "car"] for bar in figure.data)
    assert sum(sum(bar.y) for bar in figure.data) == trace.num_tokens
    per_class = np.sum([list(bar.y) for bar in figure.data], axis=0)
    assert per_class.tolist() == [2, 1, 3] and figure.layout.barmode == "stack"
