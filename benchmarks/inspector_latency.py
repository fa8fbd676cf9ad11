"""Benchmark: token inspector, click on a view -> side panel updated, in a real browser.

    python -m benchmarks.inspector_latency [--checkpoint PATH] [--image PNG] [--rounds 3] [--clicks 8]

Serves the app on 127.0.0.1 (a free port, in this process), opens Debian Chromium with Playwright,
uploads the image, then for each round clicks ``--clicks`` random tokens on each of three views (a token
group, a confidence map with its colour bar, the halting map; the view order rotates per round; below
the top three token rows, which the view's caption and buttons cover) and
presses an arrow key ``--clicks`` times. A wait runs from the click (key press) until the panel's text and
row/col boxes show the new token ("text") and until the panel's token marker image has loaded too
("marker"): the queue, the handler (no forward: it reads the session's cached trace), transfer and the
browser's rendering. Then times the handler alone in this process (``TokenInspector.panel``) on the same
image. Prints Markdown rows with median, p10, p90, min and max, and the machine's load average.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
from pathlib import Path

import numpy as np

from dovit.core.stopwatch import Stopwatch
from dovit.data import data_root_beside

ROOT = Path(__file__).resolve().parent.parent  # the checkout, for its data files only
DEFAULT_IMAGE = data_root_beside(ROOT) / "val" / "0016E5_07959.png"
VIEWS = (("Token pass", "#token-group-3"), ("Confidence", "#confidence-2"), ("Halting depth", "#halting-map"))
OVERLAID_ROWS = 3  # a view's caption and buttons cover its top rows of tokens: clicks go below them
MARKER_SRC_JS = "() => (document.querySelector('#inspector-marker img') || {}).src || ''"
MARKER_LOADED_JS = """previous => { const image = document.querySelector('#inspector-marker img');
    return image && image.src !== previous && image.complete && image.naturalWidth > 0; }"""


def row(label: str, waits: list[float], digits: int = 0) -> str:
    ordered = sorted(waits)
    p10, p90 = ordered[int(0.1 * (len(ordered) - 1))], ordered[int(0.9 * (len(ordered) - 1))]
    values = (statistics.median(waits), p10, p90, ordered[0], ordered[-1])
    return f"| {label} | {len(waits)} | " + " | ".join(f"{v:.{digits}f}" for v in values) + " |"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped one)")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clicks", type=int, default=8, help="clicks per view and arrow presses per round")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def browser_waits(url: str, image: Path, args: argparse.Namespace, patch: int, size: tuple[int, int],
                  grid: tuple[int, int]) -> tuple[dict, dict]:
    """Milliseconds from a click or arrow key to the panel's text, and to its marker image, per kind."""
    from playwright.sync_api import sync_playwright

    from tests.browser.app_driver import launch_browser, open_app, upload
    from tests.browser.inspector_driver import click_token, wait_for_token

    rng = np.random.default_rng(args.seed)
    text_waits: dict[str, list[float]] = {}
    marker_waits: dict[str, list[float]] = {}
    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        page = open_app(browser, url)
        upload(page, image)

        def timed(kind: str, act, new_token: tuple[int, int], warm: bool = False) -> None:
            previous = page.evaluate(MARKER_SRC_JS)
            watch = Stopwatch()
            act()
            wait_for_token(page, *new_token)
            text_ms = watch.ms()
            page.wait_for_function(MARKER_LOADED_JS, arg=previous)
            if not warm:
                text_waits.setdefault(kind, []).append(text_ms)
                marker_waits.setdefault(kind, []).append(watch.ms())

        def click(where: str, at: tuple[int, int]):
            return lambda: click_token(page, where, *at, patch, size)

        token = (0, 0)
        for warm in range(2):  # the first clicks open the panel and warm the browser's caches
            token = (warm + 1, warm + 1)
            timed("warm", click(VIEWS[0][1], token), token, warm=True)
        for round_index in range(args.rounds):
            for tab, selector in VIEWS[round_index % 3:] + VIEWS[:round_index % 3]:
                page.get_by_role("tab", name=tab, exact=True).click()
                page.wait_for_timeout(300)  # switching tabs is not part of a click
                for _ in range(args.clicks):
                    new = token
                    while new == token:
                        new = (int(rng.integers(OVERLAID_ROWS, grid[0])), int(rng.integers(grid[1])))
                    token = new
                    timed(f"click on {tab}", click(selector, token), token)
            page.locator("#readouts").click()  # focus outside any field: arrows go to the inspector
            for _ in range(args.clicks):
                key, step = [("ArrowRight", (0, 1)), ("ArrowLeft", (0, -1)),
                             ("ArrowDown", (1, 0)), ("ArrowUp", (-1, 0))][int(rng.integers(4))]
                new = (min(max(token[0] + step[0], 0), grid[0] - 1),
                       min(max(token[1] + step[1], 0), grid[1] - 1))
                if new != token:
                    token = new
                    timed("arrow key", lambda pressed=key: page.keyboard.press(pressed), token)
        browser.close()
    return text_waits, marker_waits


def handler_times(app, image: Path, size: tuple[int, int], grid: tuple[int, int]) -> list[float]:
    """The handler alone, in this process, on the same image and ξ: 60 panels, milliseconds each."""
    from app.analysis import to_working_size
    from app.images import load_image_file
    from app.state import Session
    from app.tabs.inspector import TokenInspector

    rgb = load_image_file(image, [image.parent]).rgb
    session = Session(image=rgb, size=size, working=to_working_size(rgb, size))
    app.studio.render(session, app.studio.config.default_xi, 0.5)
    handlers = TokenInspector(app.studio)
    handler_ms = []
    for index in range(60):
        watch = Stopwatch()
        handlers.panel(session, index % grid[0], (7 * index) % grid[1])
        handler_ms.append(watch.ms())
    return handler_ms


def main() -> None:
    args = parse_args()
    from app.runtime import configure_torch
    from app.ui import build_demo, serve
    from dovit import Predictor

    threads = configure_torch(args.threads)
    image = args.image if args.image.exists() else ROOT / "assets/synthetic_street.png"
    load_before = os.getloadavg()
    app = build_demo(Predictor.from_checkpoint(args.checkpoint))
    patch, size = app.studio.patch, app.studio.default_size
    grid = tuple(-(-side // patch) for side in size)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve(app, host="127.0.0.1", port=port, block=False)
    try:
        text_waits, marker_waits = browser_waits(f"http://127.0.0.1:{port}/", image, args, patch, size, grid)
        handler_ms = handler_times(app, image, size, grid)
    finally:
        app.close()
    load_after = os.getloadavg()
    print(f"checkpoint: {args.checkpoint or 'shipped default'}, image {image.name}, grid "
          f"{grid[0]}x{grid[1]}, torch threads {threads}, {os.cpu_count()} cores; load average (1/5/15 min) "
          f"before {' '.join(f'{v:.1f}' for v in load_before)}, after "
          f"{' '.join(f'{v:.1f}' for v in load_after)}")
    print("| click -> panel text and row/col updated in Chromium | n | median ms | p10 | p90 | min | max |")
    print("|---|---|---|---|---|---|---|")
    for kind, waits in text_waits.items():
        print(row(kind, waits))
    print(row("**all**", [w for waits in text_waits.values() for w in waits]))
    print(row("all, until the token marker image has loaded too",
              [w for ws in marker_waits.values() for w in ws]))
    print(row("handler alone (TokenInspector.panel, in process)", handler_ms[10:], digits=2))


if __name__ == "__main__":
    main()
