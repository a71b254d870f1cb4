"""Search in a real browser: titles appear as you type, a facet narrows the results, "Tried before" on a new
initiative."""
from __future__ import annotations

import pytest

from conftest import browser_login

pytestmark = pytest.mark.browser


@pytest.fixture
def district(make_page):
    make_page("Writing assessment", kind="initiative", tags=["writing"],
              fields={"status": "ended", "started": "2002", "ended": "2004", "ended_reason": "assumed-failed"},
              body="Teachers built rubrics and scored writing samples together.")
    make_page("Writing scoring days", kind="routine", tags=["writing"], body="Each spring teachers score writing.")
    make_page("Writing coaches", kind="community", tags=["writing"], body="Coaches who support writing teachers.")


def test_search_as_you_type_then_follow_a_facet(live_server, browser_page, district):
    page = browser_page
    browser_login(page, live_server, "reader")
    page.goto(live_server.url("/"))
    box = page.locator("#site-search-q")
    box.click()
    box.type("writing", delay=40)
    options = page.locator("#site-search-suggestions [role=option]")
    options.first.wait_for()
    assert options.count() == 3
    assert box.get_attribute("aria-expanded") == "true"
    box.press("ArrowDown")
    assert options.first.get_attribute("aria-selected") == "true"
    box.press("Escape")
    assert page.locator("#site-search-suggestions").is_hidden()

    box.press("Enter")  # no option chosen: the form searches
    page.wait_for_url("**/search?q=writing")
    assert page.locator(".result").count() == 3
    page.click(".facet--kind a:has-text('Routines')")
    page.wait_for_url("**kind=routine**")
    assert page.locator(".result").count() == 1
    assert "Writing scoring days" in page.inner_text(".result-list")

    box = page.locator("#site-search-q")
    box.fill("")
    box.type("coach", delay=40)
    page.locator("#site-search-suggestions [role=option]").first.wait_for()
    box.press("ArrowDown")
    box.press("Enter")
    page.wait_for_url("**/wiki/writing-coaches")


def test_new_initiative_form_shows_what_was_tried_before(live_server, browser_page, district):
    page = browser_page
    browser_login(page, live_server, "contributor")
    page.goto(live_server.url("/new?kind=initiative"))
    page.fill("#title", "District-wide writing assessment")
    box = page.locator("#tried-before-box")
    box.locator("a", has_text="Writing assessment").wait_for()
    assert "assumed failed" in box.inner_text()
