"""Real browser: the Lesson tab walks through its steps with Next and Back (mouse and keyboard), ``?lesson=3``
opens step 3 on an image, axe-core finds nothing critical or serious there, and it reads on a 390 px phone."""
from app_driver import chromium, open_app, require_browser, wait_for_lesson_picture, wait_for_lesson_step
from test_accessibility_browser import axe_source, serious_violations  # noqa: F401 (a fixture)
from test_narrow_browser import scrolls_sideways

from app.lesson import STEPS

require_browser()


def selected_tab(page) -> str:
    return page.locator("#view-tabs [role=tab][aria-selected=true]").inner_text().strip()


def test_a_lesson_link_opens_its_step_on_an_image(tiny_app_url):
    with chromium() as browser:
        page = open_app(browser, tiny_app_url + "?lesson=3")
        heading = wait_for_lesson_step(page, 3)
        assert heading.startswith(f"Step 3 of {len(STEPS)}: ") and selected_tab(page) == "Lesson"
        assert "ξ" in page.inner_text("#lesson-text")
        wait_for_lesson_picture(page)
        page.click("#copy-link")
        page.wait_for_function("document.querySelector('#page-link textarea').value.includes('lesson=3')")


def test_next_and_back_walk_every_step_by_mouse_and_keyboard(tiny_app_url):
    with chromium() as browser:
        page = open_app(browser, tiny_app_url + "?lesson=1")
        headings = [wait_for_lesson_step(page, 1)]
        assert page.locator("#lesson-back").is_disabled()
        for number in range(2, len(STEPS) + 1):
            page.click("#lesson-next")
            headings.append(wait_for_lesson_step(page, number))
        assert len(set(headings)) == len(STEPS) >= 6
        assert page.locator("#lesson-next").is_disabled()
        page.wait_for_selector("#lesson-plot .js-plotly-plot")  # the last step's trade-off curve
        page.locator("#lesson-back").focus()
        page.keyboard.press("Enter")
        assert wait_for_lesson_step(page, len(STEPS) - 1) == headings[-2]
        page.keyboard.press("Shift+Tab")  # from Back to the step before it in the tab order, then back again
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        assert wait_for_lesson_step(page, len(STEPS) - 2) == headings[-3]


def test_no_critical_or_serious_violation_in_the_lesson(tiny_app_url, axe_source):  # noqa: F811
    with chromium() as browser:
        page = open_app(browser, tiny_app_url + "?lesson=4")
        wait_for_lesson_step(page, 4)
        wait_for_lesson_picture(page)
        assert serious_violations(page, axe_source) == []


def test_the_lesson_reads_on_a_390_px_phone(tiny_app_url):
    with chromium() as browser:
        page = open_app(browser, tiny_app_url + "?lesson=2", width=390, height=844)
        wait_for_lesson_step(page, 2)
        wait_for_lesson_picture(page)
        assert not scrolls_sideways(page)
        for element in ("#lesson-heading", "#lesson-text", "#lesson-picture", "#lesson-next"):
            box = page.locator(element).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, element
