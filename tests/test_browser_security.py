"""Roles and visibility in a real browser: what a reader is offered, and a curator restricting a page.

The browser also reports any Content-Security-Policy violation, which would mean a page relies on inline script or
style that the policy blocks.
"""
from __future__ import annotations

import pytest

from conftest import browser_login

pytestmark = pytest.mark.browser


def watch_csp(page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    return problems


def test_reader_is_offered_no_edit_controls(app, make_page, live_server, browser_page):
    make_page("Writing Assessment", body="Teachers built the rubrics and scored together.")
    page = browser_page
    csp_problems = watch_csp(page)
    browser_login(page, live_server, "reader")
    page.goto(live_server.url("/wiki/writing-assessment"))
    assert "Teachers built the rubrics" in page.inner_text(".page-body")
    actions = page.locator(".page-actions")
    assert actions.get_by_role("link", name="Edit").count() == 0
    assert actions.get_by_role("link", name="Rename").count() == 0
    assert page.get_by_role("button", name="Delete this page").count() == 0
    assert page.get_by_role("link", name="+ New page").count() == 0
    assert page.locator("form[action*='/edit'], form[action*='/delete'], form[action*='/revert']").count() == 0
    # The history offers comparing, not restoring.
    page.goto(live_server.url("/wiki/writing-assessment/history"))
    assert page.locator("form[action*='/revert']").count() == 0
    # Typing the address of the editor does not help.
    response = page.goto(live_server.url("/wiki/writing-assessment/edit"))
    assert response.status == 403
    assert page.locator("#page-editor").count() == 0
    assert csp_problems == []


def test_contributor_is_offered_edit_but_not_restricted_visibility(app, make_page, live_server, browser_page):
    make_page("Writing Assessment", body="Teachers built the rubrics.")
    page = browser_page
    browser_login(page, live_server, "contributor")
    page.goto(live_server.url("/wiki/writing-assessment"))
    page.locator(".page-actions").get_by_role("link", name="Edit").click()
    page.wait_for_url("**/wiki/writing-assessment/edit")
    options = page.locator("#visibility option").evaluate_all("els => els.map(e => e.value)")
    assert "restricted" not in options and "public" in options


def test_curator_restricts_a_page_through_the_edit_form(app, make_page, live_server, browser_page, chromium):
    make_page("Principal Succession Notes", body="Who should follow the principal at Lincoln: quokkaplume.")
    page = browser_page
    csp_problems = watch_csp(page)
    browser_login(page, live_server, "curator")
    page.goto(live_server.url("/wiki/principal-succession-notes/edit"))
    page.select_option("#visibility", "restricted")
    page.fill("#readers", "contributor")
    page.fill("#comment", "personnel-sensitive")
    page.click("#save-button")
    page.wait_for_url("**/wiki/principal-succession-notes")
    assert page.locator(".page-header .visibility").inner_text().strip().lower() == "restricted"
    assert csp_problems == []

    # A reader now finds nothing there, exactly as if the page had never been written.
    reader_context = chromium.new_context()
    try:
        reader = reader_context.new_page()
        browser_login(reader, live_server, "reader")
        hidden = reader.goto(live_server.url("/wiki/principal-succession-notes"))
        hidden_text = reader.inner_text("main")
        missing = reader.goto(live_server.url("/wiki/principal-succession-notez"))
        missing_text = reader.inner_text("main")
        assert hidden.status == missing.status == 404
        assert hidden_text.replace("notes", "X") == missing_text.replace("notez", "X")
        assert "quokkaplume" not in hidden_text and "Lincoln" not in hidden_text
        reader.goto(live_server.url("/wiki"))
        assert "Principal Succession Notes" not in reader.inner_text("main")

        # The contributor named as a reader may read it, but not edit it.
        named_context = chromium.new_context()
        try:
            named = named_context.new_page()
            browser_login(named, live_server, "contributor")
            named.goto(live_server.url("/wiki/principal-succession-notes"))
            assert "quokkaplume" in named.inner_text(".page-body")
            assert named.locator(".page-actions").get_by_role("link", name="Edit").count() == 0
        finally:
            named_context.close()
    finally:
        reader_context.close()


def test_account_and_admin_pages_work_under_the_content_security_policy(app, live_server, browser_page):
    page = browser_page
    csp_problems = watch_csp(page)
    browser_login(page, live_server, "admin")
    page.goto(live_server.url("/admin/"))
    page.fill("#invite-name", "newcomer")
    page.click("text=Create invitation link")
    link = page.input_value("#invite-link")
    assert "/invite/" in link
    page.goto(live_server.url("/account"))
    page.fill("#token-name", "nightly export")
    page.click("text=Create token")
    assert page.input_value("#new-token").startswith("kb_")
    # Sign-out in the header is a POST form; afterwards the account page asks to sign in again.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    page.goto(live_server.url("/account"))
    assert "/login" in page.url
    assert csp_problems == []
