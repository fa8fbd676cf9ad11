"""app.bundle: one ZIP with every view, the charts, the per-token trace and a README."""
import csv
import io
import json
import zipfile

import cv2
import numpy as np
import pytest

from app import bundle
from app.analysis import render_views
from app.charts import SweepPoint, sweep_figure
from dovit import Predictor
from dovit.viz.animation import pass_frames


@pytest.fixture(scope="module")
def views(tiny_model):
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    return render_views(Predictor(tiny_model), image, 0.3), image


@pytest.fixture(scope="module")
def archive(views, tiny_model):
    result, image = views
    sweep = sweep_figure([SweepPoint(1.0, 2.0, 2.0, 1.0, [24] * 4), SweepPoint(0.5, 1.0, 2.0, 0.9, [24, 6, 6,
                                                                                                    6])], 0.5)
    names = [f"class {i}" for i in range(5)]
    frames = pass_frames(image, result.prediction.trace, result.prediction.mask,
                         np.asarray(tiny_model.config.class_colors, np.uint8), tiny_model.patch_size)
    return zipfile.ZipFile(io.BytesIO(bundle.build_zip(result, image, names, "tiny", {"xi_sweep": sweep},
                                                       frames)))


def test_every_view_is_a_full_size_png(archive, views):
    result, image = views
    pngs = sorted(n for n in archive.namelist() if n.startswith("views/") and n != "views/class_ids.png")
    assert len(pngs) == 1 + 4 + 3 + 5  # input, 4 token groups, 3 confidence maps, 5 mask/halting/dense views
    assert pngs[0] == "views/00_input.png" and "views/01_token_pass_b1.png" in pngs
    decoded = cv2.imdecode(np.frombuffer(archive.read(pngs[0]), np.uint8), cv2.IMREAD_COLOR)
    assert (cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB) == image).all()  # lossless, at the working size
    ids = cv2.imdecode(np.frombuffer(archive.read("views/class_ids.png"), np.uint8), cv2.IMREAD_UNCHANGED)
    assert (ids == result.prediction.mask).all()
    for name in pngs[1:]:
        assert (
            cv2.imdecode(np.frombuffer(archive.read(name), np.uint8), cv2.IMREAD_COLOR).shape[:2] == (64, 96)
            or "confidence" in name
        )  # confidence maps carry their colour bar beside the image


def test_charts_are_interactive_html_and_png_when_a_browser_renders_them(archive):
    for name in ("tokens_and_flops", "xi_sweep"):
        assert "plotly" in archive.read(f"charts/{name}.html").decode()[:200000].lower()
    readme = archive.read("README.md").decode()
    if bundle.chart_png(sweep_figure([], 1.0)) is not None:
        assert archive.read("charts/tokens_and_flops.png")[:4] == b"\x89PNG"
    else:
        assert "PNG not rendered" in readme


def test_trace_json_csv_and_readme_agree(archive, views):
    result, _ = views
    trace = json.loads(archive.read("trace/trace.json"))
    assert trace["grid"] == [4, 6] and trace["kept_tokens"] == result.summary.kept_tokens
    rows = list(csv.DictReader(io.StringIO(archive.read("trace/tokens.csv").decode())))
    assert len(rows) == 24 and rows[5]["row"] == "0" and rows[6]["row"] == "1"
    assert [int(r["halting_group"]) for r in rows] == np.ravel(trace["halting_group"]).tolist()
    assert float(rows[7]["confidence_after_block_3"]) == pytest.approx(trace["confidence"][0][1][1], abs=1e-4)
    readme = archive.read("README.md").decode()
    assert "model: tiny" in readme and "ξ = 0.3" in readme and f"{result.summary.gflops:.3f}" in readme
    assert "latency:" in readme and "64×96" in readme


def test_the_token_pass_is_animated_as_a_looping_gif_and_an_mp4(archive, views, tmp_path):
    from PIL import Image

    groups = len(views[0].prediction.trace.groups)
    gif = Image.open(io.BytesIO(archive.read("pass.gif")))
    assert gif.n_frames >= groups + 1 and gif.info["loop"] == 0
    (tmp_path / "pass.mp4").write_bytes(archive.read("pass.mp4"))
    capture = cv2.VideoCapture(str(tmp_path / "pass.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) >= groups + 1 and capture.read()[0]
    capture.release()
    readme = archive.read("README.md").decode()
    assert "`pass.gif`" in readme and "`pass.mp4`" in readme
    by_class = json.loads(archive.read("trace/trace.json"))["halting_by_class"]
    assert sum(map(sum, by_class.values())) == 4 * 6  # the grid's tokens
