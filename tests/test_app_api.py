"""The /predict endpoint through gradio_client against the app served on 127.0.0.1 (a tiny checkpoint)."""
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import httpx
import numpy as np
import PIL.Image
import psutil
import pytest
from gradio_client import Client, handle_file

import dovit
from app.images import MAX_UPLOAD_BYTES
from app.ui import build_demo, serve

ROOT = Path(__file__).resolve().parent.parent
SUMMARY_KEYS = ("gflops", "dense_gflops", "kept_tokens", "latency_ms", "dense_latency_ms", "xi")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    """Serve a checkpoint of the tiny model (saved and loaded like the shipped one); yields the URL."""
    checkpoint = dovit.save_checkpoint(tiny_model, tmp_path_factory.mktemp("checkpoint"))
    demo = build_demo(dovit.Predictor.from_checkpoint(checkpoint))
    port = free_port()
    serve(demo, host="127.0.0.1", port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    # Downloads in a folder of its own: gradio_client names a file by its content, and a shared /tmp/gradio
    # is written by every other client on the machine too.
    return Client(server, verbose=False, download_files=tmp_path_factory.mktemp("downloads"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    rng = np.random.default_rng(0)
    street = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / "street.png"), street)
    (folder / "text.png").write_text("this is not an image")
    (folder / "empty.png").write_bytes(b"")
    cv2.imwrite(str(folder / "small.png"), street[:10, :10])
    return folder


def test_predict_returns_mask_and_summary(client, images):
    mask_path, summary = client.predict(handle_file(images / "street.png"), 0.5, api_name="/predict")
    mask = np.asarray(PIL.Image.open(mask_path))
    assert mask.shape == (50, 70, 3)
    assert all(key in summary for key in SUMMARY_KEYS)
    assert summary["xi"] == 0.5 and len(summary["kept_tokens"]) == 4
    assert summary["dense_gflops"] > 0 and summary["latency_ms"] > 0


def test_export_and_trace_apis(client, images):
    import json
    import zipfile

    path = client.predict(handle_file(images / "street.png"), 0.5, api_name="/export")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert ("README.md" in names and "trace/tokens.csv" in names
                and "charts/tokens_and_flops.html" in names and "pass.gif" in names and "pass.mp4" in names)
        assert json.loads(archive.read("trace/trace.json"))["xi"] == 0.5
    trace = client.predict(handle_file(images / "street.png"), 0.5, api_name="/trace")
    assert trace["xi"] == 0.5 and len(trace["kept_tokens"]) == 4
    # per class, its tokens by halting group: every token of the grid once
    assert sum(map(sum, trace["halting_by_class"].values())) == trace["grid"][0] * trace["grid"][1]


@pytest.mark.parametrize("xi", [1.5, -0.1, "nan"])
def test_xi_out_of_range_or_nan_is_a_clear_error(client, images, xi):
    with pytest.raises(Exception, match="xi must be a number in"):
        client.predict(handle_file(images / "street.png"), xi, api_name="/predict")


def test_too_small_images_are_clear_errors_and_the_server_survives(client, images):
    with pytest.raises(Exception, match="smaller than one"):
        client.predict(handle_file(images / "small.png"), 0.9, api_name="/predict")
    _, summary = client.predict(handle_file(images / "street.png"), 0.9, api_name="/predict")
    assert summary["xi"] == 0.9


@pytest.mark.parametrize("name, message", [("text.png", "not an image we can read"), ("empty.png", "empty")])
def test_files_that_are_not_images_are_refused_at_upload(server, images, name, message):
    """The upload route keeps only images (415 with the reason); the server goes on serving."""
    response = httpx.post(f"{server}gradio_api/upload", files={"files": (name, (images / name).read_bytes())})
    assert response.status_code == 415 and message in response.text


def test_100_sequential_calls_grow_memory_by_less_than_200_mb(client, images):
    """The server runs in this process: its resident memory after 100 calls vs after a warm-up."""
    process = psutil.Process()
    for _ in range(5):
        client.predict(handle_file(images / "street.png"), 0.7, api_name="/predict")
    before = process.memory_info().rss
    for index in range(100):
        client.predict(handle_file(images / "street.png"), 0.5 + index / 200, api_name="/predict")
    growth_mb = (process.memory_info().rss - before) / 2**20
    print(f"resident memory growth over 100 /predict calls: {growth_mb:.1f} MB")
    assert growth_mb < 200, f"resident memory grew by {growth_mb:.0f} MB over 100 calls"


def test_uploads_over_the_cap_are_refused(client, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(MAX_UPLOAD_BYTES))
    # refused by the upload guard (413; gradio's own cap is the larger video cap) or by gradio_client
    with pytest.raises(Exception, match="maximum file size|413"):
        client.predict(handle_file(big), 0.9, api_name="/predict")


def test_python_app_py_serves_a_checkpoint_on_127_0_0_1(tiny_model, tmp_path):
    """The real entry point: `python app.py --checkpoint ... --port ...` answers on 127.0.0.1."""
    checkpoint = dovit.save_checkpoint(tiny_model, tmp_path / "checkpoint")
    port = free_port()
    command = [sys.executable, "app.py", "--checkpoint", str(checkpoint), "--port", str(port), "--threads",
               "1"]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "app.py did not answer within 120 s"
                time.sleep(0.5)
        api = Client(f"http://127.0.0.1:{port}/", verbose=False).view_api(
            print_info=False, return_format="dict"
        )
        assert "/predict" in api["named_endpoints"] and "/inspect_token" in api["named_endpoints"]
    finally:
        server.terminate()
        server.wait(timeout=30)
