"""app.models: the checkpoints the studio offers, loaded on first use, and the per-session model picker."""
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pytest
import torch

import dovit
from app import controls
from app.models import ModelShelf, find_checkpoints
from app.studio import Studio
from dovit import Predictor

INPUT_SIZE = (64, 96)


def checkpoint(folder: Path, default_xi: float, classes: int = 5, decision_layers=(3, 6, 9), names=None,
               backbone="vit_tiny_patch16_224") -> Path:
    torch.manual_seed(int(default_xi * 100))
    model = dovit.build_model(backbone, num_classes=classes, input_size=INPUT_SIZE, decoder_channels=16,
                              default_xi=default_xi, decision_layers=decision_layers)
    if names:
        model.config.class_names = names
    return dovit.save_checkpoint(model, folder, metadata={"stage": "dovit"})


@pytest.fixture(scope="module")
def shelf_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    checkpoint(root / "a", 0.9)
    checkpoint(root / "b", 0.8, classes=3, names=["road", "sky", "car"])
    checkpoint(root / "deep", 0.6, decision_layers=(2, 4, 6, 8))
    checkpoint(root / "wide", 0.7, decision_layers=(4, 8))
    (root / "notes").mkdir()
    return root


@pytest.fixture(scope="module")
def studio(shelf_root, tmp_path_factory):
    uploads = tmp_path_factory.mktemp("uploads")
    default = Predictor.from_checkpoint(shelf_root / "a")
    return Studio(default, image_dirs=[uploads], models=ModelShelf.build(default, shelf_root / "a",
                                                                         root=shelf_root)), uploads


def test_find_checkpoints_lists_checkpoint_folders_only(shelf_root, tmp_path):
    assert [p.name for p in find_checkpoints(shelf_root)] == ["a", "b", "deep", "wide"]
    assert find_checkpoints(tmp_path / "missing") == []


def test_shelf_labels_order_repeats_and_lazy_loading(shelf_root, tmp_path):
    other = checkpoint(tmp_path / "elsewhere" / "b", 0.5)
    default = Predictor.from_checkpoint(shelf_root / "a")
    shelf = ModelShelf.build(default, shelf_root / "a", [other, shelf_root / "a"], root=shelf_root)
    assert shelf.labels == ["a", "elsewhere/b", f"{shelf_root.name}/b", "deep", "wide"]
    assert shelf.get(None) is default and shelf.get("a") is default
    assert "elsewhere/b" not in shelf._loaded  # loaded on first use only
    assert shelf.get("elsewhere/b").default_xi == 0.5 and shelf.get("elsewhere/b") is shelf.get("elsewhere/b")
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        shelf.get("nope")
    assert shelf.max_groups == 5  # "deep" has four decision layers, read from its config without loading it
    assert "deep" not in shelf._loaded and shelf.get("wide").model.decision_layers == (4, 8)


def test_a_shelf_without_a_default_path_offers_the_default_model(tiny_model):
    shelf = ModelShelf.build(Predictor(tiny_model), None, root=None)
    assert shelf.labels == ["default model"] and shelf.get("default model").model is tiny_model


def test_switching_the_model_is_per_session(studio):
    studio, uploads = studio
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    path = uploads / "street.png"
    cv2.imwrite(str(path), image)
    first = studio.on_image(str(path), studio.default_size_value, 0.9, 0.5, None).session
    second = studio.on_image(str(path), studio.default_size_value, 0.9, 0.5, None).session
    picked = studio.on_model("b", 0.5, first)
    assert picked.refresh.session is first and first.model == "b" and second.model is None
    assert picked.xi_box == 0.8 and picked.xi_slider == controls.position_from_xi(0.8)
    assert picked.reset["value"] == "Reset ξ to 0.8" and "default ξ = 0.8" in picked.header
    assert (studio.predictor_for(first).config.num_classes == 3
            and studio.predictor_for(second).config.num_classes == 5)
    assert first.prediction.trace.decisions and set(np.unique(first.prediction.mask)) <= {0, 1, 2}
    assert "road" in picked.refresh.views.legend  # class names come from the picked checkpoint
    again = studio.on_image(str(path), studio.default_size_value, 0.9, 0.5, first).session
    assert again.model == "b"  # a new image keeps the tab's model
    assert studio.on_image(str(path), studio.default_size_value, 0.9, 0.5, again, "a").session.model == "a"


def test_picking_an_unusable_model_says_how_to_open_it(shelf_root, tmp_path):
    other_patch = checkpoint(tmp_path / "patch8", 0.5, backbone="vit_small_patch8_224")
    default = Predictor.from_checkpoint(shelf_root / "a")
    studio = Studio(default, image_dirs=[], models=ModelShelf.build(default, shelf_root / "a", [other_patch]))
    with pytest.raises(gr.Error,
                       match="8-px patches; this page's working sizes are for 16-px: open it on its own"):
        studio.on_model("patch8", 0.5, None)
    picked = studio.on_model("a", 0.5, None)  # no image yet: header and ξ only
    assert picked.xi_box == 0.9 and "default ξ = 0.9" in picked.header and picked.refresh.session is None


def test_onnx_runtime_exports_on_first_use_and_reuses_it_at_every_size(shelf_root, tmp_path):
    pytest.importorskip("onnxruntime")
    default = Predictor.from_checkpoint(shelf_root / "a")
    shelf = ModelShelf.build(default, shelf_root / "a", root=shelf_root)
    shelf.export_cache = tmp_path / "cache"
    image = np.random.default_rng(1).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    on_ort = shelf.get("b", "onnxruntime")
    assert isinstance(on_ort, dovit.OrtPredictor) and on_ort.runtime.startswith("ONNX Runtime")
    assert shelf.get("b", "onnxruntime", INPUT_SIZE) is on_ort  # exported once, then reused
    want, got = shelf.get("b").predict(image, xi=0.5), on_ort.predict(image, xi=0.5)
    assert (want.mask == got.mask).mean() >= 0.999 and got.runtime != want.runtime
    assert len(list(shelf.export_cache.iterdir())) == 1
    assert shelf.get("b", "onnxruntime", (32, 48)) is on_ort  # another working size: the same graphs
    wide = np.random.default_rng(2).integers(0, 255, (40, 120, 3), dtype=np.uint8)  # at its own aspect
    want, got = shelf.get("b").predict(wide, xi=0.5), on_ort.predict(wide, xi=0.5)
    assert got.working_size == want.working_size != INPUT_SIZE and (want.mask == got.mask).mean() >= 0.999
    assert len(list(shelf.export_cache.iterdir())) == 1
    with pytest.raises(ValueError, match="unknown runtime"):
        shelf.get("b", "tensorrt")


def test_a_given_export_is_used_for_its_checkpoint(shelf_root, tmp_path):
    pytest.importorskip("onnxruntime")
    from dovit.deploy.onnx_graphs import ExportConfig, export_onnx

    export = export_onnx(ExportConfig(str(shelf_root / "a"), str(tmp_path / "a-onnx"), check=False),
                         progress=False)
    default = Predictor.from_checkpoint(shelf_root / "a")
    shelf = ModelShelf.build(default, shelf_root / "a", root=shelf_root, exports=[export.output])
    shelf.export_cache = tmp_path / "cache"
    assert shelf.get("a", "onnxruntime").model.export_dir == export.output
    assert not shelf.export_cache.exists()


def test_the_runtime_choice_is_per_session_and_the_readout_names_it(studio):
    pytest.importorskip("onnxruntime")
    studio, uploads = studio
    path = uploads / "street.png"
    cv2.imwrite(str(path), np.random.default_rng(2).integers(0, 255, (64, 96, 3), dtype=np.uint8))
    session = studio.on_image(str(path), studio.default_size_value, 0.9, 0.5, None, "a",
                              "ONNX Runtime").session
    other = studio.on_image(str(path), studio.default_size_value, 0.9, 0.5, None, "a").session
    assert session.runtime == "onnxruntime" and other.runtime == "pytorch"
    assert session.prediction.runtime.startswith("ONNX Runtime")
    refreshed = studio.on_runtime("PyTorch", 0.9, 0.5, session)
    session = refreshed.session
    assert session.runtime == "pytorch" and "| latency, PyTorch" in refreshed.views.readouts
    refreshed = studio.on_runtime("ONNX Runtime", 0.9, 0.5, session)
    assert "| latency, ONNX Runtime" in refreshed.views.readouts
    with pytest.raises(gr.Error, match="unknown runtime"):
        studio.on_runtime("TensorRT", 0.9, 0.5, session)


def test_the_video_and_data_set_tabs_run_the_picked_model(studio, monkeypatch):
    from test_video import synthetic_video

    from app import video_runs
    from app.tabs import dataset as dataset_tab
    from app.tabs import video as video_tab

    studio, uploads = studio
    clip = synthetic_video(uploads / "clip.mp4", count=3)
    used, original = [], video_runs.analyze_video

    def spy(predictor, *args, **kwargs):
        used.append(predictor)
        return original(predictor, *args, **kwargs)

    monkeypatch.setattr(video_runs, "analyze_video", spy)
    videos = video_tab.VideoTab(studio, [uploads], {})
    outputs = list(videos.on_upload(str(clip), 0.5, "mask", None, "b", "PyTorch"))[-1]
    run = outputs.state
    assert (used == [studio.model_named("b")] and run.model_name == "b on PyTorch"
            and "with b on PyTorch" in outputs.notices)
    run = list(videos.on_rerun(0.5, "mask", run))[-1].state  # no pick: the default model
    assert used[-1] is studio.predictor and run.model_name == "a on PyTorch"
    with pytest.raises(gr.Error, match="unknown runtime"):
        list(videos.on_rerun(0.5, "mask", run, "b", "TensorRT"))

    image = uploads / "street.png"
    cv2.imwrite(str(image), np.random.default_rng(1).integers(0, 255, (64, 96, 3), dtype=np.uint8))
    report = dataset_tab.DatasetTab(studio, {}, uploads / "reports")
    outputs = list(report.on_run(None, [str(image)], 0.8, "b", "PyTorch"))[-1]
    assert "b on PyTorch" in outputs.headline
    summary = Path(next(f for f in outputs.files if f.endswith(".json"))).read_text()
    # the picked checkpoint's classes, not the default's
    assert '"road"' in summary and '"class 0"' not in summary


def test_the_page_has_slots_for_the_deepest_model_and_hides_what_a_model_lacks(studio):
    studio, uploads = studio
    path = uploads / "street.png"
    cv2.imwrite(str(path), np.random.default_rng(3).integers(0, 255, (64, 96, 3), dtype=np.uint8))
    session = studio.on_image(str(path), studio.default_size_value, 0.5, 0.5, None).session
    assert studio.num_groups == 5 and len(studio.view_names()) == len(studio.empty_views().flat())
    for label, groups in (("wide", 3), ("a", 4), ("deep", 5)):
        views = studio.on_model(label, 0.5, session).refresh.views
        slots = dict(zip(views.names(), views.flat(), strict=True))
        shown = [slots[f"group_{g}"]["visible"] for g in range(1, 6)]
        assert shown == [True] * groups + [False] * (5 - groups), label
        assert [slots[f"confidence_{d}"]["visible"] for d in range(1, 5)] == [True] * (groups - 1) + [
            False
        ] * (5 - groups)
        assert all(slots[f"group_{g}"]["value"] is None for g in range(groups + 1, 6))


def test_the_int8_runtime_uses_an_int8_export_and_fp32_the_fp32_one(shelf_root, studio, tmp_path):
    pytest.importorskip("onnxruntime")
    import json
    import shutil

    from dovit.deploy.onnx_graphs import ExportConfig, export_onnx

    fp32 = export_onnx(ExportConfig(str(shelf_root / "a"), str(tmp_path / "fp32"), check=False),
                       progress=False)
    int8 = shutil.copytree(fp32.output, tmp_path / "int8")  # an int8 folder's config, fp32 graphs: cheap
    document = json.loads((int8 / "config.json").read_text())
    document["metadata"]["export"]["quantize"] = {"dtype": "int8", "mode": "dynamic"}
    (int8 / "config.json").write_text(json.dumps(document))
    default = Predictor.from_checkpoint(shelf_root / "a")
    shelf = ModelShelf.build(default, shelf_root / "a", root=shelf_root, exports=[fp32.output, int8])
    shelf.export_cache = tmp_path / "cache"
    on_int8, on_fp32 = shelf.get("a", "onnxruntime-int8"), shelf.get("a", "onnxruntime")
    assert on_int8.model.export_dir == int8 and on_fp32.model.export_dir == fp32.output
    assert on_int8.runtime.endswith("(cpu, int8)") and on_fp32.runtime.endswith("(cpu)")
    assert not shelf.export_cache.exists()
    assert studio[0].runtime_named("ONNX Runtime int8") == "onnxruntime-int8"
