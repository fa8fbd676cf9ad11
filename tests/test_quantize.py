"""int8 export (dovit.deploy.quantize): round trip, agreement with fp32, the stem kept fp32 (conv stem and a
hybrid's encoder), the CLI and its refusals."""

import builtins
import json
import shutil

import numpy as np
import pytest
import torch

import dovit
from dovit import export as export_cli
from dovit.deploy.onnx_graphs import ExportConfig, export_onnx
from dovit.deploy.onnx_runtime import OrtPredictor
from dovit.deploy.quantize import (
    REPORT_NAME,
    QuantizeConfig,
    QuantizeError,
    build_report,
    mask_agreement,
    quantize_folder,
)

pytest.importorskip("onnxruntime.quantization")

AGREEMENT = 0.95  # random-init weights on 4 x 6 tokens; the trained student measures 99.7 % (README)
SHAPE = (64, 96)


def smooth_frames(count: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    images = [np.kron(rng.normal(0, 1, (3, 4, 6)), np.ones((1, 16, 16))) for _ in range(count)]
    return torch.tensor(np.stack(images), dtype=torch.float32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)  # the shipped models' heads, stem and skip decoder (a Conv graph to quantize)
    model = dovit.build_model(
        "vit_tiny_patch16_224", num_classes=5, input_size=SHAPE, aux_head="fcn", stem="conv", decoder="skip"
    )
    return dovit.save_checkpoint(model.eval(), tmp_path_factory.mktemp("int8") / "checkpoint")


@pytest.fixture(scope="module")
def fp32(checkpoint, tmp_path_factory):
    return export_onnx(
        ExportConfig(str(checkpoint), str(tmp_path_factory.mktemp("fp32") / "export"), check=False),
        progress=False,
    ).output


@pytest.fixture(scope="module", params=["dynamic", "static"])
def int8(request, checkpoint, fp32, tmp_path_factory):
    """Both modes quantized from one fp32 export (export_int8, which exports too, runs in the CLI test)."""
    output, config, frames = (
        tmp_path_factory.mktemp(request.param) / "export",
        QuantizeConfig(request.param),
        smooth_frames(6),
    )
    int8 = quantize_folder(fp32, output, config, frames, 0.9)
    return output, build_report(checkpoint, output, config, frames, 0.9, fp32, int8)


def test_int8_export_round_trips_through_ort_predictor(checkpoint, int8):
    output, report = int8
    document = json.loads((output / "config.json").read_text())["metadata"]["export"]
    assert document["quantize"]["dtype"] == "int8" and set(report.int8_graphs) == set(
        document["quantize"]["int8_graphs"]
    )
    assert set(report.int8_graphs) == {"prefix", "group_2", "group_3", "group_4", "decoder"}
    assert (
        report.fp32_graphs == ["aux_1", "aux_2", "aux_3"]
        and report.megabytes_int8 < report.megabytes_fp32 / 2
    )
    predictor = OrtPredictor.from_export(output, threads=1)
    assert "int8" in predictor.runtime
    image = np.random.default_rng(1).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    prediction = predictor.predict(image, xi=0.5)
    assert prediction.mask.shape == (70, 100) and json.dumps(prediction.trace.to_json())
    # the int8 graphs run at the image's own aspect too, not only at the size they were calibrated at
    assert prediction.working_size == predictor.working_size(image_size=(70, 100)) != tuple(document["size"])
    assert prediction.trace.grid == tuple(-(-side // 16) for side in prediction.working_size)


def test_int8_masks_agree_with_fp32(checkpoint, int8):
    output, report = int8
    assert report.pixel_agreement >= AGREEMENT and report.dense_pixel_agreement >= AGREEMENT
    reference = dovit.load_checkpoint(checkpoint).eval()
    agreement = mask_agreement(
        reference, OrtPredictor.from_export(output).model, smooth_frames(4, seed=5), 1.0
    )
    assert np.mean(agreement.pixels) >= AGREEMENT  # frames it was not calibrated on


def test_xi_one_runs_every_token_on_int8(int8):
    predictor = OrtPredictor.from_export(int8[0], threads=1)
    prediction = predictor.predict(np.full((64, 96, 3), 90, np.uint8), xi=1.0)
    assert [group.tokens for group in prediction.trace.groups] == [24] * 4


def test_cli_writes_int8_export_and_report(checkpoint, fp32, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("dovit.deploy.quantize.calibration_frames", lambda *args, **kwargs: smooth_frames(3))
    # the fp32 export it starts from is the fixture's (the same call; exporting takes long on 2 cores)
    monkeypatch.setattr(
        "dovit.deploy.quantize.export_onnx", lambda config, progress: shutil.copytree(fp32, config.output)
    )
    code = export_cli.main([str(checkpoint), str(tmp_path / "out"), "--quantize", "int8", "--no-check"])
    out = capsys.readouterr().out
    assert code == 0 and "of pixels agree" in out
    report = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert report["mode"] == "dynamic" and report["pixel_agreement"] >= AGREEMENT and report["frames"] == 3


def test_clear_errors(checkpoint, tmp_path, capsys, monkeypatch):
    code = export_cli.main(
        [
            str(checkpoint),
            str(tmp_path / "a"),
            "--quantize",
            "int8",
            "--calibration-data",
            str(tmp_path / "nowhere"),
        ]
    )
    assert code == 2 and "no calibration frames" in capsys.readouterr().err
    assert export_cli.main([str(tmp_path / "nothing"), str(tmp_path / "b"), "--quantize", "int8"]) == 2
    assert "cannot load" in capsys.readouterr().err
    real_import = builtins.__import__

    def without_quantization(name, *args, **kwargs):
        if name.startswith("onnxruntime.quantization") or (
            name == "onnxruntime" and "quantization" in str(args)
        ):
            raise ImportError("No module named 'onnxruntime.quantization'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_quantization)
    assert export_cli.main([str(checkpoint), str(tmp_path / "c"), "--quantize", "int8"]) == 2
    err = capsys.readouterr().err
    assert "quantization tools" in err and "pip install" in err
    monkeypatch.setattr(builtins, "__import__", real_import)
    with pytest.raises(QuantizeError, match="unknown quantization mode"):
        quantize_folder(tmp_path, tmp_path / "d", QuantizeConfig(mode="fp4"), smooth_frames(1), 0.9)


def convs_fed_int8(path) -> tuple[int, int]:
    """(Convs in the graph, Convs whose weight or input comes through a DequantizeLinear)."""
    import onnx

    graph = onnx.load(str(path)).graph
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    convs = [node for node in graph.node if node.op_type in ("Conv", "ConvInteger", "QLinearConv")]
    fed = [node.op_type != "Conv" or any(i in dequantized for i in node.input) for node in convs]
    return len(convs), sum(fed)


def test_the_stem_stays_fp32_and_the_decoder_convs_go_int8(int8):
    output, _ = int8
    convs, int8_convs = convs_fed_int8(output / "prefix.onnx")
    assert convs > 0 and int8_convs == 0
    assert convs_fed_int8(output / "decoder.onnx")[1] > 0


def test_a_hybrid_keeps_its_whole_conv_encoder_fp32(tmp_path):
    """The hybrid's prefix graph (ESPNetv2 encoder + the first group) gives tokens and four skip maps: its
    Convs stay fp32, its transformer MatMuls go int8, and the int8 folder runs."""
    torch.manual_seed(0)
    from dovit.data.datasets import CAMVID_CLASSES

    model = dovit.build_model(num_classes=11, class_names=CAMVID_CLASSES, input_size=SHAPE, stem="espnetv2",
                              decoder="espnetv2")
    with torch.no_grad():  # the zero-initialised entry of the tokens into the decoder, opened (test_hybrid)
        model.decoder.inject.weight.normal_(0, 0.05)
    checkpoint = dovit.save_checkpoint(model.eval(), tmp_path / "hybrid")
    fp32 = export_onnx(ExportConfig(str(checkpoint), str(tmp_path / "fp32"), check=False),
                       progress=False).output
    int8 = quantize_folder(fp32, tmp_path / "int8", QuantizeConfig(), smooth_frames(3), 0.9)
    assert "prefix" in int8
    import onnx

    prefix = onnx.load(str(tmp_path / "int8" / "prefix.onnx")).graph
    assert len(prefix.output) == 5  # tokens and the encoder's four maps
    convs, int8_convs = convs_fed_int8(tmp_path / "int8" / "prefix.onnx")
    assert convs > 0 and int8_convs == 0
    assert any(node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for node in prefix.node)
    prediction = OrtPredictor.from_export(tmp_path / "int8", threads=1).predict(
        np.full((64, 96, 3), 90, np.uint8), xi=0.5)
    assert prediction.mask.shape == (64, 96) and "int8" in prediction.runtime
