"""The token inspector: pixel -> token on every view geometry, the token JSON against the trace, the panel's
handlers (no model run per click) and /inspect_token through gradio_client (and its refusals)."""

import cv2
import gradio as gr
import numpy as np
import pytest
from gradio_client import handle_file
from test_app_api import client, server  # noqa: F401 (the served tiny checkpoint and its client)

from app import inspector, inspector_drawing
from app.studio import Studio
from app.tabs.inspector import EMPTY_PANEL, PanelSlots, TokenInspector, view_content
from dovit import Predictor
from dovit.core.token_grid import token_index_map
from dovit.core.trace import token_centres

PATCH = 16


# ------------------------------------------------------------------ pixel -> token on each view geometry
@pytest.mark.parametrize("working, content, point, expected", [
    ((64, 96), (64, 96), (0, 0), (0, 0)),  # a view at the working size: token groups, masks, halting...
    ((64, 96), (64, 96), (95, 63), (3, 5)),
    ((64, 96), (64, 96), (47, 16), (1, 2)),
    ((64, 96), (64, 96), (48, 15), (0, 3)),
    ((60, 80), (60, 80), (79, 59), (3, 4)),  # 60 x 80 is not a multiple of 16: the last tokens are cut short
    ((60, 80), (60, 80), (64, 48), (3, 4)),
    ((64, 96), (128, 192), (191, 127), (3, 5)),  # shown at twice the working size (image resolution)
    ((64, 96), (128, 192), (95, 31), (0, 2)),
    ((64, 96), (128, 192), (96, 32), (1, 3)),
    ((360, 480), (720, 960), (959, 719), (22, 29)),
    ((64, 96), (32, 48), (23, 7), (0, 2)),  # shown at half the working size
    ((64, 96), (32, 48), (24, 8), (1, 3)),
])
def test_token_at_each_view_geometry(working, content, point, expected):
    assert inspector.token_at(point, content, working, PATCH) == expected


def test_a_click_on_a_confidence_maps_colour_bar_or_off_the_image_is_no_token():
    working = (64, 96)  # a confidence view is (64, 96 + 64): the image, then its colour bar on the right
    assert inspector.token_at((95, 10), working, working, PATCH) == (0, 5)
    for point in ((96, 10), (150, 63), (-1, 0), (0, 64)):
        assert inspector.token_at(point, working, working, PATCH) is None


def test_every_pixel_of_a_resized_view_maps_to_the_token_of_its_working_pixel():
    working, content = (60, 80), (90, 120)  # 1.5x: each working pixel covers 1.5 view pixels
    for y in range(content[0]):
        for x in range(content[1]):
            row, col = inspector.token_at((x, y), content, working, PATCH)
            assert (row, col) == (int((y + 0.5) / 1.5) // PATCH, int((x + 0.5) / 1.5) // PATCH)


def test_a_click_on_a_16_9_view_picks_the_token_drawn_there():
    """A 960 x 540 photo seen at 312 x 554 (a 20 x 35 grid) and drawn at 540 x 960: every pixel's token is
    the one the drawing gave that pixel (``token_index_map``), and the marker boxes that token's pixels."""
    working, view, grid = (312, 554), (540, 960), (20, 35)
    drawn = token_index_map(view, working, grid, PATCH)
    rng = np.random.default_rng(0)
    for y, x in zip(rng.integers(0, view[0], 400), rng.integers(0, view[1], 400), strict=True):
        row, col = inspector.token_at((x, y), view, working, PATCH)
        assert row * grid[1] + col == drawn[y, x]
    assert inspector.token_at((959, 539), view, working, PATCH) == (19, 34)
    marked = inspector_drawing.token_marker(np.zeros((*view, 3), np.uint8), 7, 20, PATCH, working)
    box = (marked == inspector_drawing.MARKER_COLOR).all(axis=2)
    ys, xs = np.flatnonzero(box.any(axis=1)), np.flatnonzero(box.any(axis=0))
    token_ys, token_xs = np.flatnonzero(drawn[:, 0] // grid[1] == 7), np.flatnonzero(drawn[0] == 20)
    half_line = round(max(view) / 240) // 2 + 1  # the box's line is centred on the token's border pixels
    for drawn_at, token_at in ((ys[0], token_ys[0]), (ys[-1], token_ys[-1]), (xs[0], token_xs[0]),
                               (xs[-1], token_xs[-1])):
        assert abs(int(drawn_at) - int(token_at)) <= half_line


def test_arrow_moves_stay_on_the_grid():
    grid = (4, 6)
    assert inspector.move_token(0, 0, "up", grid) == (0, 0)
    assert inspector.move_token(0, 0, "down", grid) == (1, 0)
    assert inspector.move_token(3, 5, "right", grid) == (3, 5)
    assert inspector.move_token(3, 5, "left", grid) == (3, 4)


@pytest.mark.parametrize("row, col", [(4, 0), (0, 6), (-1, 0), (1.5, 0), (True, 0), ("1", 0), (None, 0),
                                      (float("nan"), 0), (0, float("inf"))])
def test_check_token_refuses_what_is_not_a_grid_index(row, col):
    with pytest.raises(ValueError, match="must be an integer in"):
        inspector.check_token(row, col, (4, 6))


def test_check_token_takes_integers_and_integral_floats():
    assert inspector.check_token(3, 5, (4, 6)) == (3, 5)
    assert inspector.check_token(2.0, np.int64(1), (4, 6)) == (2, 1)


# ------------------------------------------------------------------ the trace's per-token classes and the
# JSON
@pytest.fixture(scope="module")
def predictor(tiny_model):
    return Predictor(tiny_model)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    image[:24] = (200, 220, 250)
    return image


def test_trace_records_top_classes_of_each_aux_head_and_the_decoder(predictor, image):
    prediction = predictor.predict(image, xi=0.5, size=(60, 80))
    trace = prediction.trace
    for decision in trace.decisions:
        assert decision.top_classes.shape == (*trace.grid, 3) and decision.top_classes.dtype == np.int64
        # Eq. 3
        np.testing.assert_allclose(decision.top_probabilities[..., 0], decision.confidence, atol=1e-6)
        assert (np.diff(decision.top_probabilities, axis=-1) <= 0).all()
        assert (decision.top_probabilities.sum(-1) <= 1 + 1e-5).all()
    rows, cols = token_centres(trace.grid, (60, 80), PATCH)
    assert rows.tolist() == [8, 24, 40, 54] and cols.tolist() == [8, 24, 40, 56, 72]  # last row cut short
    np.testing.assert_array_equal(trace.decoder_top_classes[..., 0], prediction.mask[np.ix_(rows, cols)])


@pytest.mark.parametrize("xi", [0.0, 0.4, 1.0])
def test_token_report_matches_the_trace(predictor, image, xi):
    prediction = predictor.predict(image, xi=xi, size=(60, 80))
    trace = prediction.trace
    names = [f"name {c}" for c in range(5)]
    rows, cols = token_centres(trace.grid, (60, 80), PATCH)
    for row in range(trace.grid[0]):
        for col in range(trace.grid[1]):
            report = inspector.token_report(prediction, row, col, names, PATCH).to_dict()  # the API's JSON
            assert report["confidences"] == [float(d.confidence[row, col]) for d in trace.decisions]
            assert report["halting_group"] == trace.halting_depth[row, col]
            assert report["decision_layers"] == [d.layer for d in trace.decisions] and report["grid"] == [4,
                                                                                                          5]
            stops = [head["stops_here"] for head in report["aux_heads"]]
            assert stops == [bool(d.stopped_here[row, col]) for d in trace.decisions] and sum(stops) <= 1
            assert [h["top3"][0]["class"] for h in report["aux_heads"]] == [
                int(d.top_classes[row, col, 0]) for d in trace.decisions]
            assert report["dovit_class"]["class"] == report["decoder"]["top3"][0]["class"]
            assert report["dense_class"]["class"] == prediction.dense_mask[rows[row], cols[col]]
            assert report["dovit_class"]["name"] == names[report["dovit_class"]["class"]]
            if xi == 0.0:  # every token stops at the first decision
                assert report["halting_group"] == 1 and report["blocks_run"] == trace.decisions[0].layer
                assert [h["running"] for h in report["aux_heads"]] == [True, False, False]
            if xi == 1.0:
                assert report["ran_all_blocks"] and report["blocks_run"] == 12 and not any(stops)
                assert report["agrees_with_dense"] is True


def test_panel_markdown_and_chart_tell_the_tokens_story(predictor, image):
    prediction = predictor.predict(image, xi=0.0, size=(60, 80))
    report = inspector.token_report(prediction, 3, 4, [f"c{i}" for i in range(5)], PATCH)
    text = inspector.panel_markdown(report)
    assert "Token row 3, col 4" in text and "4×5 grid" in text and "pixels y 48–59, x 64–79" in text
    assert "stopped after group **B1** (after block 3)" in text and "(already stopped)" in text
    chart = inspector_drawing.confidence_svg(report)
    assert chart.startswith("<svg") and chart.endswith("</svg>") and "ξ = 0" in chart
    assert chart.count("<polygon") == 1 and "(stops here)" in chart and chart.count("(already stopped)") == 2
    for head in report.aux_heads:
        assert f"q = {head.confidence:.4f}" in chart
    marked = inspector_drawing.token_marker(image, 3, 4, PATCH)
    assert marked.shape == image.shape and (marked != image).any() and (marked[:40, :60]
                                                                        == image[:40, :60]).all()


# ------------------------------------------------------------------ the panel's handlers
@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    # the checkpoint's 2:3 aspect, so the working size is its 64 x 96 (a 4 x 6 grid)
    cv2.imwrite(str(folder / "street.png"), cv2.cvtColor(np.random.default_rng(1).integers(
        0, 255, (48, 72, 3), dtype=np.uint8), cv2.COLOR_RGB2BGR))
    (folder / "text.png").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def studio(predictor, uploads):
    return Studio(predictor, image_dirs=[uploads])


@pytest.fixture
def session(studio, uploads):
    return studio.on_image(str(uploads / "street.png"), "64x96", 0.5, 0.5, None).session


def select(x, y):
    return gr.SelectData(None, {"index": [x, y], "value": None})


def test_a_click_opens_the_panel_on_the_token_without_running_the_model(studio, session, monkeypatch):
    handlers = TokenInspector(studio)
    monkeypatch.setattr(studio.predictor.model, "forward_from", None)  # any forward would fail now
    panel = handlers.on_select(view_content)(session, select(50, 20))
    assert (panel.row, panel.col) == (1, 3) and "Token row 1, col 3" in panel.text
    assert panel.sidebar.open is True
    assert panel.chart.startswith("<svg") and panel.marker.shape == (64, 96, 3)
    report = inspector.token_report(session.prediction, 1, 3, handlers.class_names, PATCH)
    assert f"ξ = {report.xi:.4g}" in panel.text
    skipped = handlers.on_select(view_content)(session, select(100, 5))
    assert skipped == PanelSlots.filled(gr.skip())
    panel = handlers.on_move("right")(session, panel.row, panel.col)
    assert (panel.row, panel.col) == (1, 4) and "Token row 1, col 4" in panel.text
    panel = handlers.on_move("right")(session, 3, 5)
    assert (panel.row, panel.col) == (3, 5)
    panel = handlers.on_typed(session, 2, 0)
    assert (panel.row, panel.col) == (2, 0) and "Token row 2, col 0" in panel.text
    assert handlers.on_select(view_content)(None, select(1, 1)) == PanelSlots.filled(gr.skip())


def test_the_panel_follows_a_new_xi(studio, session):
    handlers = TokenInspector(studio)
    studio.on_release(0.0, 0.5, session)  # ξ = 0: every token stops at the first decision
    text = handlers.on_refresh(session, 2, 2).text
    assert "ξ = 0" in text and "stopped after group **B1**" in text
    studio.on_release(1.0, 0.5, session)
    text = handlers.on_refresh(session, 2, 2).text
    assert "ξ = 1" in text and "ran **all 12 blocks**" in text
    assert handlers.on_refresh(None, 2, 2).text == EMPTY_PANEL


def test_api_handler_runs_one_forward_per_image_and_xi(studio, uploads, monkeypatch):
    handlers = TokenInspector(studio)
    calls = []
    original = studio.predictor.predict
    monkeypatch.setattr(studio.predictor, "predict", lambda *a, **k: calls.append(k["xi"]) or original(*a,
                                                                                                       **k))
    path = str(uploads / "street.png")
    first = handlers.api_inspect_token(path, 0.5, 0, 0)
    second = handlers.api_inspect_token(path, 0.5, 3, 5)
    handlers.api_inspect_token(path, 0.7, 3, 5)
    assert calls == [0.5, 0.7] and first["grid"] == second["grid"] == [4, 6]
    assert (second["row"], second["col"]) == (3, 5) and second["xi"] == 0.5
    assert handlers.api_inspect_token(path, None, 1, 1)["xi"] == studio.config.default_xi


@pytest.mark.parametrize("xi, row, col, message", [
    (0.5, 4, 0, "row must be an integer in \\[0, 3\\]"), (0.5, 0, 6, "col must be an integer in \\[0, 5\\]"),
    (0.5, -1, 0, "row must be"), (0.5, 1.5, 0, "row must be"), (0.5, "2", 0, "row must be"),
    (1.5, 0, 0, "xi must be a number in"), ("0.5", 0, 0, "xi must be a number in"),
])
def test_api_handler_refuses_bad_arguments(studio, uploads, xi, row, col, message):
    with pytest.raises(gr.Error, match=message):
        TokenInspector(studio).api_inspect_token(str(uploads / "street.png"), xi, row, col)


@pytest.mark.parametrize("path", ["/etc/passwd", "text.png", "missing.png"])
def test_api_handler_reads_only_uploaded_images(studio, uploads, path):
    """Through ``Studio.user_image``, like /predict: a path outside the upload folders is 'not found'."""
    with pytest.raises(gr.Error, match="could not be found|not an image we can read") as refused:
        TokenInspector(studio).api_inspect_token(str(uploads / path) if "/" not in path else path, 0.5, 0, 0)
    assert "/etc" not in str(refused.value) and str(uploads) not in str(refused.value)


# ------------------------------------------------------------------ /inspect_token through gradio_client
def test_inspect_token_api_returns_the_tokens_json(client, uploads):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/inspect_token" in api and "/predict" in api
    token = client.predict(handle_file(uploads / "street.png"), 0.5, 2, 3, api_name="/inspect_token")
    assert (token["row"], token["col"], token["grid"], token["xi"]) == (2, 3, [4, 6], 0.5)
    assert len(token["confidences"]) == len(token["decision_layers"]) == len(token["aux_heads"]) == 3
    assert all(len(head["top3"]) == 3 for head in token["aux_heads"]) and len(token["decoder"]["top3"]) == 3
    assert 1 <= token["halting_group"] <= 4 and {"class", "name"} <= set(token["dense_class"])
    assert token["dovit_class"]["class"] == token["decoder"]["top3"][0]["class"]
    _, summary = client.predict(handle_file(uploads / "street.png"), 0.5, api_name="/predict")
    assert summary["grid"] == token["grid"]


@pytest.mark.parametrize("xi, row, col, message", [
    (0.5, 4, 0, "row must be an integer"), (0.5, 0, 99, "col must be an integer"), (0.5, 2.5, 0,
                                                                                    "row must be"),
    (0.5, -1, 0, "row must be"), (1.5, 0, 0, "xi must be a number in"), ("nan", 0, 0,
                                                                         "xi must be a number in"),
])
def test_inspect_token_api_refuses_bad_row_col_xi(client, uploads, xi, row, col, message):
    with pytest.raises(Exception, match=message):
        client.predict(handle_file(uploads / "street.png"), xi, row, col, api_name="/inspect_token")


def test_inspect_token_api_refuses_files_that_are_not_images(client, uploads):
    with pytest.raises(Exception, match="415 Unsupported Media Type"):  # refused at upload (app.guard)
        client.predict(handle_file(uploads / "text.png"), 0.5, 0, 0, api_name="/inspect_token")
    token = client.predict(handle_file(uploads / "street.png"), 0.9, 0, 0, api_name="/inspect_token")
    assert token["xi"] == 0.9  # the server goes on serving
