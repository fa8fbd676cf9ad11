"""Real browser (Debian Chromium, Playwright): load an example, click tokens on two views and move with an
arrow key, and the inspector's panel follows; the Policies tab runs and shows a mask per policy."""
from app_driver import chromium, open_app, require_browser
from inspector_driver import click_token, wait_for_token

# The served tiny checkpoint: test_app_browser's fixture.
from test_app_browser import app_url  # noqa: F401

require_browser()

POLICY_MASKS_SHOWN = """() => [...document.querySelectorAll('[id^=policy-mask-] img')]
    .filter(image => image.complete && image.naturalWidth > 0).length"""


def test_clicked_tokens_fill_the_panel_and_the_policies_tab_shows_six_masks(app_url, tiny_model):
    from pathlib import Path

    import cv2

    from app.analysis import display_size
    from dovit import Predictor

    example = Path(__file__).resolve().parents[2] / "assets" / "synthetic_street.png"  # the gallery's first
    photo = cv2.imread(str(example)).shape[:2]
    working = Predictor(tiny_model).working_size(image_size=photo)  # 68 x 91: a 5 x 6 grid
    sizes = dict(working_size=working, view_size=display_size(photo, working))  # views at the photo's size
    with chromium() as browser:
        page = open_app(browser, app_url)
        page.locator("button.gallery-item").first.click()  # the examples gallery: assets/ first
        page.wait_for_function("document.querySelector('#readouts').innerText.includes('GFLOPs')")
        click_token(page, "#token-group-2", 2, 3, **sizes)
        wait_for_token(page, 2, 3)
        panel = page.inner_text("#inspector-panel")
        assert "ξ = 0.95" in panel and "DoViT class" in panel and "decoder" in panel
        page.keyboard.press("ArrowRight")
        wait_for_token(page, 2, 4)
        page.get_by_role("tab", name="Confidence").click()
        click_token(page, "#confidence-1", 1, 5, **sizes)  # the last column, left of the colour bar
        wait_for_token(page, 1, 5)
        page.get_by_role("tab", name="Policies").click()
        page.locator("#policies-run").click()
        page.wait_for_function("document.querySelector('#policies-table').innerText.includes('6/6 policies')")
        page.wait_for_function(f"() => ({POLICY_MASKS_SHOWN})() === 6")
        table = page.inner_text("#policies-table")
        for name in ("confidence", "random", "topk", "dtop", "oracle", "shallow"):
            assert name in table
        click_token(page, "#policy-stops-random", 3, 0, **sizes)  # a policy's stop map is a view too
        wait_for_token(page, 3, 0)
