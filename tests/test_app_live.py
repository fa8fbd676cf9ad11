"""The Live tab's frame loop (app.tabs.live.LiveStream): one frame at a time, drops, readouts."""

import numpy as np
import pytest

import dovit
from app.tabs.live import LIVE_RUNTIME, LiveStream, live_runtime_choices


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return dovit.Predictor(tiny_model)


def frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8)


def test_each_frame_is_segmented_and_drawn_at_the_working_size(predictor):
    stream = LiveStream()
    results = [stream.process(predictor, frame(seed), xi=0.5) for seed in range(3)]
    last = results[-1]
    working = predictor.working_size(image_size=(120, 160))  # the 4:3 frame's own aspect, not squeezed
    assert last.tokens.shape == last.mask.shape == (*working, 3) and last.tokens.dtype == np.uint8
    assert last.frames == 3 and last.dropped == 0 and last.fps > 0
    assert 0 < last.flops and last.dense_flops > 0 and 0.0 <= last.kept <= 1.0
    text = last.readout()
    assert "fps" in text and "GFLOPs per frame" in text and "ξ 0.5" in text


def test_xi_one_keeps_every_token_and_xi_moves_between_frames(predictor):
    stream = LiveStream()
    assert stream.process(predictor, frame(), xi=1.0).kept == 1.0
    assert stream.process(predictor, frame(), xi=0.0).kept < 1.0  # the next frame follows the slider


def test_a_frame_arriving_while_one_runs_is_dropped(predictor):
    stream = LiveStream()
    with stream.busy:  # a frame of this session is being segmented
        assert stream.process(predictor, frame(), xi=0.5) is None
    assert stream.dropped == 1
    assert stream.process(predictor, frame(), xi=0.5).dropped == 1


def test_int8_is_the_default_runtime_when_onnxruntime_is_there():
    pytest.importorskip("onnxruntime")
    assert live_runtime_choices()[0] == LIVE_RUNTIME == "ONNX Runtime int8"
    assert set(live_runtime_choices()) == {"PyTorch", "ONNX Runtime", "ONNX Runtime int8"}


def test_the_page_has_a_live_stream_that_drops_rather_than_queues(tiny_model):
    from app.ui import build_demo

    app = build_demo(dovit.Predictor(tiny_model), examples_dir="")
    streams = [fn for fn in app.blocks.fns.values() if getattr(fn.fn, "__name__", "") == "on_frame"]
    assert len(streams) == 1 and streams[0].api_visibility == "private"
    live = streams[0]
    assert live.trigger_mode == "always_last" and live.concurrency_limit == 1 and live.stream_every <= 0.1
    app.close()
