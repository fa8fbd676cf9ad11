"""The Data set tab without a browser: dovit.analyze's report on an offered folder (with CamVid-layout labels)
or on uploaded images, its cap with a notice, and its refusals."""
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pytest
import torch
from conftest import write_drives

import dovit
from app.limits import ServingLimits
from app.studio import Studio
from app.tabs import dataset as dataset_tab
from app.tabs import video as video_tab


@pytest.fixture(scope="module")
def camvid_model():
    """The tiny ViT with CamVid's 11 classes, so that a CamVid-layout folder is read with its labels."""
    torch.manual_seed(0)
    return dovit.build_model("vit_tiny_patch16_224", num_classes=11, input_size=(64, 96)).eval()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("camvid")
    write_drives(root, {"0001TP": 3, "Seq05VD": 2})
    return root


def make_tab(model, root, tmp_path, limits=None, image_dirs=()):
    studio = Studio(dovit.Predictor(model), image_dirs=list(image_dirs), limits=limits)
    return dataset_tab.DatasetTab(studio, video_tab.frame_folders([root]), tmp_path / "reports")


def run(tab, *args) -> dataset_tab.ReportSlots:
    outputs = None
    for outputs in tab.on_run(*args):  # noqa: B007 (the last update is the result)
        pass
    return outputs


def test_labelled_folder_gives_the_whole_report(camvid_model, root, tmp_path):
    tab = make_tab(camvid_model, root, tmp_path)
    label = next(name for name in tab.folders if name.startswith(f"{root.name}/train "))
    assert dataset_tab.label_layout(root / "train",
                                    11) == "camvid" and dataset_tab.label_layout(root / "train", 5) is None
    report = run(tab, label, None, 0.9)
    assert "mIoU" in report.headline and "with its labels" in report.headline
    assert "5 images in" in report.notices
    assert not any("trainannot" in name for name in tab.folders)
    assert all(f is not None for f in report.figures) and len(report.figures) == dataset_tab.FIGURE_SLOTS
    assert {Path(p).name for p in report.files} == {"report.html", "report.json"}
    assert "plotly" in Path(report.files[0]).read_text() and len(report.gallery) == 8  # 4 cheapest, 4 dearest


def test_uploaded_images_without_labels_and_the_cap(tiny_model, root, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    paths = []
    for index in range(3):
        paths.append(str(uploads / f"u{index}.png"))
        cv2.imwrite(paths[-1], np.random.default_rng(index).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    tab = make_tab(tiny_model, root, tmp_path, ServingLimits(report_max_images=2), [uploads])
    report = run(tab, None, paths, 0.9)
    assert "mIoU" not in report.headline and "first 2 of 3" in report.notices
    assert sum(f is not None for f in report.figures) == 4 and report.figures[-2:] == [None, None]


def test_refusals(tiny_model, root, tmp_path):
    tab = make_tab(tiny_model, root, tmp_path)
    with pytest.raises(gr.Error, match="Choose a folder"):
        run(tab, "/etc", None, 0.9)
    with pytest.raises(gr.Error, match="could not be found"):
        run(tab, None, ["/etc/passwd"], 0.9)
    with pytest.raises(gr.Error, match="xi must be"):
        run(tab, next(iter(tab.folders)), None, 3.0)
