"""Real browser: the Compare tab shows two ξ side by side under an image slider, with their costs."""
from app_driver import STREET, chromium, open_app, require_browser, upload

require_browser()


def test_compare_two_xi_under_an_image_slider(tiny_app_url):
    with chromium() as browser:
        page = open_app(browser, tiny_app_url)
        upload(page, STREET)
        page.get_by_role("tab", name="Compare").click()
        page.click("#compare-run")
        page.wait_for_function("document.querySelector('#compare-table').innerText.includes('ξ = 1')")
        for slider in ("#compare-masks", "#compare-tokens"):
            page.wait_for_function(f"document.querySelectorAll('{slider} img').length >= 2")
        assert "agreement with dense" in page.inner_text("#compare-table")
