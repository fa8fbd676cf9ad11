"""Real browser: the model picker switches the tab's model (header, ξ, legend) and leaves another tab's
alone."""

import pytest
import torch
from app_driver import STREET, chromium, open_app, require_browser, serve_on_loopback, upload

require_browser()



@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    import dovit
    from app.models import ModelShelf
    from app.ui import build_demo

    root = tmp_path_factory.mktemp("checkpoints")
    for name, xi, classes in (("first", 0.9, ["road", "sky", "car"]), ("second", 0.8, ["lane", "cloud",
                                                                                       "bus"])):
        torch.manual_seed(len(name))
        model = dovit.build_model("vit_tiny_patch16_224", num_classes=3, input_size=(64, 96),
                                  decoder_channels=16,
                                  default_xi=xi)
        model.config.class_names = classes
        dovit.save_checkpoint(model, root / name)
    default = dovit.Predictor.from_checkpoint(root / "first")
    demo = build_demo(default, examples_dir="", models=ModelShelf.build(default, root / "first", root=root))
    yield serve_on_loopback(demo)
    demo.close()


def test_picking_a_model_switches_this_tab_only(app_url):
    with chromium() as browser:
        page, other = open_app(browser, app_url), open_app(browser, app_url)
        upload(page, STREET)
        page.locator("#model input").click()
        page.get_by_role("option", name="second").click()
        page.wait_for_function("document.querySelector('#header').innerText.includes('default ξ = 0.8')")
        page.wait_for_function("document.querySelector('#xi-number input').value === '0.8'")
        page.locator("#view-tabs").get_by_role("tab", name="Segmentation", exact=True).click()
        page.wait_for_function("document.querySelector('#legend').innerText.includes('lane')")
        assert "default ξ = 0.9" in other.inner_text("#header")
        upload(other, STREET)
        other.locator("#view-tabs").get_by_role("tab", name="Segmentation", exact=True).click()
        other.wait_for_function("document.querySelector('#legend').innerText.includes('road')")
