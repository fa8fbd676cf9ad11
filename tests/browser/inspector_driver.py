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
IMAGE_LOADED_JS = """(selector) => {
    const image = document.querySelector(selector + ' img');
    return Boolean(image && image.complete && image.naturalWidth > 0
                   && image.getBoundingClientRect().width > 0);
}"""
PANEL_SHOWS_JS = """([row, col]) => {
    const panel = document.querySelector('#inspector-panel');
    return panel && panel.innerText.includes(`Token row ${row}, col ${col}`)
        && document.querySelector('#inspect-row input').value === String(row)
        && document.querySelector('#inspect-col input').value === String(col);
}"""


def click_token(page, selector: str, row: int, col: int, patch: int = 16,
                working_size: tuple[int, int] | None = None,
                view_size: tuple[int, int] | None = None) -> None:
    """Click the centre of token (row, col) of the view image in ``selector``, a view of a photo the model saw
    at ``working_size`` = (H, W) (a last row/column cut short by the image's edge is clicked in its part),
    drawn at ``view_size`` (None: at the working size; then working_size may be None too)."""
    height, width = working_size or (float("inf"), float("inf"))
    y = (row * patch + min((row + 1) * patch, height)) / 2
    x = (col * patch + min((col + 1) * patch, width)) / 2
    if view_size is not None:  # the studio draws its views at the photo's display size
        y, x = y * view_size[0] / height, x * view_size[1] / width
    page.locator(f"{selector} img").scroll_into_view_if_needed()
    # A view image that is still loading has naturalWidth 0, and the position would be NaN (seen once in CI).
    page.wait_for_function(IMAGE_LOADED_JS, arg=selector)
    page.mouse.click(*page.evaluate(PIXEL_POSITION_JS, [selector, x, y]))


def wait_for_token(page, row: int, col: int) -> None:
    """Wait until the inspector's panel and its row/col boxes show token (row, col)."""
    page.wait_for_function(PANEL_SHOWS_JS, arg=[row, col])
