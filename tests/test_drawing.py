"""dovit.viz.drawing: pure drawing functions on small arrays and on a real tiny model's trace."""
import numpy as np
import pytest

from dovit import DecisionTrace, GroupTrace, Predictor, Trace
from dovit.viz import drawing

PATCH = 4


def make_trace(xi: float = 0.5) -> Trace:
    """A 2 x 3 token grid, two decisions: 2 tokens stop at the first, 1 more at the second."""
    confidence_1 = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.4]], np.float32)
    keep_1 = confidence_1 <= xi
    confidence_2 = np.array([[0.9, 0.9, 0.7], [0.1, 0.2, 0.3]], np.float32)
    keep_2 = keep_1 & (confidence_2 <= xi)
    decisions = [
        DecisionTrace(layer=1, confidence=confidence_1, stopped_here=~keep_1, keep_mask=keep_1,
                      kept=int(keep_1.sum())),
        DecisionTrace(layer=2, confidence=confidence_2, stopped_here=keep_1 & ~keep_2, keep_mask=keep_2,
                      kept=int(keep_2.sum())),
    ]
    groups = [GroupTrace((1, 1), 6, 600), GroupTrace((2, 2), int(keep_1.sum()), 400),
              GroupTrace((3, 4), int(keep_2.sum()), 500)]
    depth = np.where(~keep_1, 1, np.where(~keep_2, 2, 3))
    return Trace(xi=xi, grid=(2, 3), num_tokens=6, decisions=decisions, groups=groups, halting_depth=depth,
                 flops=1500, dense_flops=2400, backbone_flops=1400, dense_backbone_flops=2300,
                 aux_head_flops=50, decoder_flops=50)


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.integers(40, 200, (7, 11, 3), dtype=np.uint8)  # not a patch multiple: grid 2 x 3, cropped


def test_upsample_tokens_fills_patches_and_crops():
    tokens = np.array([[1, 2, 3], [4, 5, 6]])
    pixels = drawing.upsample_tokens(tokens, PATCH, (7, 11))
    assert pixels.shape == (7, 11)
    assert (pixels[:4, :4] == 1).all() and (pixels[4:, 8:] == 6).all()


def test_token_overlay_keeps_kept_tokens_clear_and_shades_stopped(image):
    kept = np.array([[True, False, True], [True, True, True]])
    here = np.array([[False, False, False], [False, False, True]])
    kept_now = kept & ~here
    out = drawing.token_overlay(image, kept_now, here, PATCH)
    assert out.shape == image.shape and out.dtype == np.uint8
    inside = (slice(1, 4), slice(1, 4))  # token (0, 0) away from grid lines: untouched
    np.testing.assert_array_equal(out[inside], image[inside])
    assert out[1:4, 5:8].mean() < image[1:4, 5:8].mean() * 0.6  # token (0, 1) stopped earlier: dark
    orange = out[5:7, 9:11].reshape(-1, 3).astype(int)
    assert (orange[:, 0] > orange[:, 2] + 40).all()  # token (1, 2) stopped here: orange


def test_group_overlays_one_per_group_with_counts(image):
    trace = make_trace()
    overlays = drawing.group_overlays(image, trace, PATCH)
    assert len(overlays) == len(trace.groups)
    assert "6/6 kept (100%)" in overlays[0][1]
    assert f"{trace.groups[1].tokens}/6" in overlays[1][1] and "2 stopped here" in overlays[1][1]
    assert all(o.shape == image.shape for o, _ in overlays)


def test_confidence_heatmap_has_colour_bar_and_contour(image):
    confidence = np.array([[0.9, 0.1, 0.1], [0.1, 0.1, 0.1]], np.float32)
    large = np.repeat(np.repeat(image, 4, 0), 4, 1)  # 28 x 44: patch 16 -> grid 2 x 3
    out = drawing.confidence_heatmap(confidence, 0.5, large, 16)
    assert out.shape == (28, 44 + 64, 3)
    white = (out[:, :44] == 255).all(axis=2)
    assert white[:, :18].any() and not white[:, 20:44].any()  # contour only around the confident token
    none_above = drawing.confidence_heatmap(confidence, 1.0, large, 16)
    assert not (none_above[:, :44] == 255).all(axis=2).any()


def test_decision_heatmaps_one_per_decision(image):
    trace = make_trace()
    maps = drawing.decision_heatmaps(image, trace, PATCH)
    assert len(maps) == 2 and "after block 1" in maps[0][1] and "2/6 above ξ" in maps[0][1]


def test_colorize_mask_uses_palette_and_blacks_out_unknown_ids():
    mask = np.array([[0, 1], [2, 7]])
    colours = [(10, 20, 30), (40, 50, 60), (70, 80, 90)]
    out = drawing.colorize_mask(mask, colours)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert tuple(out[0, 1]) == (40, 50, 60) and tuple(out[1, 1]) == (0, 0, 0)


def test_blend_endpoints(image):
    overlay = np.full_like(image, 255)
    np.testing.assert_array_equal(drawing.blend(image, overlay, 0.0), image)
    np.testing.assert_array_equal(drawing.blend(image, overlay, 1.0), overlay)


def test_halting_map_colours_follow_depth(image):
    trace = make_trace()
    out = drawing.halting_map(trace.halting_depth, 3, image, PATCH, opacity=1.0)
    colours = drawing.depth_colors(3)
    assert len({tuple(c) for c in colours}) == 3
    # token (0, 0) stopped after B_1
    np.testing.assert_array_equal(out[1:4, 1:4].reshape(-1, 3)[0], colours[0])


def test_disagreement_map_marks_exactly_the_differing_pixels(image):
    mask = np.zeros(image.shape[:2], np.int64)
    dense = mask.copy()
    dense[2, 3] = 1
    out = drawing.disagreement_map(mask, dense, image)
    magenta = (out == drawing.DISAGREE_COLOR).all(axis=2)
    assert magenta.sum() == 1 and magenta[2, 3]


def test_legend_lists_every_class_escaped_with_shares():
    html = drawing.legend_html(["road", "<b>car</b>"], [(1, 2, 3), (4, 5, 6)], np.array([[0, 0, 0, 1]]))
    assert "road 75.0%" in html and "&lt;b&gt;car&lt;/b&gt; 25.0%" in html and "rgb(4, 5, 6)" in html
    assert ("stopped after B1" in drawing.depth_legend_html(3)
            and "ran all blocks" in drawing.depth_legend_html(3))


def test_views_of_a_dense_forward_stop_nothing(tiny_model):
    """ξ = 1 is the dense model: every group overlay is the clear image, the disagreement map is empty."""
    predictor = Predictor(tiny_model)
    image = np.random.default_rng(1).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    prediction = predictor.predict(image, xi=1.0)
    patch = tiny_model.patch_size
    for overlay, caption in drawing.group_overlays(image, prediction.trace, patch):
        assert "(100%)" in caption
        np.testing.assert_array_equal(overlay[1:patch, 1:patch], image[1:patch, 1:patch])
    disagreement = drawing.disagreement_map(prediction.mask, prediction.dense_mask, image)
    assert not (disagreement == drawing.DISAGREE_COLOR).all(axis=2).any()
    assert (prediction.trace.halting_depth == len(prediction.trace.groups)).all()


def test_colour_blind_palette_keeps_the_class_count_and_refuses_unknown_schemes():
    from dovit.viz.drawing import COLOR_BLIND_SAFE, class_palette

    dataset = np.arange(33, dtype=np.uint8).reshape(11, 3)
    assert (class_palette(dataset) == dataset).all()
    safe = class_palette(dataset, "colour-blind safe")
    assert safe.shape == (11, 3) and len({tuple(c) for c in safe}) == 11
    assert tuple(safe[0]) == COLOR_BLIND_SAFE[0]
    with pytest.raises(ValueError, match="palette must be one of"):
        class_palette(dataset, "rainbow")


def test_stopped_tokens_are_hatched_so_shade_is_not_the_only_cue():
    from dovit.viz.drawing import hatch, token_overlay

    image = np.full((32, 48, 3), 128, np.uint8)
    kept = np.array([[True, False, True], [True, True, False]])
    # stopped by the decision before this group
    here = np.array([[False, False, False], [False, False, True]])
    out = token_overlay(image, kept, here, 16).astype(int)
    earlier = out[1:16, 17:32]  # token (0, 1): stopped before, not here
    lines = hatch((32, 48), 1)[1:16, 17:32]
    assert earlier[lines].mean() > earlier[~lines].mean() + 50  # bright '\' lines on the dark shade
    here_token, here_lines = out[17:32, 33:48], hatch((32, 48), -1)[17:32, 33:48]
    # '/' lines on orange
    assert (here_token[here_lines] == 255).all() and here_token[~here_lines].mean() < 250


# ------------------------------------------------------------- a display size that is not the working size
WORKING, DISPLAY = (28, 44), (45, 71)  # 1.6x: no token covers a whole number of display pixels


def test_at_the_working_size_tokens_are_patch_squares_and_the_grid_is_every_patch(image):
    """The old definitions (repeat each token patch x patch, crop; a line every patch pixels) hold exactly."""
    tokens = np.arange(6).reshape(2, 3)
    blocks = np.repeat(np.repeat(tokens, PATCH, axis=0), PATCH, axis=1)[:7, :11]
    assert np.array_equal(drawing.upsample_tokens(tokens, PATCH, (7, 11)), blocks)
    assert np.array_equal(drawing.upsample_tokens(tokens, PATCH, (7, 11), (7, 11)), blocks)
    out = image.astype(np.float32)
    out[::PATCH] = out[::PATCH] * 0.65 + drawing.GRID_COLOR * 0.35
    out[:, ::PATCH] = out[:, ::PATCH] * 0.65 + drawing.GRID_COLOR * 0.35
    np.testing.assert_array_equal(drawing.draw_patch_grid(image, PATCH), out.astype(np.uint8))
    np.testing.assert_array_equal(drawing.draw_patch_grid(image, PATCH, working_size=(7, 11)),
                                  out.astype(np.uint8))


def test_token_colours_land_on_the_pixels_of_their_token_at_a_non_integer_scale():
    from dovit.core.token_grid import token_index_map

    depth = np.array([[1, 2, 3], [3, 1, 2]])
    image = np.zeros((*DISPLAY, 3), np.uint8)
    out = drawing.halting_map(depth, 3, image, 16, opacity=1.0, working_size=WORKING)
    assert out.shape == image.shape
    index = token_index_map(DISPLAY, WORKING, depth.shape, 16)
    on_grid = (np.diff(index, axis=0, prepend=-1) != 0) | (np.diff(index, axis=1, prepend=-1) != 0)
    assert drawing.line_width(DISPLAY, WORKING) == 2  # each grid line: where a token starts, and one more
    near_grid = on_grid | np.roll(on_grid, 1, axis=0) | np.roll(on_grid, 1, axis=1)
    expected = drawing.depth_colors(3)[depth.ravel()[index] - 1]
    np.testing.assert_array_equal(out[~near_grid], expected[~near_grid])


def test_a_token_overlay_at_display_size_shades_exactly_the_stopped_tokens_pixels():
    from dovit.core.token_grid import token_index_map

    image = np.full((*DISPLAY, 3), 128, np.uint8)
    kept = np.array([[True, False, True], [True, True, False]])
    out = drawing.token_overlay(image, kept, None, 16, WORKING).astype(int)
    stopped = ~kept.ravel()[token_index_map(DISPLAY, WORKING, kept.shape, 16)]
    clear = (out == 128).all(axis=2)
    assert not (clear & stopped).any()  # every stopped pixel is shaded or hatched
    grid_lines = (out > 128).all(axis=2) & ~stopped  # kept pixels change only on the grid lines
    assert (clear | grid_lines)[~stopped].all()


def test_lines_and_hatching_thicken_with_the_display_scale():
    assert drawing.line_width((360, 480), None) == drawing.line_width((360, 480), (360, 480)) == 1
    assert drawing.line_width((540, 960), (312, 554)) == 2
    thin, thick = drawing.hatch((24, 24), 1), drawing.hatch((24, 24), 1, 12, 2)
    assert thick.mean() == thin.mean()  # the same share of hatched pixels: the pattern is scaled, not denser
    heat = drawing.confidence_heatmap(np.array([[0.9, 0.1, 0.1], [0.1, 0.1, 0.1]], np.float32), 0.5,
                                      np.zeros((*DISPLAY, 3), np.uint8), 16, working_size=WORKING)
    assert heat.shape == (DISPLAY[0], DISPLAY[1] + 64, 3)
