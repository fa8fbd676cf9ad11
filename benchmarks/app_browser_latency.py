"""Benchmark: what a user waits for, in a real browser: ξ entered -> every view repainted.

    python -m benchmarks.app_browser_latency [--checkpoint PATH] [--image PNG] [--repeats 20]

Serves the app on 127.0.0.1 (a free port, in this process), opens Debian Chromium with Playwright,
uploads the image, then repeatedly types a new ξ into the number box and presses Enter; the time runs
until the readouts show that ξ and every image on the page is decoded. That includes the queue,
the handler, encoding, transfer and the browser's rendering. Prints a Markdown row.
"""
from __future__ import annotations

import argparse
import socket
import statistics
from pathlib import Path

from dovit.core.stopwatch import Stopwatch
from dovit.data import data_root_beside

ROOT = Path(__file__).resolve().parent.parent  # the checkout, for its data files only
DEFAULT_IMAGE = data_root_beside(ROOT) / "val" / "0016E5_07959.png"
XIS = (0.91, 0.93, 0.95, 0.97, 0.98, 0.99)

# The readouts and every view arrive in one message; then wait until the browser has decoded the images.
WAIT_FOR_VIEWS = """xi => document.querySelector('#readouts').innerText.includes('ξ = ' + xi)
    && [...document.querySelectorAll('img')].every(image => image.complete)"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from app.runtime import configure_torch
    from app.ui import build_demo, serve
    from dovit import Predictor
    from tests.browser.app_driver import launch_browser, open_app, upload

    threads = configure_torch(args.threads)
    image = args.image if args.image.exists() else ROOT / "assets/synthetic_street.png"
    demo = build_demo(Predictor.from_checkpoint(args.checkpoint))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve(demo, host="127.0.0.1", port=port, block=False)
    waits = []
    try:
        with sync_playwright() as playwright:
            browser = launch_browser(playwright)
            page = open_app(browser, f"http://127.0.0.1:{port}/")
            upload(page, image)
            box = page.locator("#xi-number input")
            for index in range(args.repeats + 2):
                xi = XIS[index % len(XIS)]
                box.fill(f"{xi:g}")
                start = Stopwatch()
                box.press("Enter")
                page.wait_for_function(WAIT_FOR_VIEWS, arg=f"{xi:g}")
                if index >= 2:  # the first two warm the browser's caches
                    waits.append(start.ms())
            browser.close()
    finally:
        demo.close()
    print(f"checkpoint: {args.checkpoint or 'shipped default'}, image {image.name}, torch threads {threads}, "
          f"{len(waits)} ξ changes")
    print("| ξ entered -> readouts and views repainted in Chromium | median ms | p90 ms | min ms |")
    ordered = sorted(waits)
    print(f"| | {statistics.median(waits):.0f} | {ordered[int(0.9 * (len(ordered) - 1))]:.0f} | "
          f"{ordered[0]:.0f} |")


if __name__ == "__main__":
    main()
