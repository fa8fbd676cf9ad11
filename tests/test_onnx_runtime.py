"""ONNX export + ONNX Runtime: the same kept tokens, masks, FLOPs and trace as the PyTorch Predictor."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import dovit
from dovit.core.checkpoint import CheckpointError
from dovit.deploy.onnx_graphs import ExportConfig, ExportError, export_onnx
from dovit.deploy.onnx_runtime import OrtPredictor, OrtSegmenter, compare_runtimes

pytest.importorskip("onnxruntime")

# the paper's linear heads and the naive decoder; the official code's conv-BN heads with the conv stem's skip
# decoder
VARIANTS = {"linear": {}, "fcn+skip": dict(aux_head="fcn", stem="conv", decoder="skip")}


def _non_identity_statistics(model: torch.nn.Module) -> None:
    for module in model.modules():  # BatchNorm statistics that are not the identity
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)


@pytest.fixture(scope="module", params=list(VARIANTS))
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    model = dovit.build_model("vit_tiny_patch16_224", num_classes=5, input_size=(64, 96),
                              **VARIANTS[request.param])
    _non_identity_statistics(model)
    folder = tmp_path_factory.mktemp("onnx")
    checkpoint = dovit.save_checkpoint(model.eval(), folder / "checkpoint")
    result = export_onnx(ExportConfig(str(checkpoint), str(folder / "export")), progress=False)
    return checkpoint, result


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    smooth = [np.kron(rng.integers(0, 256, (6, 8, 3)), np.ones((12, 12,
                                                                1))).astype(np.uint8) for _ in range(3)]
    return smooth + [rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)]  # and one at another size, noisy


def test_export_writes_every_stage_and_a_readable_config(exported):
    checkpoint, result = exported
    names = {p.stem for p in result.output.glob("*.onnx")}
    assert names == {"prefix", "group_2", "group_3", "group_4", "aux_1", "aux_2", "aux_3",
                     "decoder"} == set(result.graphs)
    config, metadata = dovit.read_config(result.output)
    assert config == dovit.read_config(checkpoint)[0]
    assert metadata["export"]["size"] == [64, 96] and metadata["export"]["grid"] == [4, 6]
    assert max(result.max_abs_error.values()) < 1e-4


@pytest.fixture(scope="module")
def thresholds(exported, frames):
    """1, 0 and the 20/50/80 % quantiles of the first decision's confidence (random heads are unsure: a fixed
    xi would keep all or nothing), so that partial token passes are compared too."""
    reference = dovit.Predictor.from_checkpoint(exported[0])
    confidence = np.concatenate([reference.predict(image, xi=1.0).trace.decisions[0].confidence.ravel()
                                 for image in frames])
    values = np.unique(confidence)
    # midway between two observed confidences: a threshold equal to one would make float noise decide
    middles = [(values[i] + values[i + 1]) / 2 for i in (len(values) * np.array([0.2, 0.5, 0.8])).astype(int)]
    return [1.0, 0.0] + [float(m) for m in middles]


def test_ort_predictor_keeps_the_same_tokens_and_masks(exported, frames, thresholds):
    checkpoint, result = exported
    reference = dovit.Predictor.from_checkpoint(checkpoint)
    ort = OrtPredictor.from_export(result.output, threads=1)
    for image, xi in ((image, xi) for xi in thresholds for image in frames):
        want, got = reference.predict(image, xi=xi), ort.predict(image, xi=xi)
        assert [g.tokens for g in got.trace.groups] == [g.tokens for g in want.trace.groups]
        assert (got.mask == want.mask).mean() >= 0.999
        assert (got.dense_mask == want.dense_mask).mean() >= 0.999
        assert got.trace.flops == want.trace.flops and got.trace.dense_flops == want.trace.dense_flops
        for a, b in zip(got.trace.decisions, want.trace.decisions, strict=False):
            np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-4)
            assert (a.keep_mask == b.keep_mask).all()
        assert json.dumps(got.trace.to_json())  # the /trace API's document


def test_some_tokens_stop_at_the_thresholds_tested(exported, frames, thresholds):
    reference = dovit.Predictor.from_checkpoint(exported[0])
    kept = [reference.predict(image, xi=thresholds[3]).trace.groups[-1].tokens for image in frames]
    assert 0 < sum(kept) < 24 * len(frames)  # the comparison above covers partial token passes


def test_predict_batch_gives_each_image_its_predict_result(exported, frames, thresholds):
    ort = OrtPredictor.from_export(exported[1].output, threads=1)
    batch = ort.predict_batch(frames, xi=thresholds[3], batch_size=3)
    for image, prediction in zip(frames, batch, strict=False):
        single = ort.predict(image, xi=thresholds[3])
        assert (prediction.mask == single.mask).all()
        assert [g.tokens for g in prediction.trace.groups] == [g.tokens for g in single.trace.groups]


def test_refusals(exported, tmp_path):
    checkpoint, result = exported
    ort = OrtPredictor.from_export(result.output)
    ort.set_image(np.zeros((40, 40, 3), np.uint8), size=(32, 48))  # graphs of any size (format 2)
    fixed = tmp_path / "fixed"  # an export of format 1 runs at its own size only
    fixed.mkdir()
    for graph in result.output.glob("*.onnx"):
        (fixed / graph.name).symlink_to(graph)
    document = json.loads((result.output / "config.json").read_text())
    del document["metadata"]["export"]["dynamic_size"]
    (fixed / "config.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="format 1.* not 32x48: export the checkpoint again"):
        OrtPredictor.from_export(fixed).set_image(np.zeros((40, 40, 3), np.uint8), size=(32, 48))
    with pytest.raises(ValueError, match="CPU provider"):
        OrtSegmenter(result.output).to("cuda")
    with pytest.raises(CheckpointError, match="no export section"):
        OrtPredictor.from_export(checkpoint)
    with pytest.raises(CheckpointError, match="not a folder"):
        OrtPredictor.from_export(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((result.output / "config.json").read_text())
    with pytest.raises(CheckpointError, match="graphs missing: .*prefix.onnx"):
        OrtPredictor.from_export(broken)
    with pytest.raises(ExportError, match="cannot load"):
        export_onnx(ExportConfig(str(tmp_path / "nowhere"), str(tmp_path / "out")), progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="holds other files"):
        export_onnx(ExportConfig(str(checkpoint), str(tmp_path / "busy")), progress=False)
    with pytest.raises(ExportError, match="opset"):
        export_onnx(ExportConfig(str(checkpoint), str(tmp_path / "out"), opset=13), progress=False)


def test_compare_runtimes_times_both_runtimes_interleaved(exported):
    checkpoint, result = exported
    model = dovit.load_checkpoint(checkpoint)
    frames = torch.randn(2, 3, 64, 96)
    cases = compare_runtimes(model, OrtSegmenter(result.output, threads=1), frames, xi=0.35, fraction=0.25,
                             warmup=0, repeats=2)
    assert [case.name for case in cases] == ["xi 0.35", "25% kept"]
    forced = cases[1]
    assert forced.kept_fraction == pytest.approx(6 / 24)
    assert forced.ideal_speedup > 1.1  # the skip decoder is a large share of this tiny model
    assert all(ms > 0 for ms in forced.ms.values()) and forced.ort_efficiency > 0
    assert (
        forced.ort_over_pytorch["min"] <= forced.ort_over_pytorch["median"] <= forced.ort_over_pytorch["max"]
    )


def test_torch_runs_one_thread_between_the_graphs_and_gets_its_threads_back(exported, monkeypatch):
    """PyTorch's glue between the ORT graphs runs on one thread (its spinning workers would take onnxruntime's
    cores); the caller's thread count is back afterwards, also when the forward fails."""
    checkpoint, result = exported
    ort_model = OrtSegmenter(result.output, threads=1)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        original = ort_model._run
        monkeypatch.setattr(ort_model, "_run", lambda *a: seen.append(torch.get_num_threads())
                            or original(*a))
        with torch.inference_mode():
            ort_model(torch.randn(1, 3, 64, 96), xi=0.5)
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
        monkeypatch.setattr(ort_model, "dynamic_size", False)  # a forward that fails: format 1, another size
        with pytest.raises(ValueError, match="runs at working size"):
            ort_model(torch.randn(1, 3, 32, 32), xi=0.5)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_ort_runs_at_an_images_own_aspect_and_agrees_with_pytorch(exported, thresholds):
    """One export, traced at 64 x 96, runs a wide and a tall photo on their own grids as PyTorch does."""
    checkpoint, result = exported
    reference = dovit.Predictor.from_checkpoint(checkpoint)
    ort = OrtPredictor.from_export(result.output, threads=1)
    rng = np.random.default_rng(1)
    for shape in ((45, 160), (160, 45)):
        image = np.kron(rng.integers(0, 256, (shape[0] // 5, shape[1] // 5, 3)), np.ones((5, 5, 1))).astype(
            np.uint8)
        for xi in (1.0, thresholds[3]):
            want, got = reference.predict(image, xi=xi), ort.predict(image, xi=xi)
            assert got.working_size == want.working_size != result.size
            assert got.trace.grid == want.trace.grid != result.grid
            assert [g.tokens for g in got.trace.groups] == [g.tokens for g in want.trace.groups]
            assert got.mask.shape == image.shape[:2] and (got.mask == want.mask).mean() >= 0.999
            assert got.trace.flops == want.trace.flops


@pytest.fixture(scope="module")
def shipped_export(tmp_path_factory):
    """The default checkpoint (hybrid ESPNetv2 stem and decoder), exported once without the graph check."""
    folder = tmp_path_factory.mktemp("shipped") / "export"
    export_onnx(ExportConfig(str(dovit.core.predictor.default_checkpoint()), str(folder), check=False),
                progress=False)
    return folder


def test_the_default_checkpoint_on_ort_at_a_16_9_photo_agrees_with_pytorch(shipped_export):
    """The hybrid's trained BatchNorms: the exporter runs with gradients on, so the graphs hold them as
    written (ONNX Runtime folds them itself), while PyTorch's eval forward without gradients runs them folded
    into the convs; and the ESPNetv2 decoder's pooling at a grid other than the traced one."""
    reference, ort = dovit.Predictor.from_checkpoint(), OrtPredictor.from_export(shipped_export)
    street = cv2.cvtColor(cv2.imread(str(Path(__file__).parents[1] / "assets" / "synthetic_street.png")),
                          cv2.COLOR_BGR2RGB)
    photo = cv2.resize(street, (960, 540), interpolation=cv2.INTER_LINEAR)  # a 16:9 photo
    for xi in (1.0, reference.default_xi):
        want, got = reference.predict(photo, xi=xi), ort.predict(photo, xi=xi)
        assert got.trace.grid == want.trace.grid and got.working_size == want.working_size
        assert got.trace.grid != ort.model.export_grid
        assert [g.tokens for g in got.trace.groups] == [g.tokens for g in want.trace.groups]
        assert (got.mask == want.mask).mean() >= 0.999 and got.mask.shape == photo.shape[:2]
