"""ONNX export + ONNX Runtime: the same kept tokens, masks, FLOPs and trace as the PyTorch Predictor."""
import json

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
    with pytest.raises(ValueError, match="export again with --size 32 48"):
        ort.set_image(np.zeros((40, 40, 3), np.uint8), size=(32, 48))
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
        with pytest.raises(ValueError, match="this export runs at"):
            ort_model(torch.randn(1, 3, 32, 32), xi=0.5)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_a_hybrid_export_agrees_with_the_folded_pytorch_forward(tmp_path, frames):
    """The exporter runs with gradients on, so its graphs hold ESPNetv2's BatchNorms as written (ONNX Runtime
    folds them itself); PyTorch's eval forward without gradients runs them folded into the convs."""
    from dovit.data.datasets import CAMVID_CLASSES

    torch.manual_seed(0)
    model = dovit.build_model(num_classes=11, class_names=CAMVID_CLASSES, input_size=(64, 96),
                              stem="espnetv2", decoder="espnetv2")
    _non_identity_statistics(model)
    with torch.no_grad():  # the zero-initialised entry of the tokens into the decoder, opened (test_hybrid)
        model.decoder.inject.weight.normal_(0, 0.05)
    checkpoint = dovit.save_checkpoint(model.eval(), tmp_path / "hybrid")
    result = export_onnx(ExportConfig(str(checkpoint), str(tmp_path / "export")), progress=False)
    assert max(result.max_abs_error.values()) < 1e-4, result.max_abs_error
    reference = dovit.Predictor.from_checkpoint(checkpoint)
    ort = OrtPredictor.from_export(result.output, threads=1)
    for image in frames:
        want, got = reference.predict(image, xi=1.0), ort.predict(image, xi=1.0)
        assert (got.mask == want.mask).mean() >= 0.999
