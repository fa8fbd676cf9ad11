"""Process settings for serving: torch CPU threading (used by app.py and the benchmarks) and returning
freed heap memory after each forward (used by the handlers).

Threads:
One forward runs at a time (the model queue has concurrency 1), so intra-op threads are the only
parallelism. We leave one core to the server itself (HTTP, image encoding) and to anything else on the
machine: on this project's 2-core CPU, with a training job running, 2 threads made the slider handler
~4x slower than 1 (threads wait at every op's barrier for the slowest one; see docs/benchmarks.md).
A ViT-Tiny forward at 360x480 gains little beyond 8 threads, hence the cap.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

MAX_DEFAULT_THREADS = 8


def default_threads() -> int:
    """min(8, usable cores - 1), at least 1."""
    return max(1, min(MAX_DEFAULT_THREADS, len(os.sched_getaffinity(0)) - 1))


def configure_torch(threads: int | None = None) -> int:
    """Set torch's intra-op threads (default ``default_threads()``) and one inter-op thread; returns it."""
    import torch

    threads = threads or default_threads()
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process (e.g. by an earlier call)
        pass
    return threads



def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None  # glibc only
    except OSError:
        return None


_LIBC = _libc()


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 8 * 2**20


def limit_heap_growth(threshold: int = MMAP_THRESHOLD_BYTES) -> None:
    """Serve every allocation of ``threshold`` bytes or more from its own mapping, returned to the OS when
    freed (glibc ``mallopt``; a no-op elsewhere).

    glibc raises this threshold (up to 32 MB) each time such a block is freed, after which request
    bodies and decoded uploads of a few MB to 32 MB land in the heap and stay resident: 34 MB data: URL
    requests grew a server by ~110 MB each. A fixed threshold stops that; tensors this big (attention at
    large working sizes) pay a few ms of page faults per forward.
    """
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(M_MMAP_THRESHOLD, int(threshold))


def trim_heap() -> None:
    """Give the freed heap memory of the last forward back to the OS (glibc ``malloc_trim``; ~2 ms).

    glibc keeps freed blocks for reuse and, after large frees, serves even big allocations from the heap,
    so the resident set of a server running forwards on ever new images creeps up: /predict on alternating
    360x480 images grew it by ~200 MB over 100 calls, and by ~11 MB with a trim after each call
    (docs/benchmarks.md). A no-op where this is not glibc.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
