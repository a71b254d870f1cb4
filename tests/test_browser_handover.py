"""In a real browser: a departing leader walks through the handover wizard, then the successor confirms it."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from conftest import LiveServer
from kb.models import Page

pytestmark = pytest.mark.browser

@pytest.fixture
def live(app):
    app.config["WTF_CSRF_ENABLED"] = True  # the real forms, with their CSRF tokens
    server = LiveServer(app)
    yield server.base
    server.stop()


@pytest.fixture
def watched_page(browser_page):
    """The shared browser tab, with script errors, CSP violations and missing curation assets collected."""
    page = browser_page
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and not (
        m.text.startswith("Failed to load resource") or ("/static/" in m.text and "/curate." not in m.text))
        else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and "/curate." in r.url else None)
    return page, problems


def sign_in(page, base: str, name: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#name", name)
    page.fill("#password", "correct horse battery staple")
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{base}/")


def next_step(page) -> None:
    page.click("button[value=next]")
    page.wait_for_load_state()


def test_departing_leader_writes_a_handover_and_the_successor_confirms_it(app, make_page, live, watched_page):
    page, problems = watched_page
    base = live
    make_page("Dr Rivera", kind="leader", fields={"tenures": [{"role": "Superintendent", "from": "2019"}]})
    make_page("Dr Chen", kind="leader")
    make_page("Writing Assessment", kind="initiative", fields={"status": "active"})
    make_page("Board Report", kind="routine", fields={"people_who_can_run_it": 1})

    # The departing leader starts from their own page.
    sign_in(page, base, "contributor")
    page.goto(f"{base}/wiki/dr-rivera")
    page.click("text=Write a handover")
    assert page.locator("#leader").input_value() == "dr-rivera"
    page.click("text=Start the handover")

    # Step 1: the role, prefilled from the leader's page.
    assert page.locator("h1").inner_text() == "The role"
    assert page.locator("#q-role").input_value() == "Superintendent"
    assert page.locator("#q-outgoing").input_value() == "dr-rivera"
    page.select_option("#q-incoming", "dr-chen")
    page.fill("#q-overlap", "Two weeks in June")
    next_step(page)

    # Step 2: work in flight.
    assert "Which initiatives are under way" in page.content()
    page.check("input[name='q.in_flight'][value='writing-assessment']")
    page.fill("#q-decisions_pending", "Renew the partner MOU by June")
    next_step(page)

    # Step 3: routines and records.
    page.check("input[name='q.routines_owned'][value='board-report']")
    page.fill("#q-where_things_are", "Shared drive, folder Board/2024")
    next_step(page)

    # Step 4: people. Save, leave, and come back: the answer is still there.
    page.fill("#q-relationships", "Call the union president before the budget goes to the board.")
    page.click("button[value=save]")
    page.wait_for_load_state()
    page.goto(f"{base}/")
    page.goto(f"{base}/new?kind=handover")
    assert page.locator("h1").inner_text() == "People"
    assert "union president" in page.locator("#q-relationships").input_value()
    next_step(page)

    # Step 5: what will break.
    assert "What will break first when you leave?" in page.content()
    page.fill("#q-will_break", "The partner meetings: only I call them.")
    next_step(page)

    # Step 6: risk, then Back and forward again keeps the answers.
    page.check("input[name='q.risk.attrition'][value='4']")
    page.check("input[name='q.risk.criticality'][value='5']")
    page.click("button[value=back]")
    page.wait_for_load_state()
    assert "only I call them" in page.locator("#q-will_break").input_value()
    next_step(page)
    assert page.locator("input[name='q.risk.criticality'][value='5']").is_checked()
    next_step(page)

    # Step 7: check and save.
    assert page.locator("h1").inner_text() == "Check and save"
    assert "union president" in page.locator(".wizard-summary").inner_text()
    title = page.locator("#q-title").input_value()
    assert title.startswith("Handover: Superintendent (Dr Rivera)")
    page.fill("#q-title", "Handover: Superintendent Rivera")
    page.click("button[value=finish]")
    page.wait_for_load_state()
    assert "Your handover is saved" in page.content()
    assert "Dr Rivera" in page.locator(".card").inner_text()
    page.click("text=Read the handover")
    page.wait_for_url(f"{base}/wiki/handover-superintendent-rivera")
    assert "Not yet checked" in page.locator("#successor-check").text_content()

    # The successor reads it and confirms it is usable.
    page.click("button:has-text('Sign out')")
    sign_in(page, base, "curator")
    page.goto(f"{base}/wiki/handover-superintendent-rivera")
    page.click("text=Read it as the successor and confirm")
    assert page.locator("h1").inner_text() == "Is this handover usable?"
    page.click("text=I am the successor: this handover is usable")
    page.wait_for_url(f"{base}/wiki/handover-superintendent-rivera")
    assert "Successor checked" in page.locator("#successor-check").text_content()

    with app.extensions["kb_db"].reading() as s:
        handover = s.scalar(select(Page).where(Page.slug == "handover-superintendent-rivera"))
        leader = s.scalar(select(Page).where(Page.slug == "dr-rivera"))
        assert handover.fields["successor_checked"]
        assert handover.fields["in_flight"] == ["writing-assessment"]
        assert handover.fields["risk"] == {"attrition": 4, "criticality": 5}
        assert leader.fields["handover"] == handover.slug
    page.goto(f"{base}/wiki/dr-rivera")
    assert page.locator("a[href='/wiki/handover-superintendent-rivera']").count() >= 1
    assert problems == []
