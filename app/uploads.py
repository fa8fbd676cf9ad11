"""What an upload may be, and whose uploads are kept: video containers sniffed and opened (``sniff_video``,
``video_problem``), the refusal of a stored file (``upload_refusal``), and the per-client ledger of uploads
with the cache sweep (``UploadLedger``). Used by ``app.guard.RequestGuard``; no gradio here."""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

import cv2

from .images import MAX_UPLOAD_BYTES, NOT_UPLOADED, upload_problem
from .limits import ServingLimits

VIDEO_KINDS = ("MP4/MOV", "WebM/MKV", "AVI")
VIDEO_HEADER_BYTES = 12


def sniff_video(header: bytes) -> str | None:
    """The video container the first bytes of a file announce (one of ``VIDEO_KINDS``) or None: an ISO
    media box 'ftyp' at offset 4 (MP4, MOV), the EBML magic 1A 45 DF A3 (WebM, MKV), or 'RIFF' with form
    type 'AVI ' (a RIFF with 'WEBP' is an image)."""
    if len(header) >= 8 and header[4:8] == b"ftyp":
        return "MP4/MOV"
    if header[:4] == b"\x1a\x45\xdf\xa3":
        return "WebM/MKV"
    if len(header) >= 12 and header[:4] == b"RIFF" and header[8:12] == b"AVI ":
        return "AVI"
    return None


def is_video_upload(path: str | Path) -> bool:
    """Whether the file's first bytes announce a video container (``sniff_video``); False if unreadable."""
    try:
        with open(path, "rb") as file:
            return sniff_video(file.read(VIDEO_HEADER_BYTES)) is not None
    except OSError:
        return False


def video_problem(path: str | Path, limits: ServingLimits) -> str | None:
    """Why a stored upload is not a video we accept (the message for the user), or None: its header must be
    a video container (``sniff_video``), its size within ``video_max_bytes``, and OpenCV must open it
    with at most ``video_upload_max_frames`` frames (when the container says) of at most
    ``video_max_pixels`` pixels. Reads the container's header, decodes no frame."""
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as file:
            kind = sniff_video(file.read(VIDEO_HEADER_BYTES))
    except OSError:
        return NOT_UPLOADED
    if kind is None:
        return "The file is not a video we can read (MP4, MOV, WebM, MKV or AVI expected)."
    if size > limits.video_max_bytes:
        return (f"The video is {size / 2**20:.1f} MB, over the maximum file size for a video "
                f"({limits.video_max_bytes / 2**20:.0f} MB).")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return f"The {kind} file could not be opened as a video (corrupt, or a codec OpenCV lacks)."
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        pixels = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) * int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()
    if frames > limits.video_upload_max_frames:
        return f"The video has {frames} frames; the limit is {limits.video_upload_max_frames}."
    if pixels > limits.video_max_pixels:
        return (f"The video's frames are {pixels / 1e6:.1f} MP; the limit is "
                f"{limits.video_max_pixels / 1e6:.1f} MP.")
    return None


def upload_refusal(path: str | Path, limits: ServingLimits) -> tuple[int, str] | None:
    """(HTTP status, message for the user) refusing one stored upload, or None to keep it: a video by its
    header (``video_problem``), else an image (``images.upload_problem``); 413 for a file over its cap
    (an image over ``MAX_UPLOAD_BYTES`` is told both caps), 415 for anything else."""
    size = _size(path)
    if is_video_upload(path):
        if size > limits.video_max_bytes:
            return 413, (f"The video is {size / 2**20:.1f} MB, over the maximum file size for a video "
                         f"({limits.video_max_bytes / 2**20:.0f} MB).")
        problem = video_problem(path, limits)
    elif size > MAX_UPLOAD_BYTES:
        return 413, (f"The upload is {size / 2**20:.1f} MB, over the maximum file size for an image "
                     f"({MAX_UPLOAD_BYTES / 2**20:.0f} MB; videos may be "
                     f"{limits.video_max_bytes / 2**20:.0f} MB).")
    else:
        problem = upload_problem(path)
    return None if problem is None else (415, problem)


class UploadLedger:
    """The files uploaded through this app: who sent them, when, and how big (for the caps)."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._files: OrderedDict[str, tuple[str, int, float]] = OrderedDict()  # path -> (client, bytes, time)
        self._sent: dict[str, list[tuple[float, int]]] = {}  # client -> [(time, bytes)] in the window

    def sent_recently(self, client: str, window_s: float) -> int:
        """Bytes ``client`` uploaded in the last ``window_s`` seconds."""
        with self._lock:
            since = self._clock() - window_s
            recent = [(t, n) for t, n in self._sent.get(client, []) if t >= since]
            self._sent[client] = recent
            return sum(n for _, n in recent)

    def record(self, client: str, paths: list[str]) -> None:
        now = self._clock()
        with self._lock:
            for path in paths:
                size = _size(path)
                self._files.pop(path, None)
                self._files[path] = (client, size, now)
                self._sent.setdefault(client, []).append((now, size))

    def sweep(self, max_bytes: int) -> list[str]:
        """Delete the oldest uploads until those still on disk total at most ``max_bytes``; returns them."""
        deleted = []
        with self._lock:
            for path in [p for p in self._files if not os.path.exists(p)]:
                del self._files[path]
            total = sum(size for _, size, _ in self._files.values())
            while total > max_bytes and self._files:
                path, (_, size, _) = self._files.popitem(last=False)
                delete_upload(path)
                deleted.append(path)
                total -= size
        return deleted

    def total_bytes(self) -> int:
        with self._lock:
            return sum(size for path, (_, size, _) in self._files.items() if os.path.exists(path))


def delete_upload(path: str) -> None:
    """Remove an uploaded file and its folder (gradio stores each upload in a folder named by its hash)."""
    file = Path(path)
    file.unlink(missing_ok=True)
    try:
        file.parent.rmdir()
    except OSError:  # not empty (another upload with the same content) or already gone
        pass


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
