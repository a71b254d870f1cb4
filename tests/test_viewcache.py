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


def test_a_reader_given_another_role_sees_the_controls_of_the_new_role_at_once(app, client, auth, make_page):
    make_page("Bell Schedule", body="Set in August.")
    reader = app.test_client()
    reader.post("/login", data={"name": "reader", "password": PASSWORD})
    for _ in range(2):  # rendered, then stored
        assert "/wiki/bell-schedule/edit" not in reader.get("/wiki/bell-schedule").get_data(as_text=True)
    auth.login("admin")
    assert client.post("/admin/users/reader/role", data={"role": "contributor"}).status_code == 302
    assert "/wiki/bell-schedule/edit" in reader.get("/wiki/bell-schedule").get_data(as_text=True)


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
