"""dovit.viz.video: streaming frame sources, MP4 writing, per-frame records and analyse -> export end to
end."""
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import dovit
from dovit.core.preprocess import class_mask
from dovit.viz import video

SIZE = (64, 96)  # height, width: a 4 x 6 token grid at patch 16


def synthetic_video(path: Path, count: int = 12, size=SIZE, fps: float = 10.0) -> Path:
    """A moving white square on a gradient, written with OpenCV (mp4v)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    assert writer.isOpened()
    for index in range(count):
        frame = np.zeros((*size, 3), np.uint8)
        frame[:] = np.linspace(0, 200, size[1], dtype=np.uint8)[None, :, None]
        cv2.rectangle(frame, (4 * index, 10), (4 * index + 20, 30), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def predictor() -> dovit.Predictor:
    torch.manual_seed(0)
    model = dovit.build_model("vit_tiny_patch16_224", num_classes=5, input_size=SIZE, decoder_channels=16,
                              default_xi=0.5)
    return dovit.Predictor(model)


def test_video_frames_decode_in_order_with_their_count(tmp_path):
    path = synthetic_video(tmp_path / "clip.mp4")
    assert video.count_frames(path) == 12
    assert video.frame_rate(path) == pytest.approx(10.0)
    named = list(video.iter_named_frames(path))
    assert [name for name, _ in named] == [f"frame_{i:06d}" for i in range(12)]
    for _, frame in named:
        assert frame.shape == (*SIZE, 3) and frame.dtype == np.uint8
    # RGB, not BGR: the gradient's blue equals its red on a grey ramp; the square moves right
    assert named[0][1][20, 90].tolist() == pytest.approx(named[0][1][20, 90][::-1].tolist(), abs=8)
    assert named[0][1][20, 12].mean() > 230 and named[11][1][20, 12].mean() < 230


def test_max_frames_and_max_side(tmp_path):
    path = synthetic_video(tmp_path / "clip.mp4")
    frames = list(video.iter_frames(path, max_frames=3, max_side=48))
    assert len(frames) == 3 and frames[0].shape == (32, 48, 3)
    with pytest.raises(ValueError, match="max_frames"):
        list(video.iter_frames(path, max_frames=0))


def test_image_folder_streams_in_sorted_order(tmp_path):
    for index in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"f{index}.png"), np.full((8, 10, 3), (index * 50, 0, 0), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    named = list(video.iter_named_frames(tmp_path))
    assert [name for name, _ in named] == ["f0", "f1", "f2"]
    assert [int(frame[0, 0, 2]) for _, frame in named] == [0, 50, 100]  # BGR blue written -> RGB channel 2
    assert video.count_frames(tmp_path) == 3 and video.frame_rate(tmp_path) == video.DEFAULT_FPS


def test_frames_are_a_stream_not_a_list(tmp_path):
    path = synthetic_video(tmp_path / "clip.mp4")
    frames = video.iter_frames(path)
    assert not isinstance(frames, (list, tuple)) and next(frames).shape == (*SIZE, 3)


def test_bad_sources_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no video or image folder"):
        next(video.iter_frames(tmp_path / "missing.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        next(video.iter_frames(tmp_path / "empty"))
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="cannot decode|no frame"):
        next(video.iter_frames(tmp_path / "junk.mp4"))


def test_write_video_round_trip_and_size_check(tmp_path):
    frames = [np.full((*SIZE, 3), i * 20, np.uint8) for i in range(5)]
    assert video.write_video(iter(frames), tmp_path / "out.mp4", fps=5) == 5
    assert video.count_frames(tmp_path / "out.mp4") == 5
    assert len(list(video.iter_frames(tmp_path / "out.mp4"))) == 5
    with pytest.raises(ValueError, match="one size"):
        video.write_video([frames[0], np.zeros((32, 32, 3), np.uint8)], tmp_path / "bad.mp4")
    with pytest.raises(ValueError, match="no frames"):
        video.write_video([], tmp_path / "none.mp4")


def test_records_export_to_json_and_csv(tmp_path):
    records = [video.FrameRecord(frame=i, gflops=1.5 + i, dense_gflops=3.0, kept_tokens=[24, 10 - i, 5],
                                 latency_ms=12.5, name=f"f{i}", xi=0.9) for i in range(3)]
    written = json.loads(video.write_records_json(records, tmp_path / "r.json").read_text())
    assert [video.FrameRecord(**row) for row in written] == records
    rows = list(csv.DictReader(video.write_records_csv(records, tmp_path / "r.csv").open()))
    assert [int(r["frame"]) for r in rows] == [0, 1, 2]
    assert rows[1]["kept_tokens_B2"] == "9" and float(rows[2]["gflops"]) == pytest.approx(3.5)
    assert set(rows[0]) == {"frame", "name", "xi", "gflops", "dense_gflops", "kept_tokens_B1",
                            "kept_tokens_B2",
                            "kept_tokens_B3", "latency_ms"}


@pytest.mark.parametrize("overlay", video.OVERLAYS)
def test_analyse_export_reopen(tmp_path, predictor, overlay):
    source = synthetic_video(tmp_path / "clip.mp4")
    records = []
    annotated = (frame for record, frame in video.analyze_video(predictor, source, xi=0.5, overlay=overlay)
                 if not records.append(record))
    written = video.write_video(annotated, tmp_path / "annotated.mp4", fps=video.frame_rate(source))
    assert written == 12 and video.count_frames(tmp_path / "annotated.mp4") == 12
    assert len(list(video.iter_frames(tmp_path / "annotated.mp4"))) == 12
    video.write_records_json(records, tmp_path / "frames.json")
    rows = json.loads((tmp_path / "frames.json").read_text())
    assert [row["frame"] for row in rows] == list(range(12))
    for row in rows:
        assert {"frame", "gflops", "dense_gflops", "kept_tokens", "latency_ms"} <= set(row)
        assert row["kept_tokens"][0] == 24 and row["latency_ms"] > 0 and 0 < row["gflops"]


def test_records_match_the_predictor(tmp_path, predictor):
    """The video path's FLOPs and kept tokens are the Predictor's for the same frame and xi."""
    source = synthetic_video(tmp_path / "clip.mp4", count=3)
    for (record, _), frame in zip(video.analyze_video(predictor, source, xi=0.5, overlay="none"),
                                  video.iter_frames(source), strict=False):
        trace = predictor.predict(frame, xi=0.5).trace
        assert record.kept_tokens == [g.tokens for g in trace.groups]
        assert record.gflops == pytest.approx(trace.flops / 1e9) and record.dense_gflops == pytest.approx(
            trace.dense_flops / 1e9)


@pytest.mark.parametrize("overlay", ["mask", "disagreement", "halting"])
def test_batched_frames_match_frame_by_frame(tmp_path, predictor, overlay):
    """batch_size 5 over 12 frames (batches of 5, 5, 2): the same frames in order, each with its own kept
    tokens and FLOPs and the same drawing as one frame per forward (float reassociation aside)."""
    source = synthetic_video(tmp_path / "clip.mp4", count=12)
    single = list(video.analyze_video(predictor, source, xi=0.5, overlay=overlay, caption=False))
    batched = list(video.analyze_video(predictor, source, xi=0.5, overlay=overlay, caption=False,
                                       batch_size=5))
    assert [record.frame for record, _ in batched] == list(range(12))
    for (one, one_frame), (many, many_frame) in zip(single, batched, strict=False):
        assert many.kept_tokens == one.kept_tokens and many.name == one.name
        assert many.gflops == pytest.approx(one.gflops) and many.latency_ms > 0
        assert np.mean(np.any(many_frame != one_frame, axis=2)) <= 1e-3
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        next(video.analyze_video(predictor, source, batch_size=0))


def test_unknown_overlay_is_refused(tmp_path, predictor):
    with pytest.raises(ValueError, match="unknown overlay"):
        next(video.analyze_video(predictor, synthetic_video(tmp_path / "clip.mp4", count=1),
                                 overlay="sparkles"))


def test_frame_writer_codec_follows_the_suffix_and_read_frame_seeks(tmp_path):
    frames = [np.full((*SIZE, 3), i * 20, np.uint8) for i in range(6)]
    for name, magic in (("out.webm", b"\x1a\x45\xdf\xa3"), ("out.avi", b"RIFF"), ("out.mp4", None)):
        assert video.write_video(iter(frames), tmp_path / name, fps=5) == 6
        assert len(list(video.iter_frames(tmp_path / name))) == 6
        assert magic is None or (tmp_path / name).read_bytes()[:4] == magic
    assert abs(int(video.read_frame(tmp_path / "out.mp4", 4).mean()) - 80) <= 3
    with pytest.raises(IndexError):
        video.read_frame(tmp_path / "out.mp4", 6)
    with pytest.raises(ValueError, match="use one of"):
        video.FrameWriter(tmp_path / "out.gif")


def test_token_pass_mosaic_has_a_tile_per_group(predictor, tmp_path):
    frame = next(video.iter_frames(synthetic_video(tmp_path / "clip.mp4", count=1)))
    trace = predictor.predict(frame, xi=0.0).trace  # every token stops at the first decision
    mosaic = video.overlay_frame(frame, "tokens", trace, SIZE, 16)
    assert mosaic.shape == frame.shape and len(trace.groups) == 4
    first, second = mosaic[:26, :48].astype(float), mosaic[:26, 48:].astype(float)  # tiles B1 and B2 (tops)
    orange = (second[..., 0] > 150) & (second[..., 2] < 100)
    assert orange.mean() > 0.5 and not ((first[..., 0] > 150) & (first[..., 2] < 100)).mean() > 0.5
    last = mosaic[32:, 48:].astype(float)  # B4: nothing left, everything dark
    assert last.mean() < first.mean()


def test_class_mask_is_the_first_maximal_class_of_the_upsampled_logits():
    from dovit.core.preprocess import upsample_logits

    logits = torch.randn(1, 5, 40, 30).permute(0, 1, 3, 2)  # strided, like a decoder's cropped output
    logits[0, 2, :4] = logits[0, 3, :4] = 9.0  # ties go to the first maximal class, as numpy's argmax
    for size in ((30, 40), (61, 83)):
        mask = class_mask(logits, size)
        assert mask.shape == size and mask.dtype == np.int64
        assert np.array_equal(mask, upsample_logits(logits, size)[0].numpy().argmax(0))


def test_a_wide_video_runs_at_its_own_aspect(tmp_path, predictor):
    """A 16:9 clip: every frame on the grid of its own aspect at the checkpoint's token budget (not squeezed
    to the checkpoint's 2:3), with the Predictor's tokens and FLOPs, drawn back at the clip's size."""
    source = synthetic_video(tmp_path / "wide.mp4", count=3, size=(54, 96))
    working = predictor.working_size(image_size=(54, 96))
    grid = tuple(-(-side // 16) for side in working)
    assert working != SIZE and grid != (4, 6)
    for (record, annotated), frame in zip(video.analyze_video(predictor, source, xi=0.5, overlay="halting",
                                                              batch_size=2),
                                          video.iter_frames(source), strict=True):
        trace = predictor.predict(frame, xi=0.5).trace
        assert trace.grid == grid and record.kept_tokens[0] == grid[0] * grid[1]
        assert record.kept_tokens == [g.tokens for g in trace.groups]
        assert record.gflops == pytest.approx(trace.flops / 1e9) and annotated.shape == (54, 96, 3)
