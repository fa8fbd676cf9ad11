"""HTTP hygiene in front of the gradio app, as an ASGI middleware (``RequestGuard``). No gradio here.

- Every request body is capped (``ServingLimits.body_max_bytes``): a JSON body carrying an image as a
  data: URL can be no bigger than the base64 of the largest upload, so memory per request is bounded.
- ``/gradio_api/upload`` keeps only images and videos: each stored file's header must be PNG, JPEG, WebP
  or BMP (``images.upload_problem``, at most ``MAX_UPLOAD_BYTES``), or a video container (``sniff_video``:
  MP4/MOV, WebM/MKV, AVI) that OpenCV opens, within ``video_max_bytes``, ``video_upload_max_frames`` and
  ``video_max_pixels`` (``video_problem``); otherwise the whole upload is deleted and refused (415 or
  413, with the reason). An upload body may be ``upload_body_max_bytes``, other bodies ``body_max_bytes``.
  Each client address may upload ``upload_bytes_per_client`` per ``upload_window_s`` (429 beyond);
  uploads carry no gradio session, so the address is the finest key there is. After each upload the
  uploaded files are swept, oldest first, down to ``cache_max_bytes`` (gradio's ``delete_cache``
  sweeps them by age).
"""
from __future__ import annotations

import ast
import json

from starlette.concurrency import run_in_threadpool

from .images import MAX_UPLOAD_BYTES
from .limits import ServingLimits
from .uploads import UploadLedger, delete_upload, upload_refusal

DRAIN_MAX_BYTES = 256 * 2**20
TOO_BIG = (f"too big for an image of at most {MAX_UPLOAD_BYTES / 2**20:.0f} MB (a file upload, or a base64 "
           "data: URL in the request).")


class BodyTooLarge(Exception):
    """Raised inside ``receive`` when a body streams past the cap."""


class RequestGuard:
    """ASGI middleware: caps every body, keeps only image and video uploads, budgets uploads per client
    address."""

    def __init__(self, app, limits: ServingLimits, ledger: UploadLedger) -> None:
        self.app = app
        self.limits = limits
        self.ledger = ledger

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/")
        is_upload = scope["method"] == "POST" and path.endswith("/gradio_api/upload")
        cap = self.limits.upload_body_max_bytes if is_upload else self.limits.body_max_bytes
        declared = _content_length(scope)
        too_big = (f"too big for an upload (a video of at most {self.limits.video_max_bytes / 2**20:.0f} MB "
                   f"or an image of at most {MAX_UPLOAD_BYTES / 2**20:.0f} MB)." if is_upload else TOO_BIG)
        if declared is not None and declared > cap:
            await _drain(receive, DRAIN_MAX_BYTES)
            await _answer(send, 413, f"The request is {declared / 2**20:.1f} MB: {too_big}")
            return
        receive = _capped(receive, cap)
        started = False

        async def tracking_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            if is_upload:
                await self._upload(scope, receive, tracking_send, declared or 0)
            elif scope["method"] == "POST" and (path.endswith("/queue/join") or "/gradio_api/call/" in path):
                await self.app(scope, receive, _user_errors_only(tracking_send))
            else:
                await self.app(scope, receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _answer(send, 413, f"The request is over {cap / 2**20:.1f} MB: {too_big}")

    async def _upload(self, scope, receive, send, declared: int) -> None:
        limits = self.limits
        client = (scope.get("client") or ("unknown", 0))[0]
        if self.ledger.sent_recently(client,
                                     limits.upload_window_s) + declared > limits.upload_bytes_per_client:
            await _drain(receive, DRAIN_MAX_BYTES)
            await _answer(send, 429,
                          f"Upload limit reached: at most {limits.upload_bytes_per_client / 2**20:.0f} MB "
                          f"per {limits.upload_window_s:.0f} s from one address; try again shortly.")
            return
        messages = []

        async def buffered_send(message) -> None:
            messages.append(message)

        await self.app(scope, receive, buffered_send)  # returns after gradio's background moves of the files
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        if start is not None and start["status"] == 200:
            body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
            try:
                paths = [str(p) for p in json.loads(body)]
            except (ValueError, TypeError):
                paths = []
            refusals = [refusal for refusal in await run_in_threadpool(
                lambda: [upload_refusal(p, limits) for p in paths]) if refusal]
            if refusals:
                for path in paths:
                    delete_upload(path)
                await _answer(send, *refusals[0])
                return
            self.ledger.record(client, paths)
            self.ledger.sweep(limits.cache_max_bytes)
        for message in messages:
            await send(message)


def _user_errors_only(send):
    """Wrap ``send`` so that a 400 answer to joining the queue carries only a user's error text.

    gradio answers 400 with ``str(exception)`` when an event's validator fails, and its own file checks
    (run before the validator) raise with the server path in the text. A ``gr.Error`` arrives as its
    message's repr (quoted): that is kept, unquoted; anything else becomes a generic refusal.
    """
    held: list[dict] = []

    async def filtering_send(message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 400:
            held.append(message)
            return
        if not held:
            await send(message)
            return
        held.append(message)
        if message.get("more_body", False):
            return
        body = b"".join(m.get("body", b"") for m in held[1:])
        text = json.dumps({"detail": _user_detail(body)}).encode()
        headers = [(k, v) for k, v in held[0]["headers"] if k not in (b"content-length", b"content-type")]
        await send({**held[0], "headers": [*headers, (b"content-type", b"application/json"),
                                            (b"content-length", str(len(text)).encode())]})
        await send({"type": "http.response.body", "body": text})

    return filtering_send


def _user_detail(body: bytes) -> str:
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str) and len(detail) >= 2 and detail[0] == detail[-1] and detail[0] in "'\"":
        try:
            return str(ast.literal_eval(detail))
        except (ValueError, SyntaxError):
            pass
    return "The request could not be processed."


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _capped(receive, cap: int):
    received = 0

    async def capped_receive():
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > cap:
                raise BodyTooLarge
        return message

    return capped_receive


async def _drain(receive, limit: int) -> None:
    """Read and drop up to ``limit`` bytes of the body, so that a client still sending it reads our answer
    rather than a reset connection; beyond that the connection is closed on it."""
    drained = 0
    while drained <= limit:
        message = await receive()
        drained += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _answer(send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length",
                                                                              str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
