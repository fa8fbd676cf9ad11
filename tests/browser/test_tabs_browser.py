"""Real browser: every view tab's button is on the page, none behind gradio's "More tabs" menu: on one row at
1280 and 1920 px, wrapped onto more rows with the token inspector open or in an 800 px window; Video and
Data set open their panels."""
import pytest
from app_driver import chromium, open_app, require_browser, serve_on_loopback

require_browser()

TAB_LABELS = ("Token pass", "Confidence", "Segmentation", "Halting depth", "Dense vs DoViT", "ξ sweep",
              "Policies", "What the views teach", "Video", "Data set", "Live")
CHECK_MS = 5_000  # each tab is on the page once it loaded; a hidden one should fail fast, not after 90 s


@pytest.fixture(scope="module")
def app_url(tiny_model, tmp_path_factory):
    import dovit
    from app.ui import build_demo

    checkpoint = dovit.save_checkpoint(tiny_model, tmp_path_factory.mktemp("checkpoint"))
    demo = build_demo(dovit.Predictor.from_checkpoint(checkpoint), examples_dir="")
    yield serve_on_loopback(demo)
    demo.close()


def tab_rows(page) -> int:
    """Assert that each view tab has a visible button that a click would reach and that no overflow menu
    or horizontal scroll hides any; the number of rows the buttons take."""
    from playwright.sync_api import expect

    tabs = page.locator("#view-tabs")
    tops = set()
    for label in TAB_LABELS:
        button = tabs.get_by_role("tab", name=label, exact=True)
        expect(button,
               f"no visible {label!r} tab button (in a 'More tabs' menu?)").to_be_visible(timeout=CHECK_MS)
        button.click(trial=True, timeout=CHECK_MS)  # visible, enabled, and the topmost element at its centre
        box = button.bounding_box()
        assert 0 <= box["x"] and box["x"] + box["width"] <= page.viewport_size["width"], (
            f"{label} is off-screen"
        )
        tops.add(round(box["y"]))
    expect(tabs.get_by_role("button", name="More tabs")).to_be_hidden(timeout=CHECK_MS)
    tablist = tabs.get_by_role("tablist")
    assert tablist.evaluate("list => list.scrollWidth <= list.clientWidth"), "the tab row scrolls sideways"
    return len(tops)


# gradio lays the tabs out again on a later animation frame after a resize: wait until they have wrapped
WRAPPED = """() => new Set([...document.querySelectorAll('#view-tabs [role=tab]')]
    .filter(button => button.offsetParent !== null)
    .map(button => Math.round(button.getBoundingClientRect().top))).size >= 2"""


def test_every_view_tab_is_visible_and_video_and_data_set_open(app_url):
    with chromium() as browser:
        for width in (1280, 1920):
            page = open_app(browser, app_url, width=width, height=800)
            assert tab_rows(page) == 1, f"at {width} px the tabs should fit on one row"
            page.locator("#view-tabs").get_by_role("tab", name="Video", exact=True).click()
            page.locator("#video-input").wait_for(state="visible", timeout=CHECK_MS)
            page.locator("#view-tabs").get_by_role("tab", name="Data set", exact=True).click()
            page.locator("#dataset-folder").wait_for(state="visible", timeout=CHECK_MS)
            assert not page.locator("#video-input").is_visible()
            if width == 1280:  # the token inspector (420 px, right) leaves the tabs ~800 px: they wrap
                tablist = page.locator("#view-tabs [role=tablist]")
                closed_width = tablist.evaluate("list => list.clientWidth")
                page.get_by_role("button", name="Toggle Sidebar").click()
                page.wait_for_function("w => document.querySelector('#view-tabs [role=tablist]').clientWidth "
                                       "< w",
                                       arg=closed_width - 200)
                page.wait_for_function(WRAPPED, timeout=CHECK_MS)
                assert tab_rows(page) >= 2
            page.close()
        page = open_app(browser, app_url, width=800, height=800)
        page.wait_for_function(WRAPPED, timeout=CHECK_MS)
        assert tab_rows(page) >= 2
        page.close()
