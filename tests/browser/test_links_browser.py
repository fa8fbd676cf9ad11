"""Real browser: a deep link reopens example, ξ, tab and inspected token; Copy link writes them back."""
from app_driver import chromium, open_app, require_browser

require_browser()


def test_a_link_reopens_the_view_and_copy_link_gives_it_back(tiny_app_url):
    with chromium() as browser:
        page = open_app(browser, tiny_app_url + "?example=0&xi=0.95&tab=confidence&token=1,2")
        page.wait_for_function("document.querySelector('#readouts').innerText.includes('ξ = 0.95')")
        assert page.locator("#view-tabs [role=tab][aria-selected=true]").inner_text().strip() == "Confidence"
        assert page.input_value("#inspect-row input") == "1" and page.input_value("#inspect-col input") == "2"
        page.click("#copy-link")
        page.wait_for_function("document.querySelector('#page-link textarea').value.includes('example=0')")
        link = page.input_value("#page-link textarea")
        assert link == tiny_app_url + "?example=0&xi=0.95&tab=confidence&token=1,2"
