"""Real browser: ξ is keyboard-operable (arrows, Home, End on the focused slider) and the views follow."""
from app_driver import STREET, chromium, open_app, require_browser, upload

require_browser()


def test_arrows_home_and_end_move_xi_and_the_readouts_follow(tiny_app_url):
    with chromium() as browser:
        page = open_app(browser, tiny_app_url)
        upload(page, STREET)
        slider = page.locator("#xi-slider input[type=range]")
        slider.focus()
        for key, xi in (("End", "1"), ("Home", "0"), ("ArrowRight", "0.003")):
            page.keyboard.press(key)
            # the views are redrawn at the new ξ (the readouts head every refresh)
            page.wait_for_function(f"document.querySelector('#readouts').innerText.startsWith('ξ = {xi} ·')")
            assert page.input_value("#xi-number input") == xi
