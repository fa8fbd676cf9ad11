"""Benchmark: resident memory of the app's process over many /predict calls with a real checkpoint.

    python benchmarks/app_memory.py [--checkpoint PATH] [--calls 100] [IMAGE ...]

Serves the app in this process on 127.0.0.1, calls /predict through gradio_client with the images in
turn (default: two CamVid val images, else the synthetic asset), and prints the growth of the resident
set after a 5-call warm-up, every 25 calls. (tests/test_app_api.py checks the same on a tiny model.)
"""
from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CAMVID_VAL = ROOT.parent / "shared/data/camvid/val"
DEFAULT_IMAGES = [CAMVID_VAL / "0016E5_07959.png", CAMVID_VAL / "0016E5_07961.png"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()

    import psutil
    from gradio_client import Client, handle_file

    from app.runtime import configure_torch
    from app.ui import build_demo, serve
    from dovit import Predictor

    configure_torch()
    images = args.images or [p for p in DEFAULT_IMAGES if p.exists()] or [ROOT / "assets/synthetic_street.png"]
    demo = build_demo(Predictor.from_checkpoint(args.checkpoint))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve(demo, host="127.0.0.1", port=port, block=False)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        process = psutil.Process()
        for index in range(5):
            client.predict(handle_file(images[index % len(images)]), 0.95, api_name="/predict")
        before = process.memory_info().rss
        print(f"checkpoint: {args.checkpoint or 'shipped default'}, images: {', '.join(p.name for p in images)}")
        print(f"resident set after warm-up: {before / 2**20:.0f} MB")
        for index in range(args.calls):
            xi = 0.90 + (index % 100) / 1000
            client.predict(handle_file(images[index % len(images)]), xi, api_name="/predict")
            if (index + 1) % 25 == 0 or index + 1 == args.calls:
                growth = (process.memory_info().rss - before) / 2**20
                print(f"after {index + 1} calls: {growth:+.1f} MB", flush=True)
    finally:
        demo.close()


if __name__ == "__main__":
    main()
