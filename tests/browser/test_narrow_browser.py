"""Real browser: on a 390 px wide phone screen the studio is one column and never scrolls sideways."""
from app_driver import STREET, chromium, open_app, require_browser, upload

require_browser()


def scrolls_sideways(page) -> bool:
    return page.evaluate("() => { const d = document.documentElement;"
                         " return d.scrollWidth > d.clientWidth || document.body.scrollWidth > "
                         "d.clientWidth; }")


def test_one_column_without_sideways_scroll_at_390_px(tiny_app_url):
    with chromium() as browser:
        page = open_app(browser, tiny_app_url, width=390, height=844)
        assert not scrolls_sideways(page)
        upload(page, STREET)
        assert not scrolls_sideways(page)
        image, readouts = (
            page.locator("#input-image").bounding_box(),
            page.locator("#readouts").bounding_box(),
        )
        assert readouts["y"] >= image["y"] + image["height"]  # stacked, not side by side
        assert image["x"] + image["width"] <= 390 and readouts["x"] + readouts["width"] <= 390
