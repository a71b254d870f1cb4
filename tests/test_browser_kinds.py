"""Knowledge kinds in a real browser: the initiative form from first draft to its bar on the timeline, the
"before you end this initiative" review, "add another" rows, and the timeline on a phone."""
from __future__ import annotations

import pytest

from conftest import browser_login

pytestmark = pytest.mark.browser


def test_initiative_form_error_then_fix_then_find_its_bar_on_the_timeline(live_server, browser_page, make_page):
    make_page("Ana Ruiz", kind="leader", fields={"tenures": [{"role": "Superintendent", "from": "2009"}]})
    page = browser_page
    browser_login(page, live_server, "contributor")
    page.goto(live_server.url("/new?kind=initiative"))
    page.fill("#title", "Writing assessment pilot")
    page.select_option("select[name='f.status']", "active")
    page.fill("input[name='f.started']", "spring 2004")
    # Link fields suggest page titles as you type; the value kept is the page's address.
    page.locator("input[name='f.sponsors']").press_sequentially("Ana R")
    page.locator("#page-titles option[value='ana-ruiz']").wait_for(state="attached")
    assert page.locator("#page-titles option[value='ana-ruiz']").get_attribute("label") == "Ana Ruiz"
    page.fill("input[name='f.sponsors']", "ana-ruiz")
    page.fill("textarea[name='f.evidence']", "Teachers scored together.")
    page.click("#save-button")

    # The message sits next to the field, and everything typed is still there.
    error = page.locator("#field-started .field-error")
    error.wait_for()
    assert "not a date" in error.inner_text()
    assert page.locator("#form-errors a[href='#field-started']").inner_text() == "Started"
    assert page.input_value("#title") == "Writing assessment pilot"
    assert page.input_value("input[name='f.started']") == "spring 2004"
    assert page.input_value("input[name='f.sponsors'] >> nth=0") == "ana-ruiz"
    assert page.input_value("textarea[name='f.evidence']") == "Teachers scored together."
    assert page.input_value("select[name='f.status']") == "active"

    page.fill("input[name='f.started']", "2004-09")
    page.click("#save-button")
    page.wait_for_url("**/wiki/writing-assessment-pilot")
    assert page.locator(".field-panel .badge--active").inner_text().lower() == "active"
    assert page.locator(".field-panel a[href='/wiki/ana-ruiz']").inner_text() == "Ana Ruiz"

    page.click("nav.main-nav >> text=Timeline")
    page.wait_for_url("**/timeline")
    bar = page.locator("svg.timeline-svg a[data-slug='writing-assessment-pilot']")
    assert bar.count() == 1 and bar.is_visible()
    assert "Writing assessment pilot" in bar.locator("text").first.text_content()
    # Its details show on hover and on keyboard focus.
    bar.hover()
    detail = page.locator("#timeline-detail")
    assert "2004-09–today" in detail.inner_text() and "Status: active" in detail.inner_text()
    page.locator("svg.timeline-svg a[data-slug='ana-ruiz']").focus()
    assert "Superintendent" in detail.inner_text()
    # The table below the picture has the same item.
    assert page.locator("#timeline-table a[href='/wiki/writing-assessment-pilot']").count() == 1
    # And the bar links to the page.
    bar.click()
    page.wait_for_url("**/wiki/writing-assessment-pilot")


def test_ending_an_initiative_shows_the_review_first(live_server, browser_page, make_page):
    make_page("Scoring days", kind="routine", fields={"months": [3]})
    slug = make_page("District writing assessment", kind="initiative", as_user="contributor", fields={
        "status": "active", "started": "2003", "evidence": "Teachers loved it; it measured progress.",
        "experts": ["Grace Oduya"], "carried_by": ["scoring-days"]})
    make_page("Release time mattered", kind="lesson", body="Learned from [[district-writing-assessment]].")
    page = browser_page
    browser_login(page, live_server, "contributor")
    page.goto(live_server.url(f"/wiki/{slug}/edit"))
    page.select_option("select[name='f.status']", "ended")
    page.select_option("select[name='f.ended_reason']", "assumed-failed")
    page.fill("#comment", "New superintendent wants a new protocol")
    page.click("#save-button")

    review = page.locator("#before-ending")
    review.wait_for()
    text = review.inner_text()
    assert "Before you end this initiative" in text
    assert "Teachers loved it" in text and "Release time mattered" in text
    assert "Scoring days" in text and "Grace Oduya" in text
    assert "nobody checked" in text  # the "assumed failed" warning
    assert page.url.endswith(f"/wiki/{slug}/edit")  # not saved: still on the form
    api = page.request.get(live_server.url(f"/api/pages/{slug}")).json()
    assert api["fields"]["status"] == "active" and api["revision"] == 1

    page.click("#confirm-end")
    page.wait_for_url(f"**/wiki/{slug}")
    assert page.locator(".field-panel .badge--ended").count() == 1
    assert "assumed failed" in page.locator(".field-panel").inner_text()
    api = page.request.get(live_server.url(f"/api/pages/{slug}")).json()
    assert api["fields"]["ended_reason"] == "assumed-failed" and api["revision"] == 2


def test_add_another_tenure_row_in_the_browser(live_server, browser_page):
    page = browser_page
    browser_login(page, live_server, "contributor")
    page.goto(live_server.url("/new?kind=leader"))
    page.fill("#title", "Grace Oduya")
    page.fill("input[name='f.tenures.0.role']", "Assessment coordinator")
    page.fill("input[name='f.tenures.0.from']", "2001")
    page.fill("input[name='f.tenures.0.to']", "2006")
    page.click("button[data-add-row='tenures']")
    second = page.locator("input[name='f.tenures.1.role']")
    second.wait_for()
    assert page.evaluate("document.activeElement.name") == "f.tenures.1.role"  # focus moved into the new row
    assert page.input_value("input[name='f.tenures.1.from']") == ""
    second.fill("Director of assessment")
    page.fill("input[name='f.tenures.1.from']", "2006")
    page.select_option("select[name='f.tenures.1.hired']", "internal")
    page.click("#save-button")
    page.wait_for_url("**/wiki/grace-oduya")
    tenures = page.locator(".field-panel .tenures li")
    assert tenures.count() == 2
    assert "Director of assessment" in tenures.nth(1).inner_text()
    page.goto(live_server.url("/timeline?role=Director+of+assessment"))
    assert page.locator("svg.timeline-svg a[data-slug='grace-oduya']").count() == 1


def test_timeline_fits_a_phone_and_the_picture_scrolls_in_its_box(live_server, chromium, make_page):
    make_page("Ana Ruiz", kind="leader", fields={"tenures": [{"role": "Superintendent", "from": "2009",
                                                              "to": "2014"}]})
    make_page("Writing assessment", kind="initiative", fields={"status": "ended", "ended_reason": "funding",
                                                               "started": "2004", "ended": "2012"})
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        browser_login(page, live_server, "reader")
        for path in ("/timeline", "/calendar"):
            page.goto(live_server.url(path))
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, (path, overflow)
        page.goto(live_server.url("/timeline"))
        box = page.locator(".timeline-scroll")
        assert page.evaluate("el => el.scrollWidth > el.clientWidth", box.element_handle())
    finally:
        context.close()
