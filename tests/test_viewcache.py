"""Stored page views (kb.viewcache): served again without re-rendering, never stale, never another reader's."""
from __future__ import annotations

import json
import re

import html5lib
import pytest
from sqlalchemy import func, select, update

from kb import viewcache
from kb.db import generation
from kb.models import RenderedView

from conftest import PASSWORD, viewer_for


def stored_rows(app) -> list[tuple[str, int]]:
    with app.extensions["kb_db"].reading() as s:
        return list(s.execute(select(RenderedView.key, RenderedView.generation)))


def renders_of(app, monkeypatch) -> list[str]:
    """Names of the page bodies rendered from here on (the stored ones are not rendered)."""
    from kb.web import wiki

    seen: list[str] = []
    original = wiki.pages.current_html

    def counting(s, viewer, page, cache_store=None):
        seen.append(page.slug)
        return original(s, viewer, page, cache_store)

    monkeypatch.setattr(wiki.pages, "current_html", counting)
    return seen


def without_tokens(html: str) -> str:
    return re.sub(r'(name="csrf_token" value="|name="csrf-token" content=")[^"]+"', r'\1"', html)


def test_second_view_is_served_from_the_stored_view(app, client, auth, make_page, monkeypatch):
    make_page("Budget Calendar", body="The **budget** calendar. See [[Nowhere Yet]].")
    auth.login("contributor")
    renders = renders_of(app, monkeypatch)
    first = client.get("/wiki/budget-calendar")
    second = client.get("/wiki/budget-calendar")
    assert first.status_code == second.status_code == 200
    assert renders == ["budget-calendar"]
    assert len(stored_rows(app)) == 1
    assert without_tokens(first.get_data(as_text=True)) == without_tokens(second.get_data(as_text=True))
    doc = html5lib.parse(second.get_data(as_text=True), namespaceHTMLElements=False)
    assert doc.find(".//title").text.startswith("Budget Calendar")
    assert doc.find(".//strong").text == "budget"
    wanted = [a for a in doc.iter("a") if "wanted" in (a.get("class") or "")]
    assert [a.get("href") for a in wanted] == ["/wiki/nowhere-yet"]


def test_any_shown_change_is_seen_at_once(app, client, auth, make_page):
    make_page("Coaching Cycle", body="Links to [[Peer Review]].")
    auth.login("reader")
    before = client.get("/wiki/coaching-cycle").get_data(as_text=True)
    assert 'class="wikilink wanted"' in before
    # Another page comes into being: the link is no longer wanted, and it links back.
    make_page("Peer Review", body="Part of [[Coaching Cycle]].")
    after = client.get("/wiki/coaching-cycle").get_data(as_text=True)
    assert 'class="wikilink wanted"' not in after
    assert "/wiki/peer-review" in after.split("What links here", 1)[1]


def test_readers_never_get_each_others_view(app, client, auth, make_page):
    make_page("Board Briefing", visibility="restricted", body="Confidential.")
    make_page("Agenda", body="See [[Board Briefing]].")
    auth.login("curator")
    curator_view = client.get("/wiki/agenda").get_data(as_text=True)
    auth.logout()
    auth.login("reader")
    reader_view = client.get("/wiki/agenda").get_data(as_text=True)
    assert "Board Briefing" in curator_view
    assert 'class="wikilink wanted"' not in curator_view
    assert 'class="wikilink wanted"' in reader_view  # a hidden page looks like a missing one
    assert "Delete this page" in curator_view and "Delete this page" not in reader_view
    assert len(stored_rows(app)) == 2


def test_restricted_page_is_not_served_from_a_stored_view_to_others(app, client, auth, make_page):
    make_page("Personnel Notes", visibility="restricted", body="Private.")
    auth.login("curator")
    assert client.get("/wiki/personnel-notes").status_code == 200
    auth.logout()
    auth.login("reader")
    response = client.get("/wiki/personnel-notes")
    assert response.status_code == 404
    assert "Private." not in response.get_data(as_text=True)


def csrf_tokens(html: str) -> set[str]:
    return set(re.findall(r'(?:name="csrf_token" value|name="csrf-token" content)="([^"]+)"', html))


def signed_in_with_csrf(app, name: str):
    client = app.test_client()
    login = client.get("/login").get_data(as_text=True)
    (token,) = csrf_tokens(login)
    assert client.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": token}).status_code == 302
    return client


def test_a_stored_view_carries_each_sessions_own_working_form_token(make_app):
    from kb import pages

    app = make_app(WTF_CSRF_ENABLED=True)

    with app.extensions["kb_db"].writing() as s:
        pages.save_page(s, viewer_for(app, "admin"), None,
                        pages.PageState(title="Kitchen Rota", kind="page", fields={}, tags=[], visibility="public",
                                        readers=[], sources=[], body="x"), None, "test")
    # The same user in two browsers: the second is served the view stored for the first.
    first, second = signed_in_with_csrf(app, "curator"), signed_in_with_csrf(app, "curator")
    seen = {}
    for name, client in (("first", first), ("second", second), ("first", first)):
        html = client.get("/wiki/kitchen-rota").get_data(as_text=True)
        tokens = csrf_tokens(html)
        assert len(tokens) == 1, f"the {name} session's page carries {len(tokens)} different form tokens"
        seen.setdefault(name, set()).update(tokens)
    assert not seen["first"] & seen["second"], "one session's form token was served to another"
    # The token in the stored view's forms works: watching the page succeeds, for each session.
    for client, tokens in ((first, seen["first"]), (second, seen["second"])):
        response = client.post("/curate/watch", data={"page": "kitchen-rota", "on": "1", "csrf_token": tokens.pop()})
        assert response.status_code in (302, 303)
        assert "Stop watching" in client.get("/wiki/kitchen-rota").get_data(as_text=True)


def test_page_text_shows_as_typed_and_never_gets_the_readers_form_token(make_app):
    """Text that looks like a placeholder for the form token stays text: the reader's token goes only into forms."""
    from kb import pages

    app = make_app(WTF_CSRF_ENABLED=True)
    trick = "kb-csrf-0123456789abcdef0123456789abcdef"  # the shape of a placeholder, under some other key
    with app.extensions["kb_db"].writing() as s:
        pages.save_page(s, viewer_for(app, "admin"), None,
                        pages.PageState(title="Mark Trick", body=f"{trick} [link](https://example.org/?t={trick})"),
                        None, "test")
    client = signed_in_with_csrf(app, "reader")
    for _ in range(2):  # rendered, then stored
        html = client.get("/wiki/mark-trick").get_data(as_text=True)
        assert f"<p>{trick} " in html and f'href="https://example.org/?t={trick}"' in html  # shown as typed
        (token,) = csrf_tokens(html)
        forms = len(re.findall(r'(?:name="csrf_token" value|name="csrf-token" content)="', html))
        assert html.count(token) == forms, "the reader's form token appears outside the forms"


def test_a_message_after_an_action_uses_the_same_body(app, client, auth, make_page):
    make_page("Drill", body="Fire drill.")
    auth.login("reader")
    plain = client.get("/wiki/drill").get_data(as_text=True)
    client.post("/curate/watch", data={"page": "drill", "on": "1"})
    with_message = client.get("/wiki/drill").get_data(as_text=True)
    assert 'class="flashes"' in with_message
    assert "Stop watching" in with_message
    again = client.get("/wiki/drill").get_data(as_text=True)
    assert 'class="flashes"' not in again and "Stop watching" in again
    assert "Fire drill." in plain and "Fire drill." in again


def test_a_damaged_stored_view_is_rendered_again(app, client, auth, make_page):
    make_page("Attendance", body="Attendance routine.")
    auth.login("reader")
    client.get("/wiki/attendance")
    with app.extensions["kb_db"].writing() as s:
        s.execute(update(RenderedView).values(html=b"not compressed"))
    response = client.get("/wiki/attendance")
    assert response.status_code == 200
    assert "Attendance routine." in response.get_data(as_text=True)


def test_old_generations_are_pruned(app, client, auth, make_page):
    for title in ("One", "Two", "Three"):
        make_page(title, body=title)
    auth.login("reader")
    for slug in ("one", "two", "three"):
        client.get(f"/wiki/{slug}")
    make_page("Four", body="Four")
    db = app.extensions["kb_db"]
    with db.reading() as s:
        current = generation(s)
    store = viewcache.Store(db, max_rows=10)
    assert store.prune(current) == 3
    client.get("/wiki/one")
    client.get("/wiki/two")
    assert {g for _, g in stored_rows(app)} == {current}
    assert viewcache.Store(db, max_rows=1).prune(current) == 1
    with db.reading() as s:
        assert s.scalar(select(func.count()).select_from(RenderedView)) == 1


def test_a_reader_given_another_role_sees_the_controls_of_the_new_role_at_once(app, client, auth, make_page):
    make_page("Bell Schedule", body="Set in August.")
    reader = app.test_client()
    reader.post("/login", data={"name": "reader", "password": PASSWORD})
    for _ in range(2):  # rendered, then stored
        assert "/wiki/bell-schedule/edit" not in reader.get("/wiki/bell-schedule").get_data(as_text=True)
    auth.login("admin")
    assert client.post("/admin/users/reader/role", data={"role": "contributor"}).status_code == 302
    assert "/wiki/bell-schedule/edit" in reader.get("/wiki/bell-schedule").get_data(as_text=True)


def test_fast_reader_reads_what_a_session_reads(app, make_page):
    from kb.db import FastReader
    from kb.models import Page

    make_page("Reader Test", visibility="restricted", readers=["ana"], body="x")
    db = app.extensions["kb_db"]
    reader = FastReader(db)
    statement = select(Page.id, Page.slug, Page.readers).where(Page.slug == "reader-test")
    try:
        row = reader.one(statement, {})
        assert reader.one(select(Page.id).where(Page.slug == "nothing-here"), {}) is None
    finally:
        reader.close()
    with db.reading() as s:
        expected = s.execute(statement).first()
    assert (row[0], row[1]) == (expected.id, expected.slug)
    assert json.loads(row[2]) == expected.readers == ["ana"]  # JSON comes back as the driver gives it
    head = viewcache.lookup(db.fast_reader(), "reader-test", "2026-01-01:x")
    assert head.readers == ["ana"] and head.html is None and head.generation >= 1


def test_after_a_restart_with_a_new_secret_key_pages_show_and_their_forms_work(make_app):
    """A restore without the old secret key: views stored by the old app must not bring its forms back."""
    from kb import create_app, pages

    old = make_app(WTF_CSRF_ENABLED=True)
    with old.extensions["kb_db"].writing() as s:
        pages.save_page(s, viewer_for(old, "admin"), None, pages.PageState(title="Handbook", body="Staff handbook."),
                        None, "test")
    assert "Staff handbook." in signed_in_with_csrf(old, "curator").get("/wiki/handbook").get_data(as_text=True)
    config = {key: old.config[key] for key in ("TESTING", "DATA_DIR", "DATABASE_URL", "SEARCH_BACKGROUND")}
    new = create_app({**config, "SECRET_KEY": "a-new-secret", "WTF_CSRF_ENABLED": True})
    try:
        client = signed_in_with_csrf(new, "curator")
        html = client.get("/wiki/handbook").get_data(as_text=True)
        assert "Staff handbook." in html
        tokens = csrf_tokens(html)
        assert len(tokens) == 1, f"the forms carry {tokens} (a placeholder left from the old key?)"
        token = tokens.pop()
        response = client.post("/curate/watch", data={"page": "handbook", "on": "1", "csrf_token": token})
        assert response.status_code in (302, 303)
        assert "Stop watching" in client.get("/wiki/handbook").get_data(as_text=True)
    finally:
        new.extensions["kb_db"].dispose()


def test_sqlite_read_connection_is_kept_per_thread_and_process(app, make_page, monkeypatch):
    import os
    import threading

    from kb.models import Page

    db = app.extensions["kb_db"]
    first = db.read_connection()
    assert db.read_connection() is first  # kept for the thread's next request
    other = []
    thread = threading.Thread(target=lambda: other.append(db.read_connection()))
    thread.start()
    thread.join()
    assert other[0] is not first  # sqlite3 connections are not shared between threads
    # A kept connection still sees what other connections commit later (reads run outside a transaction).
    reader = db.fast_reader()
    query = select(Page.title).where(Page.slug == "later-page")
    assert reader.one(query, {}) is None
    reader.close()
    make_page("Later Page", body="x")
    reader = db.fast_reader()
    assert reader.one(query, {}) == ("Later Page",)
    reader.close()
    # In a forked worker the parent's connection is never used.
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)
    assert db.read_connection() is not first
    monkeypatch.setattr(os, "getpid", lambda: pid)
    kept = db.read_connection()
    db.dispose()
    assert db.read_connection() is not kept
