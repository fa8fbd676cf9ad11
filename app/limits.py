"""Fair sharing of the one Predictor among every browser tab and API client. No gradio here.

- ``ServingLimits``: every cap of the serving side in one place (queue, per-session, sweep, uploads, cache).
- ``ModelGate``: the lock around the Predictor, where interactive calls (page events, /predict) go before
  background work (ξ sweep steps), so that a sweep never makes a /predict wait more than one step.
- ``Admission``: how many model calls each session (browser tab or API client) and each client address
  may have queued or running; the rest are refused at once instead of filling the shared queue.
"""
from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .images import MAX_UPLOAD_BYTES


@dataclass(frozen=True)
class ServingLimits:
    """The serving caps; sizes in bytes, times in seconds.

    queue_size: events waiting in gradio's queue, all sessions together.
    pending_per_session / pending_per_client: model calls queued or running for one session hash / one
    client address (a client can open many sessions; several people behind one address share it).
    sweeps_per_session: ξ sweeps queued or running for one session.
    pending_ttl_s: an admitted call that never ran (its client went away) stops counting after this.
    sweep_budget_s: a sweep stops with the points it has after this long (it yields to other calls).
    upload_bytes_per_client / upload_window_s: bytes one client address may upload per window.
    cache_max_bytes: the upload cache is swept, oldest first, down to this size after each upload.
    body_max_bytes: any HTTP request body but an upload: the base64 of a MAX_UPLOAD_BYTES image and 4 KB
    of JSON around it, so that a data: URL even a few KB over the cap is refused before gradio reads it
    (gradio keeps each session's last input value in memory).
    video_max_bytes: an uploaded video file (MP4/MOV, WebM/MKV, AVI); an upload request may be this big
    plus 64 KB of multipart headers (gradio streams uploads to disk, not into memory).
    video_upload_max_frames / video_max_pixels: videos whose container declares more frames, or frames of
    more pixels, are refused at upload.
    video_max_frames / video_max_side: a video job analyses at most this many frames (the first ones),
    shrunk to this longer side, with a notice; video_budget_s: and stops after this long.
    videos_per_session / reports_per_session: video jobs / data-set reports queued or running per session.
    report_max_images: images a data-set report in the app analyses at most.
    """

    queue_size: int = 64
    pending_per_session: int = 4
    pending_per_client: int = 16
    sweeps_per_session: int = 1
    pending_ttl_s: float = 600.0
    sweep_budget_s: float = 30.0
    upload_bytes_per_client: int = 100 * 2**20
    upload_window_s: float = 60.0
    cache_max_bytes: int = 1024 * 2**20
    body_max_bytes: int = 4 * -(-MAX_UPLOAD_BYTES // 3) + 4096
    video_max_bytes: int = 96 * 2**20  # one video and its headers fit one address's upload budget
    video_upload_max_frames: int = 30_000
    video_max_pixels: int = 3840 * 2160
    video_max_frames: int = 3000
    video_max_side: int = 640
    video_budget_s: float = 900.0
    videos_per_session: int = 1
    reports_per_session: int = 1
    report_max_images: int = 200

    @property
    def upload_body_max_bytes(self) -> int:
        """The cap of an upload request's body: the largest file (a video, or an image) and its headers."""
        return max(self.video_max_bytes, MAX_UPLOAD_BYTES) + 64 * 2**10


class LimitError(RuntimeError):
    """A call refused by a per-session or per-client limit; the message is meant for the user."""


class ModelGate:
    """One caller at a time on the Predictor; waiting interactive callers go before background ones.

    ``hold(background=True)`` (a sweep step) waits while the gate is busy or any interactive caller
    is waiting, so a sweep yields the model between its steps; interactive callers only wait for the
    step in progress.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._busy = False
        self._interactive_waiting = 0

    @contextmanager
    def hold(self, background: bool = False) -> Iterator[None]:
        with self._condition:
            if not background:
                self._interactive_waiting += 1
            try:
                while self._busy or (background and self._interactive_waiting):
                    self._condition.wait()
            finally:
                if not background:
                    self._interactive_waiting -= 1
            self._busy = True
        try:
            yield
        finally:
            with self._condition:
                self._busy = False
                self._condition.notify_all()


class Admission:
    """Counts the calls admitted per session and per client address until each one finishes.

    ``admit`` (when a call joins the queue) raises LimitError when a cap is reached; ``finish`` (when the
    handler of that session's call ends) frees the session's oldest admitted call of that kind. Calls that
    never ran (their client went away) stop counting after ``limits.pending_ttl_s``.
    """

    def __init__(self, limits: ServingLimits, clock=time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._tickets: dict[int, tuple[str, str, str, float]] = {}  # id -> (session, client, kind, time)
        self._next = 0

    def admit(self, session: str, client: str, kind: str = "model") -> None:
        """Admit one call of ``kind`` ('model', 'sweep', 'video' or 'report') for ``session`` from ``client``;
        sweeps, videos and reports also have their own cap per session."""
        limits = self.limits
        with self._lock:
            self._expire()
            tickets = list(self._tickets.values())
            if sum(1 for s, _, _, _ in tickets if s == session) >= limits.pending_per_session:
                raise LimitError(f"This session already has {limits.pending_per_session} requests waiting or "
                                 "running; try again when they have finished.")
            per_session = {"sweep": (limits.sweeps_per_session, "A ξ sweep or policy run"),
                           "video": (limits.videos_per_session, "A video analysis"),
                           "report": (limits.reports_per_session, "A data-set report")}
            if kind in per_session and sum(
                    1 for s, _, k, _ in tickets if s == session and k == kind) >= per_session[kind][0]:
                raise LimitError(f"{per_session[kind][1]} is already running for this page; wait for it or "
                                 "stop it.")
            if sum(1 for _, c, _, _ in tickets if c == client) >= limits.pending_per_client:
                raise LimitError(f"Your address already has {limits.pending_per_client} requests waiting or "
                                 "running; try again when they have finished.")
            self._next += 1
            self._tickets[self._next] = (session, client, kind, self._clock())

    def finish(self, session: str, kind: str = "model") -> None:
        with self._lock:
            for ticket, (s, _, k, _) in self._tickets.items():  # insertion order: the oldest first
                if s == session and k == kind:
                    del self._tickets[ticket]
                    return

    def pending(self, session: str | None = None) -> int:
        """Calls admitted and not finished (for ``session``, or in all)."""
        with self._lock:
            self._expire()
            return sum(1 for s, _, _, _ in self._tickets.values() if session is None or s == session)

    def _expire(self) -> None:
        oldest = self._clock() - self.limits.pending_ttl_s
        for ticket in [t for t, (_, _, _, admitted) in self._tickets.items() if admitted < oldest]:
            del self._tickets[ticket]


# job folders (video, data-set report, export) kept on disk (each session's last run, for its scrubber and
# downloads)
RUNS_KEPT = 16
RUN_MAX_AGE_S = 1800.0  # and none older than gradio's cache sweep keeps outputs


def new_run_folder(work_root: Path) -> Path:
    """A fresh job folder under ``work_root``; the oldest folders beyond ``RUNS_KEPT`` and those older than
    ``RUN_MAX_AGE_S`` are deleted first, so that jobs do not fill the disk."""
    work_root.mkdir(parents=True, exist_ok=True)
    runs = sorted((p for p in work_root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    now = time.time()
    for old in [p for p in runs if now - p.stat().st_mtime > RUN_MAX_AGE_S] + runs[:max(0,
                                                                                        len(runs) - RUNS_KEPT
                                                                                        + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    folder = work_root / uuid.uuid4().hex
    folder.mkdir()
    return folder
