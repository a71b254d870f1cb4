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

from conftest import ON_POSTGRES, PASSWORD, viewer_for


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


def test_forms_carry_the_sessions_csrf_token_and_never_the_mark(make_app):
    from kb import pages

    app = make_app(WTF_CSRF_ENABLED=True)

    with app.extensions["kb_db"].writing() as s:
        pages.save_page(s, viewer_for(app, "admin"), None,
                        pages.PageState(title="Kitchen Rota", kind="page", fields={}, tags=[], visibility="public",
                                        readers=[], sources=[], body="x"), None, "test")
    client = app.test_client()
    login = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    client.post("/login", data={"name": "curator", "password": PASSWORD, "csrf_token": token})
    marks = [viewcache.mark(app.config["SECRET_KEY"], n) for n in ("csrf", "title", "body")]
    for _ in range(2):  # rendered, then stored
        html = client.get("/wiki/kitchen-rota").get_data(as_text=True)
        assert not any(m in html for m in marks)
        tokens = set(re.findall(r'name="csrf_token" value="([^"]+)"', html))
        assert len(tokens) == 1
    # The token in the stored view's forms works: watching the page succeeds.
    response = client.post("/curate/watch", data={"page": "kitchen-rota", "on": "1", "csrf_token": tokens.pop()})
    assert response.status_code in (302, 303)
    assert "Stop watching" in client.get("/wiki/kitchen-rota").get_data(as_text=True)
    # What is stored holds the mark, never a session's token.
    with app.extensions["kb_db"].reading() as s:
        stored = [viewcache.decode(data) for (data,) in s.execute(select(RenderedView.html))]
    assert stored and all(marks[0] in body and token not in body for body in stored)


def test_page_text_cannot_forge_a_mark(app, client, auth, make_page):
    mark = viewcache.mark("another-secret", "csrf")
    make_page("Mark Trick", body=f"kb-csrf- {mark} [link](https://example.org/?t={mark})")
    auth.login("reader")
    for _ in range(2):
        html = client.get("/wiki/mark-trick").get_data(as_text=True)
        assert mark in html  # shown as typed: only this app's own mark is replaced
    assert viewcache.mark("test-secret", "csrf") != mark


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


@pytest.mark.parametrize("day", ["2026-01-01", "2026-01-02"])
def test_keys_name_page_revision_day_and_reader(day):
    from datetime import date

    from kb.access import Viewer

    suffix = viewcache.reader_suffix(Viewer(3, "ana", "reader"), date.fromisoformat(day))
    assert suffix.startswith(day)
    assert suffix != viewcache.reader_suffix(Viewer(3, "ana", "curator"), date.fromisoformat(day))
    assert viewcache.view_key(7, 2, suffix) == f"7:2:{suffix}"


@pytest.mark.skipif(ON_POSTGRES, reason="FastReader gives rows as the driver does; psycopg already decodes JSON")
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


def test_views_stored_under_another_secret_key_are_not_served(make_page, app):
    """After a restore without the old secret key, stored views hold marks the app would not replace."""
    make_page("Handbook", body="Staff handbook.")
    client = app.test_client()
    client.post("/login", data={"name": "curator", "password": PASSWORD})
    client.get("/wiki/handbook")
    assert len(stored_rows(app)) == 1
    app.config["SECRET_KEY"] = "a-new-secret"
    app.extensions.pop("kb_view_marks", None)
    app.extensions.pop("kb_view_chrome", None)
    client = app.test_client()
    client.post("/login", data={"name": "curator", "password": PASSWORD})
    html = client.get("/wiki/handbook").get_data(as_text=True)
    assert viewcache.mark("test-secret", "csrf") not in html
    assert len(stored_rows(app)) == 2  # stored again, under the new key


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite's kept per-thread connection")
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
