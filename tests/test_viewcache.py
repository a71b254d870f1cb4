"""Stored page views (kb.viewcache): served again without re-rendering, never stale, never another reader's, and
kept when something the page does not show changes."""
from __future__ import annotations

import re

import html5lib
import pytest
from sqlalchemy import func, select, update

from kb import viewcache
from kb.models import RenderedView

from conftest import PASSWORD, viewer_for


def stored_rows(app) -> list[tuple[str, int]]:
    with app.extensions["kb_db"].reading() as s:
        return list(s.execute(select(RenderedView.key, RenderedView.page_id)))


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


def test_saving_an_unrelated_page_keeps_the_stored_view(app, client, auth, make_page, monkeypatch):
    make_page("Budget Calendar", body="See [[Board Meetings]].")
    make_page("Board Meetings", body="Monthly.")
    auth.login("reader")
    client.get("/wiki/budget-calendar")
    renders = renders_of(app, monkeypatch)
    make_page("Lunch Menu", body="Soup.")  # neither linked from nor linking to the calendar
    make_page("Board Meetings", body="Monthly, on Tuesdays.")  # linked, but its title and address stay
    client.get("/wiki/budget-calendar")
    # The linked page changed revision, so the calendar is rendered again; the menu's save alone would not have.
    assert renders == ["budget-calendar"]
    client.get("/wiki/budget-calendar")
    make_page("Lunch Menu", body="Soup and bread.")
    client.get("/wiki/budget-calendar")
    assert renders == ["budget-calendar"]


def test_a_linked_pages_new_title_shows_at_once(app, client, auth, make_page):
    make_page("Data Team", kind="community", slug="data-team")
    make_page("Attendance Review", kind="routine", fields={"owner": "data-team"}, body="Weekly.")
    auth.login("reader")
    assert "Data Team" in client.get("/wiki/attendance-review").get_data(as_text=True)
    make_page("Principals' Data Team", kind="community", slug="data-team")
    html = client.get("/wiki/attendance-review").get_data(as_text=True)
    assert "Principals&#39; Data Team" in html


def test_a_deleted_backlink_disappears_at_once(app, client, auth, make_page):
    make_page("Coaching Cycle", body="The cycle.")
    make_page("Peer Review", body="Part of [[Coaching Cycle]].")
    auth.login("curator")
    assert "/wiki/peer-review" in client.get("/wiki/coaching-cycle").get_data(as_text=True)
    assert client.post("/wiki/peer-review/delete").status_code in (302, 303)
    html = client.get("/wiki/coaching-cycle").get_data(as_text=True)
    assert "/wiki/peer-review" not in html.split("What links here", 1)[1]


def test_a_page_made_restricted_leaves_its_neighbours_views_at_once(app, client, auth, make_page):
    make_page("Agenda", body="See [[Board Briefing]].")
    make_page("Board Briefing", body="Open.")
    auth.login("reader")
    assert 'class="wikilink wanted"' not in client.get("/wiki/agenda").get_data(as_text=True)
    make_page("Board Briefing", visibility="restricted", body="Now confidential.")
    html = client.get("/wiki/agenda").get_data(as_text=True)
    assert 'class="wikilink wanted"' in html
    assert "/wiki/board-briefing" in html  # a wanted link, exactly like a page not written yet


def test_the_readers_own_buttons_are_never_stored(app, client, auth, make_page, monkeypatch):
    """Watch and Verify change what the page shows for one reader without a new rendering."""
    make_page("Drill", body="Fire drill.")
    auth.login("curator")
    client.get("/wiki/drill")
    renders = renders_of(app, monkeypatch)
    client.post("/curate/watch", data={"page": "drill", "on": "1"})
    with_message = client.get("/wiki/drill").get_data(as_text=True)
    assert 'class="flashes"' in with_message and "Stop watching" in with_message
    again = client.get("/wiki/drill").get_data(as_text=True)
    assert 'class="flashes"' not in again and "Stop watching" in again and "Fire drill." in again
    client.post("/curate/verify/drill")
    assert "badge--verified" in client.get("/wiki/drill").get_data(as_text=True)
    assert renders == []


def test_forms_in_a_stored_view_carry_the_sessions_csrf_token(make_app):
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
    for _ in range(2):  # rendered, then stored
        html = client.get("/wiki/kitchen-rota").get_data(as_text=True)
        tokens = set(re.findall(r'name="csrf_token" value="([^"]+)"', html))
        assert len(tokens) == 1
    response = client.post("/curate/watch", data={"page": "kitchen-rota", "on": "1", "csrf_token": tokens.pop()})
    assert response.status_code in (302, 303)
    assert "Stop watching" in client.get("/wiki/kitchen-rota").get_data(as_text=True)
    with app.extensions["kb_db"].reading() as s:
        stored = [data for (data,) in s.execute(select(RenderedView.html))]
    assert stored and all(b"csrf" not in zlib_text(data) for data in stored)


def zlib_text(data: bytes) -> bytes:
    import zlib

    return zlib.decompress(data)


def test_a_damaged_stored_view_is_rendered_again(app, client, auth, make_page):
    make_page("Attendance", body="Attendance routine.")
    auth.login("reader")
    client.get("/wiki/attendance")
    with app.extensions["kb_db"].writing() as s:
        s.execute(update(RenderedView).values(html=b"not compressed"))
    response = client.get("/wiki/attendance")
    assert response.status_code == 200
    assert "Attendance routine." in response.get_data(as_text=True)


def test_the_oldest_views_are_pruned_beyond_the_limit(app, client, auth, make_page):
    for title in ("One", "Two", "Three"):
        make_page(title, body=title)
    auth.login("reader")
    for slug in ("one", "two", "three"):
        client.get(f"/wiki/{slug}")
    db = app.extensions["kb_db"]
    assert viewcache.Store(db, max_rows=10).prune() == 0
    assert viewcache.Store(db, max_rows=1).prune() == 2
    with db.reading() as s:
        assert s.scalar(select(func.count()).select_from(RenderedView)) == 1


def test_start_up_forgets_stored_views(app, client, auth, make_page):
    from kb import instance

    make_page("Handbook", body="Staff handbook.")
    auth.login("reader")
    client.get("/wiki/handbook")
    assert len(stored_rows(app)) == 1
    instance.prepare(app)
    assert stored_rows(app) == []


def test_keys_name_the_page_its_revision_the_reader_and_the_neighbourhood(app, make_page):
    from kb.access import Viewer
    from kb.models import Page

    make_page("Handbook", body="See [[Calendar]].")
    with app.extensions["kb_db"].reading() as s:
        page = s.scalar(select(Page).where(Page.slug == "handbook"))
        ana, ana_curator = Viewer(3, "ana", "reader"), Viewer(3, "ana", "curator")
        first = viewcache.key(s, ana, page)
        assert first.startswith(f"{page.id}:{page.revision}:")
        assert viewcache.key(s, ana_curator, page) != first
    make_page("Calendar", body="Dates.")
    with app.extensions["kb_db"].reading() as s:
        assert viewcache.key(s, ana, s.scalar(select(Page).where(Page.slug == "handbook"))) != first
