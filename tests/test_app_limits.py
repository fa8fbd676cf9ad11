"""The serving pieces without a server: ModelGate, Admission, the request guard (on a stub ASGI app),
UploadLedger's size sweep, ViewSlots, and the sweep generator's cancel and time budget."""
import asyncio
import json
import threading
import time

import gradio as gr
import numpy as np
import pytest

from app import controls
from app.guard import RequestGuard
from app.limits import Admission, LimitError, ModelGate, ServingLimits
from app.state import Session, ViewSlots
from app.studio import Studio
from app.uploads import UploadLedger
from dovit import Predictor


# ------------------------------------------------------------------ ModelGate
def test_gate_lets_interactive_callers_go_before_background_ones():
    gate, order = ModelGate(), []
    holding, release = threading.Event(), threading.Event()

    def first():
        with gate.hold():
            holding.set()
            release.wait(5)

    def caller(name, background):
        with gate.hold(background):
            order.append(name)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    holding.wait(5)
    for name, background in (("sweep step 1", True), ("sweep step 2", True), ("predict", False)):
        threads.append(threading.Thread(target=caller, args=(name, background)))
        threads[-1].start()
        time.sleep(0.05)  # queued in this order while the gate is held
    release.set()
    for thread in threads:
        thread.join(5)
    assert order[0] == "predict" and sorted(order[1:]) == ["sweep step 1", "sweep step 2"]


def test_gate_is_one_caller_at_a_time():
    gate, inside, most = ModelGate(), [0], [0]

    def work(background):
        for _ in range(20):
            with gate.hold(background):
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                time.sleep(0.0005)
                inside[0] -= 1

    threads = [threading.Thread(target=work, args=(i % 2 == 0,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most[0] == 1


# ------------------------------------------------------------------ Admission
def test_admission_caps_per_session_per_sweep_and_per_client():
    limits = ServingLimits(pending_per_session=2, pending_per_client=3, sweeps_per_session=1)
    admission = Admission(limits)
    admission.admit("tab-a", "1.2.3.4")
    admission.admit("tab-a", "1.2.3.4")
    with pytest.raises(LimitError, match="This session already has 2"):
        admission.admit("tab-a", "1.2.3.4")
    admission.finish("tab-a")
    admission.admit("tab-a", "1.2.3.4", "sweep")
    admission.admit("tab-b", "1.2.3.4")
    with pytest.raises(LimitError, match="Your address already has 3"):
        admission.admit("tab-c", "1.2.3.4")
    admission.admit("tab-c", "5.6.7.8")  # another address is not affected
    admission.finish("tab-a", "sweep")
    assert admission.pending("tab-a") == 1 and admission.pending() == 3
    with pytest.raises(LimitError, match="ξ sweep or policy run is already running"):
        fresh = Admission(limits)
        fresh.admit("tab-d", "9.9.9.9", "sweep")
        fresh.admit("tab-d", "9.9.9.9", "sweep")


def test_admitted_calls_that_never_ran_expire():
    now = [0.0]
    admission = Admission(ServingLimits(pending_per_session=1, pending_ttl_s=60), clock=lambda: now[0])
    admission.admit("tab", "client")
    with pytest.raises(LimitError):
        admission.admit("tab", "client")
    now[0] = 61.0
    admission.admit("tab", "client")  # the first one's client went away: it no longer counts


# ------------------------------------------------------------------ RequestGuard and UploadLedger
def run_asgi(app, method: str, path: str, body: bytes, chunks: int = 1, client=("10.0.0.1", 1),
             declare: bool = True):
    """Drive an ASGI app with one request; returns (status, body, bytes the inner app read)."""
    headers = [(b"content-length", str(len(body)).encode())] if declare else []
    scope = {"type": "http", "method": method, "path": path, "headers": headers, "client": client}
    size = max(1, len(body) // chunks)
    parts = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    messages = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def echo_app(read):
    async def app(scope, receive, send):
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        read.append(total)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


def test_guard_caps_bodies_declared_or_streamed():
    read = []
    guard = RequestGuard(echo_app(read), ServingLimits(body_max_bytes=1000), UploadLedger())
    assert run_asgi(guard, "POST", "/gradio_api/queue/join", b"x" * 1000) == (200, b"ok")
    status, text = run_asgi(guard, "POST", "/gradio_api/queue/join", b"x" * 1001)
    assert status == 413 and b"25 MB" in text and read == [1000]  # refused before the app read it
    status, _ = run_asgi(guard, "POST", "/gradio_api/queue/join", b"x" * 5000, chunks=10, declare=False)
    assert status == 413


def stored_upload_app(stored: dict[str, str]):
    """A stub of gradio's upload route: the request body names the file it "stored" (``stored[body]``)."""
    def upload_app(scope, receive, send):
        async def app():
            body = (await receive())["body"].decode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": json.dumps([stored[body]]).encode()})
        return app()
    return upload_app


def test_guard_keeps_only_image_uploads_and_budgets_each_address(tmp_path):
    image, text = tmp_path / "a" / "photo.png", tmp_path / "b" / "notes.png"
    image.parent.mkdir()
    text.parent.mkdir()
    import cv2

    cv2.imwrite(str(image), np.zeros((20, 20, 3), np.uint8))
    text.write_text("not an image")
    upload_app = stored_upload_app({"photo": str(image), "notes": str(text)})
    limits = ServingLimits(upload_bytes_per_client=2000, upload_window_s=60)
    guard = RequestGuard(upload_app, limits, UploadLedger())
    status, body = run_asgi(guard, "POST", "/gradio_api/upload", b"notes")
    assert status == 415 and b"not an image we can read" in body and not text.exists()
    status, body = run_asgi(guard, "POST", "/gradio_api/upload", b"photo")
    assert status == 200 and json.loads(body) == [str(image)]
    status, body = run_asgi(guard, "POST", "/gradio_api/upload", b"photo" + b" " * 1995)  # budget spent
    assert status == 429 and b"Upload limit" in body
    status, _ = run_asgi(guard, "POST", "/gradio_api/upload", b"photo", client=("10.0.0.2", 1))
    assert status == 200  # another address has its own budget


def test_guard_passes_only_user_error_texts_when_joining_fails():
    def failing_app(detail):
        async def app(scope, receive, send):
            await receive()
            body = json.dumps({"detail": detail}).encode()
            await send({"type": "http.response.start", "status": 400, "headers": [(b"content-length", b"9")]})
            await send({"type": "http.response.body", "body": body})
        return app

    limits, ledger = ServingLimits(), UploadLedger()
    leak = "Cannot move /work/secret/photo.png to the gradio cache dir because it was not uploaded by a user."
    status, body = run_asgi(RequestGuard(failing_app(leak), limits, ledger), "POST", "/gradio_api/queue/join",
                            b"{}")
    assert status == 400 and b"secret" not in body and json.loads(body)["detail"].startswith("The request")
    user = repr("This session already has 4 requests waiting or running")
    status, body = run_asgi(RequestGuard(failing_app(user), limits, ledger), "POST", "/gradio_api/queue/join",
                            b"{}")
    assert json.loads(body)["detail"] == "This session already has 4 requests waiting or running"


def test_ledger_sweeps_the_oldest_uploads_down_to_the_size_cap(tmp_path):
    now = [0.0]
    ledger = UploadLedger(clock=lambda: now[0])
    paths = []
    for index in range(5):
        folder = tmp_path / f"hash{index}"
        folder.mkdir()
        path = folder / "image.png"
        path.write_bytes(bytes(1000))
        paths.append(str(path))
        now[0] += 1
        ledger.record("client", [str(path)])
    deleted = ledger.sweep(max_bytes=2500)
    assert deleted == paths[:3] and ledger.total_bytes() == 2000
    assert not (tmp_path / "hash0").exists() and (tmp_path / "hash4" / "image.png").exists()
    assert ledger.sent_recently("client", window_s=1.5) == 2000  # the uploads at t = 4 and 5 only


# ------------------------------------------------------------------ ViewSlots and the sweep generator
def test_view_slots_flatten_and_name_consistently():
    slots = ViewSlots.filled(0, num_groups=3, readouts="r", groups=["g1", "g2", "g3"], sweep_plot="s")
    assert slots.names()[:6] == ["readouts", "tokens_plot", "group_1", "group_2", "group_3", "confidence_1"]
    assert len(slots.flat()) == len(slots.names()) == 12 + 3 + 2  # 12 single slots, 3 groups, 2 decisions
    named = dict(zip(slots.names(), slots.flat(), strict=True))
    picked = [named[name] for name in ("readouts", "group_2", "confidence_2", "sweep_plot")]
    assert picked == ["r", "g2", 0, "s"]
    assert slots.values(ViewSlots.filled(None)) == [None] * len(slots.flat())  # one value for every view


@pytest.fixture(scope="module")
def studio(tiny_model):
    return Studio(Predictor(tiny_model), image_dirs=[])


def session_for(studio) -> Session:
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    return Session(image=image, size=(64, 96), working=image)


def test_a_closed_sweep_stops_between_steps_and_frees_its_slot(studio):
    studio.admission.admit("tab", "client", "sweep")

    class Request:
        session_hash, client = "tab", None

    steps = []
    sweep = studio.on_sweep(0.9, session_for(studio), request=Request(),
                            progress=lambda value, desc=None: steps.append(value))
    next(sweep)
    next(sweep)
    sweep.close()  # what gradio does when the Stop button cancels the event
    assert len(steps) == 3 and studio.admission.pending("tab") == 0
    with studio.gate.hold():  # the gate was released
        pass


def test_a_sweep_stops_at_its_time_budget_with_the_points_it_has(tiny_model, monkeypatch):
    studio = Studio(Predictor(tiny_model), image_dirs=[], limits=ServingLimits(sweep_budget_s=0.0))
    warnings = []
    monkeypatch.setattr(gr, "Warning", warnings.append)
    *_, last = studio.on_sweep(0.9, session_for(studio), progress=lambda *a, **k: None)
    session = last.session
    assert last.sweep_plot is not None and len(session.sweep) == 1 < len(controls.sweep_values())
    assert "stopped after" in warnings[0]


def test_a_sweep_cancelled_while_queued_frees_its_slot(studio):
    """Stop (or a new image) cancels a queued sweep whose handler then never runs: its slot is freed."""

    class Request:
        session_hash, client = "queued-tab", None

    studio.admission.admit("queued-tab", "client", "sweep")
    studio.on_stop_sweep(Request())
    studio.admission.admit("queued-tab", "client", "sweep")  # a new sweep is admitted
    studio.on_image(None, studio.default_size_value, 0.9, 0.5, None, request=Request())
    assert studio.admission.pending("queued-tab") == 0
