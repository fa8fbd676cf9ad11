"""Benchmark: resident memory of the app's server over many /predict calls, good, oversized and invalid.

    python -m benchmarks.app_memory [--checkpoint PATH] [--calls 300] [--oversized 20] [--invalid 20] [IMAGE
    ...]

(from the checkout root).

Starts ``python app.py`` (the real entry point) on 127.0.0.1 in its own process, makes 5 warm-up calls,
then ``--calls`` requests in a fixed interleaving: good /predict calls through gradio_client with the
images in turn (default: two CamVid val images, else the synthetic asset), ``--oversized`` ones (a
34 MB JSON body carrying a data: URL, and a 26 MB file upload, alternately) and ``--invalid`` ones (a
server path outside the upload folder, a text file upload, ξ = True, an 8×8 image, in turn). Prints the
server's resident set after the warm-up and its growth every 50 requests, and the largest growth seen.
(tests/test_app_security.py checks a looser bound over fewer calls on a tiny model.)
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from dovit.data import data_root_beside

ROOT = Path(__file__).resolve().parent.parent
CAMVID_VAL = data_root_beside(ROOT) / "val"
DEFAULT_IMAGES = [CAMVID_VAL / "0016E5_07959.png", CAMVID_VAL / "0016E5_07961.png"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(checkpoint: str | None, threads: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "app.py", "--port", str(port), "--examples", ""]
    command += ["--checkpoint", checkpoint] if checkpoint else []
    command += ["--threads", str(threads)] if threads else []
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return server, url
        except OSError as error:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("app.py did not start") from error
            time.sleep(0.5)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--calls", type=int, default=300,
                        help="requests after the warm-up, all kinds together")
    parser.add_argument("--oversized", type=int, default=20)
    parser.add_argument("--invalid", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None,
                        help="the server's torch threads (app.py's default)")
    return parser.parse_args()


def bad_requests(client, url: str, scratch: Path, image: Path) -> tuple:
    """Two callables, index -> outcome line: an oversized upload (file or data: URL), an invalid one."""
    import cv2
    import httpx
    import numpy as np
    from gradio_client import handle_file

    big_file = scratch / "big.png"
    big_file.write_bytes(image.read_bytes() + bytes(26 * 2**20))
    text_file = scratch / "notes.png"
    text_file.write_text("not an image")
    small_file = scratch / "small.png"
    cv2.imwrite(str(small_file), np.zeros((8, 8, 3), np.uint8))  # smaller than one patch
    config = httpx.get(f"{url}config", timeout=30).json()
    predict_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "predict")
    data_url = "data:image/png;base64," + base64.b64encode(big_file.read_bytes()[: 26 * 2**20]).decode()
    big_body = json.dumps({"data": [{"path": "big.png", "url": data_url}, 0.9], "fn_index": predict_index,
                           "session_hash": uuid.uuid4().hex}).encode()

    def oversized(index: int) -> str:
        if index % 2 == 0:
            response = httpx.post(f"{url}gradio_api/queue/join", content=big_body, timeout=120,
                                  headers={"content-type": "application/json"})
            return f"data: URL body {len(big_body) / 2**20:.0f} MB -> {response.status_code}"
        return refused(lambda: client.predict(handle_file(big_file), 0.9, api_name="/predict"))

    def invalid(index: int) -> str:
        wrong = [{"path": "/etc/passwd"}, handle_file(text_file), handle_file(image), handle_file(small_file)]
        xi = True if index % 4 == 2 else 0.9
        return refused(lambda: client.predict(wrong[index % 4], xi, api_name="/predict"))

    return oversized, invalid


def drive(client, process, args: argparse.Namespace, images: list[Path], oversized, invalid) -> None:
    """The requests, good ones with the bad ones spread among them; resident memory every 50."""
    from gradio_client import handle_file

    from app.images import MAX_UPLOAD_BYTES

    for index in range(5):
        client.predict(handle_file(images[index % len(images)]), 0.95, api_name="/predict")
    before = process.memory_info().rss
    print(f"checkpoint: {args.checkpoint or 'shipped default'}; images: "
          f"{', '.join(p.name for p in images)}; upload cap {MAX_UPLOAD_BYTES / 2**20:.0f} MB")
    print(f"{args.calls} requests: {args.oversized} oversized, {args.invalid} invalid, the rest good "
          "/predict")
    print(f"server resident set after a 5-call warm-up: {before / 2**20:.0f} MB\n")
    print("| requests | resident MB | growth MB |\n|---|---|---|")
    bad_every = max(1, args.calls // max(1, args.oversized + args.invalid))
    counts, largest, examples = {"good": 0, "oversized": 0, "invalid": 0}, 0.0, {}
    for index in range(args.calls):
        slot = index // bad_every if index % bad_every == bad_every - 1 else None
        if slot is not None and slot % 2 == 0 and counts["oversized"] < args.oversized:
            examples.setdefault(f"oversized {counts['oversized'] % 2}", oversized(counts["oversized"]))
            counts["oversized"] += 1
        elif slot is not None and counts["invalid"] < args.invalid:
            examples.setdefault(f"invalid {counts['invalid'] % 4}", invalid(counts["invalid"]))
            counts["invalid"] += 1
        else:
            xi = 0.90 + (index % 100) / 1000
            client.predict(handle_file(images[index % len(images)]), xi, api_name="/predict")
            counts["good"] += 1
        growth = (process.memory_info().rss - before) / 2**20
        largest = max(largest, abs(growth))
        if (index + 1) % 50 == 0 or index + 1 == args.calls:
            print(f"| {index + 1} | {process.memory_info().rss / 2**20:.0f} | {growth:+.1f} |", flush=True)
    print(f"\nsent: {counts}; largest |growth| after any request: {largest:.1f} MB")
    for name, outcome in sorted(examples.items()):
        print(f"  {name}: {outcome}")


def main() -> None:
    args = parse_args()
    import psutil
    from gradio_client import Client

    images = (args.images or [p for p in DEFAULT_IMAGES if p.exists()]
              or [ROOT / "assets/synthetic_street.png"])
    scratch = Path(tempfile.mkdtemp(prefix="app_memory_"))
    server, url = start_server(args.checkpoint, args.threads)
    try:
        client = Client(url, verbose=False)
        oversized, invalid = bad_requests(client, url, scratch, images[0])
        drive(client, psutil.Process(server.pid), args, images, oversized, invalid)
    finally:
        server.terminate()
        server.wait(timeout=60)
        for path in scratch.iterdir():
            path.unlink()
        os.rmdir(scratch)


def refused(call) -> str:
    """Run a call that must fail; its error, shortened."""
    try:
        call()
    except Exception as error:  # gradio_client raises AppError / httpx errors
        return f"refused: {str(error).splitlines()[0][:90]}"
    return "ACCEPTED (should have been refused)"


if __name__ == "__main__":
    main()
