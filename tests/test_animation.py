"""dovit.viz.animation: the token pass's frames (one step per group at least, one size, a banner that
follows the pass) and their GIF and MP4 round trips."""
import io

import cv2
import numpy as np
import pytest
from PIL import Image
from test_drawing import make_trace  # not tests.test_drawing: an installed "tests" package can shadow ours

from dovit import Predictor
from dovit.core.preprocess import resize_image
from dovit.viz import animation, drawing
from dovit.viz.animation import AnimationTiming, cumulative_flops, pass_frames, render_pass

PATCH = 4
COLORS = np.array([[200, 0, 0], [0, 200, 0], [0, 0, 200]], np.uint8)


@pytest.fixture
def hand_frames():
    """A 2 x 3 grid (three groups: 2 tokens stop after B1, 1 after B2, 3 run every block) at 8 x 12 px."""
    image = np.random.default_rng(0).integers(40, 200, (8, 12, 3), dtype=np.uint8)
    mask = np.repeat(np.repeat(np.array([[0, 1, 2], [2, 1, 0]]), PATCH, axis=0), PATCH, axis=1)
    trace = make_trace()
    return trace, pass_frames(image, trace, mask, COLORS, PATCH, AnimationTiming(fade_frames=3))


def test_an_opening_frame_at_least_one_per_group_and_the_mask_last(hand_frames):
    trace, frames = hand_frames
    steps = [frame.step for frame in frames]
    assert len(frames) >= len(trace.groups) + 1
    assert steps[0] == "start" and steps[-1] == "mask"
    assert [s for i, s in enumerate(steps) if i == 0 or s != steps[i - 1]] == [
        "start", *[f"B{g}" for g in range(1, len(trace.groups) + 1)], "mask"]
    # every group's tokens that stop fade over fade_frames frames (each group here stops some)
    assert all(steps.count(f"B{g}") == 3 for g in range(1, len(trace.groups) + 1))


def test_frames_share_one_size_wide_enough_to_read(hand_frames):
    _, frames = hand_frames
    sizes = {frame.image.shape for frame in frames}
    assert len(sizes) == 1
    height, width, channels = sizes.pop()
    factor = -(-animation.MIN_WIDTH // 12)  # enlarged by a whole factor: a token stays a square
    assert channels == 3 and width == 12 * factor and height > 8 * factor
    assert all(frame.image.dtype == np.uint8 and frame.duration_ms > 0 for frame in frames)


def test_the_banner_follows_the_pass(hand_frames):
    trace, frames = hand_frames
    first_lines = {frame.banner[0] for frame in frames}
    assert len(first_lines) == len(trace.groups) + 2  # start, each group, mask
    for group, tokens in enumerate(g.tokens for g in trace.groups):
        banner = next(f.banner for f in frames if f.step == f"B{group + 1}")
        assert banner[0].startswith(f"B{group + 1} of {len(trace.groups)}")
        assert f"kept {tokens}/{trace.num_tokens}" in banner[1]
    # the banner is drawn: frames of one picture but another banner differ above the picture
    last_of = {frame.step: frame for frame in frames}
    banner_rows = frames[0].image.shape[0] - 8 * (-(-animation.MIN_WIDTH // 12))
    assert not np.array_equal(last_of["B1"].image[:banner_rows], last_of["B2"].image[:banner_rows])


def test_stopped_tokens_end_in_their_class_colour_and_kept_ones_stay_lit(hand_frames):
    trace, frames = hand_frames
    factor = -(-animation.MIN_WIDTH // 12)
    picture = lambda frame: frame.image[-8 * factor:]  # noqa: E731
    after_b1 = picture([f for f in frames if f.step == "B1"][-1])
    start = picture(frames[0])
    depth_px = drawing.upsample_tokens(trace.halting_depth, PATCH * factor, start.shape[:2])
    assert np.array_equal(after_b1[depth_px > 1], start[depth_px > 1])  # still lit
    assert not np.array_equal(after_b1[depth_px == 1], start[depth_px == 1])  # faded to colour
    assert np.array_equal(after_b1[depth_px == 1], picture(frames[-1])[depth_px == 1])  # = the final mask


def test_cumulative_flops_grow_and_end_at_the_forward_without_its_decoder():
    trace = make_trace()  # embedding 1400 - 1500 < 0 here is fine: only the differences are checked
    spent = cumulative_flops(trace)
    aux = trace.aux_head_flops // len(trace.decisions)
    assert np.diff(spent).tolist() == [trace.groups[1].flops + aux, trace.groups[2].flops]
    assert spent[-1] + trace.decoder_flops == trace.flops


def test_gif_and_mp4_round_trip_with_their_frame_counts(hand_frames, tmp_path):
    _, frames = hand_frames
    gif = Image.open(io.BytesIO(animation.gif_bytes(frames)))
    assert gif.n_frames == len(frames) and gif.info["loop"] == 0
    durations = []
    for index in range(gif.n_frames):
        gif.seek(index)
        durations.append(gif.info["duration"])
    assert durations == [10 * round(f.duration_ms / 10) for f in frames]  # GIF keeps hundredths of a second
    path = animation.write_animation(frames, tmp_path / "pass.mp4", fps=10)
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = capture.read()
    capture.release()
    assert ok and first.shape == frames[0].image.shape
    assert count == sum(max(1, round(f.duration_ms * 10 / 1000)) for f in frames)
    with pytest.raises(ValueError, match="gif or an .mp4"):
        animation.write_animation(frames, tmp_path / "pass.avi")


def test_render_pass_on_a_tiny_model_draws_one_step_per_group(tiny_model):
    predictor = Predictor(tiny_model)
    image = resize_image(np.random.default_rng(1).integers(0, 256, (70, 100, 3), dtype=np.uint8),
                         predictor.working_size())
    frames = render_pass(predictor, image, xi=0.4)
    groups = len(tiny_model.group_bounds)
    assert {f.step for f in frames} == {"start", "mask", *(f"B{g}" for g in range(1, groups + 1))}
    assert frames[-1].banner[1].startswith(f"{predictor.predict(xi=0.4).trace.flops / 1e9:.2f} GFLOPs")
