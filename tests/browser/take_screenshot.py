"""Screenshot of the running app for the README: ``python tests/browser/take_screenshot.py URL IMAGE OUT``.

Uploads IMAGE, sets ξ (--xi), runs the ξ sweep, and saves a full-page PNG; --tabs also saves one
screenshot per view tab next to OUT (OUT-stem_<tab>.png) for reviewing the views.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import PIL.Image
from app_driver import launch_browser, open_app, readouts, upload
from playwright.sync_api import sync_playwright

TABS = ("Token pass", "Confidence", "Segmentation", "Halting depth", "Dense vs DoViT", "ξ sweep")


def set_xi(page, xi: float) -> None:
    box = page.locator("#xi-number input")
    box.fill(str(xi))
    box.press("Enter")
    page.wait_for_function("xi => document.querySelector('#readouts').innerText.includes('ξ = ' + xi)",
                           arg=f"{xi:g}")
    page.wait_for_timeout(800)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("image", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--xi", type=float, default=None, help="ξ to show (default: the checkpoint's)")
    parser.add_argument("--tab", default="Token pass", help="tab open in the main screenshot")
    parser.add_argument("--tabs", action="store_true", help="also save one screenshot per tab")
    parser.add_argument("--palette", action="store_true",
                        help="save OUT with 256 colours (a third of the size)")
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        page = open_app(browser, args.url, width=1400, height=1000)
        upload(page, args.image)
        if args.xi is not None:
            set_xi(page, args.xi)
        page.get_by_role("tab", name="ξ sweep").click()
        page.locator("#sweep-button").click()
        page.wait_for_selector("#sweep-plot .js-plotly-plot", timeout=300_000)
        page.get_by_role("tab", name=args.tab).click()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(args.out), full_page=True)
        if args.palette:
            image = PIL.Image.open(args.out).convert("RGB")
            image.quantize(256, dither=PIL.Image.Dither.NONE).save(args.out, optimize=True)
        if args.tabs:
            for tab in TABS:
                page.get_by_role("tab", name=tab).click()
                page.wait_for_timeout(1200)
                name = tab.lower().replace(" ", "_").replace("ξ", "xi")
                page.screenshot(path=str(args.out.with_name(f"{args.out.stem}_{name}.png")), full_page=True)
        print(readouts(page))
        browser.close()


if __name__ == "__main__":
    main()
