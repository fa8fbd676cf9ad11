"""The hardening issue's defects (items 1-4 and 7) against the served app, over raw HTTP as an attacker
would send them (gradio's /queue/join and /queue/data), plus the invariants that must survive the fixes.

Written to fail on the app before the hardening (552867a) and pass after. Only the public entry points
are used (``build_demo``, ``serve``, ``.close()``), so the same file runs against either version.
"""
import base64
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import PIL.Image
import psutil
import pytest
from gradio_client import Client, handle_file
from test_app_api import free_port

import dovit
from app.images import MAX_UPLOAD_BYTES
from app.ui import build_demo, serve


@dataclass
class Outcome:
    """How an event ended: the HTTP status of joining the queue, the error text, the output data."""

    status: int
    error: str | None
    data: list | None


@pytest.fixture(scope="module")
def checkpoint(tiny_model, tmp_path_factory):
    return dovit.save_checkpoint(tiny_model, tmp_path_factory.mktemp("checkpoint"))


def start_server(checkpoint):
    app = build_demo(dovit.Predictor.from_checkpoint(checkpoint))
    port = free_port()
    serve(app, host="127.0.0.1", port=port, block=False)
    return app, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def served(checkpoint):
    app, url = start_server(checkpoint)
    yield url
    app.close()


@pytest.fixture(scope="module")
def fn_index(served):
    """fn index of an event by its api_name ('predict', 'on_image', 'on_sweep', ...)."""
    config = httpx.get(f"{served}config", timeout=30).json()
    return {dependency.get("api_name"): dependency["id"] for dependency in config["dependencies"]}


def png_bytes(height: int = 40, width: int = 60, seed: int = 0, padding: int = 0) -> bytes:
    """A random PNG, followed by ``padding`` bytes after its end (decoders ignore them)."""
    rng = np.random.default_rng(seed)
    ok, buffer = cv2.imencode(".png", rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    assert ok
    return buffer.tobytes() + bytes([seed % 256]) * padding


def upload(url: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}gradio_api/upload", files={"files": (name, data)}, timeout=120)


def file_payload(path: str, meta: bool = True) -> dict:
    payload = {"path": path, "orig_name": Path(path).name}
    return {**payload, "meta": {"_type": "gradio.FileData"}} if meta else payload


def join_body(fn: int, data: list, session: str) -> bytes:
    """The JSON body of joining the queue for event ``fn`` (built once, to send many times)."""
    body = {"data": data, "fn_index": fn, "session_hash": session, "event_data": None, "trigger_id": None}
    return json.dumps(body).encode()


def join(url: str, fn: int, data: list | bytes, session: str) -> httpx.Response:
    body = data if isinstance(data, bytes) else join_body(fn, data, session)
    return httpx.post(f"{url}gradio_api/queue/join", content=body, timeout=120,
                      headers={"content-type": "application/json"})


def wait_for(url: str, session: str, event_ids: set[str], timeout: float = 300) -> dict[str, Outcome]:
    """Read the session's event stream until every event in ``event_ids`` has completed."""
    outcomes = {}
    with httpx.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session},
                      timeout=timeout) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "process_completed" and message.get("event_id") in event_ids:
                output = message.get("output") or {}
                outcomes[message["event_id"]] = Outcome(
                    200, None if message["success"] else str(output.get("error")),
                    output.get("data") if message["success"] else None)
                if set(outcomes) == event_ids:
                    break
    return outcomes


def run_event(url: str, fn: int, data: list | bytes, session: str | None = None) -> Outcome:
    """Join the queue with ``data`` (or a prebuilt ``join_body`` for ``session``) and wait for the end."""
    session = session or uuid.uuid4().hex
    response = join(url, fn, data, session)
    if response.status_code != 200:
        return Outcome(response.status_code, response.text, None)
    event_id = response.json()["event_id"]
    return wait_for(url, session, {event_id})[event_id]


# ------------------------------------------------------------------ item 1: any file on the server
def test_only_uploaded_or_example_images_are_read_and_errors_reveal_nothing(served, fn_index, tmp_path):
    """/predict with {"path": ...} without meta._type read any file; its errors told whether a path
    exists, its size, and the server's working directory."""
    outside = tmp_path / "photo.png"
    outside.write_bytes(png_bytes())  # a real image, outside gradio's upload folder
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes(padding=27 * 2**20))
    (tmp_path / "folder").mkdir()
    targets = [str(outside), "/etc/passwd", str(tmp_path / "missing.png"), str(big), str(tmp_path / "folder"),
               "app.py", "../../../../etc/hostname"]
    for meta in (False, True):  # without meta._type the path skipped gradio's own check
        texts = set()
        for target in targets:
            outcome = run_event(served, fn_index["predict"], [file_payload(target, meta), 0.5])
            assert outcome.data is None, f"{target} (meta={meta}) was read and segmented"
            texts.add(outcome.error)
            for secret in (os.getcwd(), "passwd", "hostname", "MB", "not an image", "photo", "app.py",
                           "folder"):
                assert secret not in (outcome.error or ""), f"{target}: {outcome.error!r} reveals {secret!r}"
        assert len(texts) == 1, f"the answers tell these paths apart (meta={meta}): {texts}"


def test_uploaded_images_and_examples_still_work(served, fn_index):
    path = upload(served, "street.png", png_bytes()).json()[0]
    outcome = run_event(served, fn_index["predict"], [file_payload(path), 0.5])
    assert outcome.error is None and outcome.data[1]["xi"] == 0.5
    example = Path(__file__).resolve().parent.parent / "assets" / "synthetic_street.png"
    if example.exists():  # gr.Examples hands the example's own path to the handler
        outcome = run_event(served, fn_index["predict"], [file_payload(str(example), meta=False), 0.5])
        assert outcome.error is None, outcome.error


# ------------------------------------------------------------------ item 2: data: URLs skip the cap
def data_url_payload(data: bytes) -> dict:
    return {"path": "image.png", "url": "data:image/png;base64," + base64.b64encode(data).decode()}


def test_data_urls_over_the_cap_are_refused_and_memory_stays_flat(served, fn_index):
    """34 MB and 100 MB JSON bodies went through, and resident memory grew by ~110 MB a call."""
    process = psutil.Process()
    small = run_event(served, fn_index["predict"], [data_url_payload(png_bytes()), 0.5])
    assert small.error is None, small.error  # a data: URL within the cap is still an image
    one_byte_over = png_bytes(padding=MAX_UPLOAD_BYTES + 1 - len(png_bytes()))
    just_over = run_event(served, fn_index["predict"], [data_url_payload(one_byte_over), 0.5])
    assert just_over.data is None and "limit is 25 MB" in (just_over.error or ""), just_over
    session = uuid.uuid4().hex
    bodies = [join_body(fn_index["predict"], [data_url_payload(png_bytes(padding=padding)), 0.5], session)
              for padding in (MAX_UPLOAD_BYTES + 8192, 26 * 2**20)]  # the second is the 34 MB body
    before = process.memory_info().rss
    for body in bodies * 4:
        outcome = run_event(served, fn_index["predict"], body, session)
        assert outcome.data is None
        assert outcome.status == 413 or "limit is 25 MB" in (outcome.error or ""), outcome
    growth = (process.memory_info().rss - before) / 2**20
    assert growth < 150, f"resident memory grew by {growth:.0f} MB over 8 oversized bodies"


def test_a_100_mb_body_is_refused_without_being_read_into_memory(served, fn_index):
    body = b'{"data": [{"path": "x", "url": "data:image/png;base64,' + b"A" * (100 * 2**20) + b'"}, 0.5], ' \
           b'"fn_index": %d, "session_hash": "big"}' % fn_index["predict"]
    response = httpx.post(f"{served}gradio_api/queue/join", content=body,
                          headers={"content-type": "application/json"}, timeout=120)
    assert response.status_code == 413


# ------------------------------------------------------------------ item 3: upload hygiene
def test_uploads_accept_only_images_and_a_flood_is_capped(checkpoint):
    """20 × 24 MB files of any type were accepted in 2.3 s and stayed until the 30-minute sweep."""
    app, url = start_server(checkpoint)  # its own server: the flood spends this address's upload budget
    try:
        for name, data in (("archive.zip", b"PK\x03\x04" + bytes(4096)), ("page.html", b"<html></html>"),
                           ("movie.gif", _gif())):
            response = upload(url, name, data)
            assert response.status_code == 415, f"{name} was accepted: {response.text[:100]}"
        stored, refused = [], 0
        for index in range(20):
            response = upload(url, f"big{index}.png", png_bytes(seed=index, padding=24 * 2**20))
            if response.status_code == 200:
                stored += response.json()
            else:
                refused += 1
        kept = sum(os.path.getsize(p) for p in stored if os.path.exists(p))
        assert refused > 0 and kept <= 100 * 2**20 + 2**20, (
            f"{len(stored)} accepted, {kept / 2**20:.0f} MB kept"
        )
    finally:
        app.close()


def _gif() -> bytes:
    import io

    buffer = io.BytesIO()
    PIL.Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "GIF")
    return buffer.getvalue()


# ------------------------------------------------------------------ item 4: one client blocks everyone
def test_one_session_cannot_fill_the_queue(served, fn_index):
    """No per-session limit: one client could queue 64 events and hold the model for everyone."""
    path = upload(served, "large.png", png_bytes(1024, 1024, seed=3)).json()[0]
    session = uuid.uuid4().hex
    statuses = []

    def send():
        statuses.append(join(served, fn_index["predict"], [file_payload(path), 0.5], session).status_code)

    threads = [threading.Thread(target=send) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(200) < 12, "every one of 12 simultaneous requests of one session was queued"
    assert statuses.count(200) >= 1
    time.sleep(0.1)


def test_predict_is_not_starved_behind_sweeps(served, fn_index):
    """A /predict waited 74 s behind five ξ sweeps (one model queue, first come first served)."""
    path = upload(served, "sweep.png", png_bytes(seed=5)).json()[0]
    sessions = [uuid.uuid4().hex for _ in range(5)]
    for session in sessions:  # each tab loads the image at the largest working size, as a user would
        # ..., model, runtime, colours
        inputs = [file_payload(path), "128x192", 0.9, 0.5, None, None, "PyTorch", "dataset"]
        outcome = run_event(served, fn_index["on_image"], inputs, session)
        assert outcome.error is None, outcome.error
    start = time.perf_counter()
    assert run_event(served, fn_index["on_sweep"], [0.9, None], sessions[0]).error is None
    one_sweep_s = time.perf_counter() - start
    events = {session: join(served, fn_index["on_sweep"], [0.9, None], session).json()["event_id"]
              for session in sessions}
    time.sleep(min(0.2, one_sweep_s / 4))  # the first sweep is running, four are queued
    start = time.perf_counter()
    predict = run_event(served, fn_index["predict"], [file_payload(path), 0.5])
    predict_s = time.perf_counter() - start
    assert predict.error is None
    for session, event_id in events.items():  # let the sweeps finish (their results are not needed)
        wait_for(served, session, {event_id})
    assert predict_s < 2 * one_sweep_s, (
        f"/predict took {predict_s:.1f} s behind 5 sweeps; one sweep alone takes {one_sweep_s:.1f} s")


def test_ui_events_are_not_offered_as_api(served):
    """UI-internal events (the example loader, the handlers of the page) were callable as API."""
    info = httpx.get(f"{served}gradio_api/info", params={"all_endpoints": "true"}, timeout=30).json()
    assert set(info["named_endpoints"]) == {"/predict", "/trace", "/export", "/inspect_token",
                                            "/analyze_video"}
    client = Client(served, verbose=False)
    with pytest.raises(Exception):  # noqa: B017 (gradio_client wraps the server's refusal in its own types)
        client.predict(handle_file(str(Path(__file__).parent.parent / "assets" / "synthetic_street.png")),
                       api_name="/load_example")


# ------------------------------------------------------------------ item 7: smaller ones
@pytest.mark.parametrize("xi", [True, "0.5", [0.5]])
def test_xi_must_be_a_number(served, fn_index, xi):
    path = upload(served, "street.png", png_bytes()).json()[0]
    outcome = run_event(served, fn_index["predict"], [file_payload(path), xi])
    assert outcome.data is None and "xi must be a number" in (outcome.error or "")


def test_a_long_thin_image_is_judged_by_its_own_size(served, fn_index):
    """A valid 16×8192 image was refused as 4×2048 (the minimum size was checked after downscaling)."""
    path = upload(served, "strip.png", png_bytes(16, 8192)).json()[0]
    outcome = run_event(served, fn_index["predict"], [file_payload(path), 0.5])
    assert outcome.error is None, outcome.error


def test_a_user_error_logs_one_line_not_a_traceback(served, fn_index, capfd):
    path = upload(served, "small.png", png_bytes(8, 8)).json()[0]
    capfd.readouterr()
    outcome = run_event(served, fn_index["predict"], [file_payload(path), 0.5])
    time.sleep(0.3)
    log = capfd.readouterr()
    text = log.out + log.err
    assert "smaller than one" in (outcome.error or "")
    assert "Traceback" not in text, text
    assert len([line for line in text.splitlines() if "smaller than one" in line]) == 1, text


# ------------------------------------------------------------------ what must survive the fixes
def test_eight_concurrent_clients_get_identical_masks(served, tmp_path):
    image = tmp_path / "street.png"
    image.write_bytes(png_bytes(50, 70, seed=7))
    masks, errors = [None] * 8, [None] * 8

    def call(index):
        # Each client downloads into its own folder: gradio_client names a download by its content, so
        # eight identical masks in one shared folder would be written and read at the same time.
        try:
            client = Client(served, verbose=False, download_files=tmp_path / f"client{index}")
            mask_path, _ = client.predict(handle_file(image), 0.8, api_name="/predict")
            masks[index] = np.asarray(PIL.Image.open(mask_path))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors[index] = repr(error)

    threads = [threading.Thread(target=call, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [None] * 8, errors
    assert all(mask is not None and mask.shape == (50, 70, 3) for mask in masks)
    assert all(np.array_equal(mask, masks[0]) for mask in masks[1:])


def test_memory_stays_bounded_over_mixed_good_oversized_and_invalid_calls(served, fn_index):
    """A looser, shorter version of benchmarks/app_memory.py (300 calls, ±50 MB)."""
    process = psutil.Process()
    good = upload(served, "good.png", png_bytes(120, 160, seed=9)).json()[0]
    session = uuid.uuid4().hex
    oversized = join_body(fn_index["predict"], [data_url_payload(png_bytes(padding=MAX_UPLOAD_BYTES + 8192)),
                                                0.5],
                          session)
    invalid = join_body(fn_index["predict"], [file_payload("/etc/passwd", meta=False), 0.5], session)
    for _ in range(3):
        run_event(served, fn_index["predict"], [file_payload(good), 0.9], session)
    before = process.memory_info().rss
    for index in range(60):
        body = [oversized, invalid][index % 2] if index % 3 == 0 else [file_payload(good), 0.5 + index / 200]
        run_event(served, fn_index["predict"], body, session)
    growth = (process.memory_info().rss - before) / 2**20
    assert growth < 100, f"resident memory grew by {growth:.0f} MB over 60 calls"

