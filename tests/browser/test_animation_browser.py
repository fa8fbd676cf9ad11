"""Real browser: "Play the token pass" shows an animated GIF with a frame per group at least, and the
Halting depth tab draws the halting-by-class bars; axe-core finds nothing critical or serious on either."""
import io

from app_driver import STREET, chromium, open_app, require_browser, upload
from test_accessibility_browser import axe_source, serious_violations  # noqa: F401 (a fixture)

require_browser()


def test_play_the_token_pass_and_halting_by_class(tiny_app_url, tiny_model, axe_source):  # noqa: F811
    from PIL import Image

    with chromium() as browser:
        page = open_app(browser, tiny_app_url)
        upload(page, STREET)
        page.get_by_role("tab", name="Token pass").click()
        page.click("#play-pass")
        page.wait_for_function("(document.querySelector('#pass-animation img') || {}).src?.includes('.gif')")
        source = page.get_attribute("#pass-animation img", "src")
        gif = Image.open(io.BytesIO(page.request.get(source).body()))
        assert gif.format == "GIF" and gif.n_frames >= len(tiny_model.group_bounds) + 1
        assert serious_violations(page, axe_source) == []
        page.get_by_role("tab", name="Halting depth").click()
        page.wait_for_selector("#halting-by-class .plot-container", state="visible")
        assert "Halting by class" in page.inner_text("#halting-by-class")
        assert serious_violations(page, axe_source) == []
