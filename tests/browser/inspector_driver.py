"""Driving the token inspector in Chromium (the browser test and benchmarks.inspector_latency): click a
token of a view image, wait for the side panel to show it."""
from __future__ import annotations

# The page position of pixel (x, y) of the image inside ``selector``, as gradio's ImagePreview maps a click
# back (the image is scaled to fit, at most 1:1, and centred in its box).
PIXEL_POSITION_JS = """([selector, x, y]) => {
    const image = document.querySelector(selector + ' img');
    const box = image.getBoundingClientRect();
    const scale = Math.min(box.width / image.naturalWidth, box.height / image.naturalHeight, 1);
    const left = box.left + (box.width - image.naturalWidth * scale) / 2;
    const top = box.top + (box.height - image.naturalHeight * scale) / 2;
    return [left + x * scale, top + y * scale];
}"""
PANEL_SHOWS_JS = """([row, col]) => {
    const panel = document.querySelector('#inspector-panel');
    return panel && panel.innerText.includes(`Token row ${row}, col ${col}`)
        && document.querySelector('#inspect-row input').value === String(row)
        && document.querySelector('#inspect-col input').value === String(col);
}"""


def click_token(page, selector: str, row: int, col: int, patch: int = 16, scale: float = 1.0) -> None:
    """Click the centre pixel of token (row, col) of the view image in ``selector`` (an image shown at
    ``scale`` times the working size)."""
    page.locator(f"{selector} img").scroll_into_view_if_needed()
    x, y = page.evaluate(PIXEL_POSITION_JS, [selector, (col + 0.5) * patch * scale, (row + 0.5) * patch * scale])
    page.mouse.click(x, y)


def wait_for_token(page, row: int, col: int) -> None:
    """Wait until the inspector's panel and its row/col boxes show token (row, col)."""
    page.wait_for_function(PANEL_SHOWS_JS, arg=[row, col])
