"""The wiki core in a real browser: write a page with live preview, edit it, and find both revisions in history."""
from __future__ import annotations

import pytest

from conftest import browser_login

pytestmark = pytest.mark.browser


def test_create_with_preview_edit_and_see_both_revisions(live_server, browser_page):
    page = browser_page
    browser_login(page, live_server, "contributor")
    page.goto(live_server.url("/new?kind=page"))
    page.fill("#title", "Benchmark scoring days")
    page.fill("#body", "Teachers **score together** each spring. See [[Writing assessment]].")
    preview = page.locator("#preview-pane")
    preview.locator("strong", has_text="score together").wait_for()
    assert preview.locator("a.wanted", has_text="Writing assessment").count() == 1
    assert preview.locator("script").count() == 0
    page.fill("#comment", "first notes")
    page.click("#save-button")
    page.wait_for_url("**/wiki/benchmark-scoring-days")
    assert "score together" in page.inner_text(".page-body")

    page.click("text=Edit")
    page.fill("#body", "Teachers score together each spring, with release time.")
    page.fill("#comment", "added release time")
    page.click("#save-button")
    page.wait_for_url("**/wiki/benchmark-scoring-days")
    assert "release time" in page.inner_text(".page-body")

    page.click("text=History")
    rows = page.locator("table.history tbody tr")
    assert rows.count() == 2
    history = page.inner_text("table.history")
    assert "first notes" in history and "added release time" in history
    page.click("text=Compare selected revisions")
    assert "release time" in page.inner_text("pre.diff ins")
