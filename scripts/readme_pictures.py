"""Draw the README's pictures from the code: ``python scripts/readme_pictures.py`` (a minute or two on 2
cores).

- ``docs/app.png``: the studio on the shipped default model and the project's own example (assets/), served on
  127.0.0.1 and photographed in Debian's Chromium (Playwright; never downloads a browser).
- ``docs/lesson.png``: step 4 of the Lesson tab (``?lesson=4``) on the same example.
- ``docs/token_pass.gif``: the animated token pass of that example at the default ξ (``dovit.viz.animation``,
  what ``python -m dovit.animate`` writes).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import PIL.Image

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "browser")]  # the browser driver the tests use

from app_driver import (  # noqa: E402
    chromium,
    open_app,
    serve_on_loopback,
    upload,
    wait_for_lesson_picture,
    wait_for_lesson_step,
)

from app.ui import build_demo  # noqa: E402
from dovit import Predictor, animate  # noqa: E402

EXAMPLE = ROOT / "assets" / "synthetic_street.png"


def save_small_png(path: Path) -> None:
    """256 colours without dithering: a third of the size, the same look for a UI picture."""
    PIL.Image.open(path).convert("RGB").quantize(256, dither=PIL.Image.Dither.NONE).save(path, optimize=True)


def draw_animation(out: Path) -> Path:
    """What ``python -m dovit.animate`` writes for the example (3 frames per fade: a smaller GIF)."""
    if animate.main([str(EXAMPLE), "--out", str(out), "--fade-frames", "3"]) != 0:
        raise SystemExit(f"could not draw {out}")
    return out


def photograph_studio(predictor: Predictor, docs: Path) -> list[Path]:
    app = build_demo(predictor, examples_dir=None)
    url = serve_on_loopback(app)
    try:
        with chromium() as browser:
            page = open_app(browser, url, width=1400, height=1000)
            upload(page, EXAMPLE)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(docs / "app.png"), full_page=True)
            page = open_app(browser, url + "?lesson=4", width=1100, height=1000)
            wait_for_lesson_step(page, 4)
            wait_for_lesson_picture(page)
            page.wait_for_timeout(1000)
            page.locator("#lesson-tab").screenshot(path=str(docs / "lesson.png"))
    finally:
        app.close()
    for path in (docs / "app.png", docs / "lesson.png"):
        save_small_png(path)
    return [docs / "app.png", docs / "lesson.png"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, default=ROOT / "docs",
                        help="where the pictures go (default docs/)")
    parser.add_argument("--skip-browser", action="store_true", help="only the animation (no Chromium needed)")
    args = parser.parse_args()
    predictor = Predictor.from_checkpoint()
    written = [draw_animation(args.docs / "token_pass.gif")]
    if not args.skip_browser:
        written += photograph_studio(predictor, args.docs)
    for path in written:
        print(f"{path}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
