"""Pages in the browser, through the Flask test client: create, edit, conflict, history, diff, rename, delete."""
from __future__ import annotations

import html
import re


def test_anonymous_visitors_are_sent_to_sign_in(client):
    r = client.get("/wiki/anything")
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/wiki/anything"


def test_create_page_from_a_kind_template(client, auth):
    auth.login("contributor")
    r = client.get("/new?kind=routine")
    assert r.status_code == 200
    assert b"How it runs" in r.data  # the routine template's body
    assert b'name="f.cadence"' in r.data and b'name="f.people_who_can_run_it"' in r.data
    r = client.post("/new", data={"kind": "routine", "title": "Benchmark scoring day", "f.cadence": "each spring",
                                  "f.months": ["4", "5"], "f.people_who_can_run_it": "1",
                                  "body": "Teachers score together.", "comment": "first notes"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/wiki/benchmark-scoring-day")
    page = client.get("/wiki/benchmark-scoring-day")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Benchmark scoring day" in text and "Teachers score together." in text
    assert "April" in text and "May" in text


def test_invalid_field_keeps_the_users_input_and_names_the_field(client, auth):
    auth.login("contributor")
    r = client.post("/new", data={"kind": "initiative", "title": "District writing assessment", "f.status": "ended",
                                  "f.started": "2003-13", "body": "My careful notes"})
    assert r.status_code == 422
    text = html.unescape(r.get_data(as_text=True))
    assert "My careful notes" in text and "District writing assessment" in text
    assert "Started</a>: '2003-13' is not a real date" in text
    assert "Why it ended</a>: say why it ended: an initiative that is ended or replaced needs a reason" in text
    assert client.get("/wiki/district-writing-assessment").status_code == 404


def test_edit_conflict_screen_keeps_text_and_shows_diff(client, auth, make_page):
    make_page("Summer institutes", body="Original")
    auth.login("contributor")
    form = {"kind": "page", "title": "Summer institutes", "base_revision": "1"}
    first, second = "First editor\nSee the agenda.", "Second editor's words\nSee the agenda."
    assert client.post("/wiki/summer-institutes/edit", data={**form, "body": first}).status_code == 302
    r = client.post("/wiki/summer-institutes/edit", data={**form, "body": second})
    assert r.status_code == 409
    text = html.unescape(r.get_data(as_text=True))
    assert "Someone else saved this page" in text
    assert "Second editor's words" in text  # kept in the editor
    # The diff from the editor's text to the current version: their line goes, the saved one comes.
    assert '<span class="diff-line diff-line--del">-Second editor\'s words</span>' in text
    assert '<span class="diff-line diff-line--add">+First editor</span>' in text
    assert '<span class="diff-line diff-line--ctx"> See the agenda.</span>' in text
    assert re.search(r'name="base_revision" value="2"', text)
    # Saving again from the conflict screen (now based on revision 2) works.
    r = client.post("/wiki/summer-institutes/edit", data={**form, "base_revision": "2", "body": "Merged"})
    assert r.status_code == 302


def test_history_and_diff_between_any_two_revisions(client, auth, make_page):
    make_page("Data teams", body="one\ntwo")
    auth.login("admin")
    for base, body in ((1, "one\nthree"), (2, "one\nthree\nfour")):
        client.post("/wiki/data-teams/edit", data={"kind": "page", "title": "Data teams", "base_revision": str(base),
                                                    "body": body, "comment": f"edit {base}"})
    hist = client.get("/wiki/data-teams/history").get_data(as_text=True)
    assert "edit 1" in hist and "edit 2" in hist and "Admin" in hist
    diff = client.get("/wiki/data-teams/diff?from=1&to=3").get_data(as_text=True)
    assert "<del>two</del>" in diff and "<ins>four</ins>" in diff
    assert client.get("/wiki/data-teams/diff?from=1&to=9").status_code == 404
    assert client.get("/wiki/data-teams/revisions/1").status_code == 200


def test_revert_rename_and_old_address(client, auth, make_page):
    make_page("Teacher leaders", body="v1")
    make_page("Overview", body="See [[Teacher leaders]].")
    auth.login("admin")
    client.post("/wiki/teacher-leaders/edit", data={"kind": "page", "title": "Teacher leaders", "base_revision": "1",
                                                     "body": "v2"})
    assert client.post("/wiki/teacher-leaders/revert/1", data={"base_revision": "2"}).status_code == 302
    assert client.get("/wiki/teacher-leaders/raw").get_data(as_text=True) == "v1"
    r = client.post("/wiki/teacher-leaders/rename", data={"title": "Teacher leader cadre", "base_revision": "3"})
    assert r.headers["Location"].endswith("/wiki/teacher-leader-cadre")
    old = client.get("/wiki/teacher-leaders")
    assert old.status_code == 301 and old.headers["Location"].endswith("/wiki/teacher-leader-cadre")
    overview = client.get("/wiki/overview").get_data(as_text=True)
    assert "wanted" not in overview


def test_delete_then_admin_restores(client, auth, make_page):
    make_page("Old initiative", body="text")
    auth.login("curator")
    assert client.post("/wiki/old-initiative/delete").status_code == 302
    assert client.get("/wiki/old-initiative").status_code == 404
    assert client.get("/admin/deleted").status_code == 404  # curators cannot restore
    auth.logout()
    auth.login("admin")
    listing = client.get("/admin/deleted").get_data(as_text=True)
    page_id = re.search(r"/admin/deleted/(\d+)/restore", listing).group(1)
    assert client.post(f"/admin/deleted/{page_id}/restore").status_code == 302
    assert client.get("/wiki/old-initiative").status_code == 200


def test_wanted_link_opens_the_create_form(client, auth, make_page):
    make_page("Index", body="We still need [[Writing assessment history]].")
    auth.login("contributor")
    text = client.get("/wiki/index").get_data(as_text=True)
    href = re.search(r'<a class="wikilink wanted" href="([^"]+)"', text).group(1)
    missing = client.get(html.unescape(href))
    assert missing.status_code == 404 and "does not exist yet" in missing.get_data(as_text=True)
    create = re.search(r'href="(/new\?kind=routine[^"]*)"', missing.get_data(as_text=True)).group(1)
    form = client.get(html.unescape(create))
    assert form.status_code == 200 and 'value="Writing assessment history"' in form.get_data(as_text=True)


def test_reader_sees_no_edit_controls_and_cannot_post(client, auth, make_page):
    make_page("Routine notes", body="text")
    auth.login("reader")
    text = client.get("/wiki/routine-notes").get_data(as_text=True)
    assert "/wiki/routine-notes/edit" not in text
    assert client.get("/wiki/routine-notes/edit").status_code == 403
    r = client.post("/wiki/routine-notes/edit", data={"title": "x", "body": "y", "base_revision": "1"})
    assert r.status_code == 403


def test_preview_goes_through_the_sanitiser(client, auth):
    auth.login("contributor")
    r = client.post("/preview", data={"body": "**bold** <script>alert(1)</script> [[Nowhere]]"})
    data = r.get_json()
    assert "<strong>bold</strong>" in data["html"]
    assert "<script>" not in data["html"]
    assert "wanted" in data["html"]


def test_titles_and_bodies_in_any_script_and_emoji(client, auth):
    auth.login("contributor")
    r = client.post("/new", data={"kind": "page", "title": "Ελληνικά σχολεία 🏫", "body": "Καλημέρα — مرحبا — 你好 🎉"})
    location = r.headers["Location"]
    text = client.get(location).get_data(as_text=True)
    assert "Ελληνικά σχολεία 🏫" in text and "مرحبا" in text and "🎉" in text


def test_list_pages_filters_by_kind_status_and_tag(client, auth, make_page):
    make_page("Ended one", kind="initiative", fields={"status": "ended", "ended_reason": "funding"}, tags=["math"])
    make_page("Active one", kind="initiative", fields={"status": "active"}, tags=["math"])
    make_page("A routine", kind="routine", tags=["math"])
    auth.login("reader")
    text = client.get("/wiki?kind=initiative&status=ended&tag=math").get_data(as_text=True)
    assert "Ended one" in text and "Active one" not in text and "A routine" not in text


def test_a_viewed_page_shows_changes_made_elsewhere_at_once(client, auth, make_page, app):
    """Page bodies are cached per reader; any change a page shows must still appear on the next view."""
    make_page("Summer institutes", body="Held each summer.")
    auth.login("curator")
    first = client.get("/wiki/summer-institutes").get_data(as_text=True)
    assert "No other page links here yet." in first
    make_page("Teacher leaders", body="They ran the [[Summer institutes]].")  # a backlink appears
    second = client.get("/wiki/summer-institutes").get_data(as_text=True)
    assert "Teacher leaders" in second
    client.post("/curate/watch", data={"page": "summer-institutes", "on": "1"})  # watching changes the button
    assert "Stop watching" in client.get("/wiki/summer-institutes").get_data(as_text=True)
    client.post("/wiki/teacher-leaders/delete")  # the backlink goes away again
    client.get("/")  # (the flash message naming the deleted page is shown here)
    backlinks = client.get("/wiki/summer-institutes").get_data(as_text=True).split("What links here")[1]
    assert "Teacher leaders" not in backlinks and "No other page links here yet." in backlinks


def test_the_cached_body_is_never_shared_between_readers(client, auth, make_page):
    make_page("Budget memo", body="See [[Personnel file]].")
    make_page("Personnel file", body="private", visibility="restricted", as_user="curator")
    auth.login("curator")
    assert "wanted" not in client.get("/wiki/budget-memo").get_data(as_text=True)
    assert "Delete this page" in client.get("/wiki/budget-memo").get_data(as_text=True)
    auth.logout()
    auth.login("reader")
    text = client.get("/wiki/budget-memo").get_data(as_text=True)
    assert 'class="wikilink wanted"' in text and "Delete this page" not in text


def test_home_counts_only_pages_the_reader_may_read(client, auth, make_page):
    make_page("Open routine", kind="routine")
    make_page("Staff routine", kind="routine", visibility="staff")
    make_page("Secret routine", kind="routine", visibility="restricted", readers=["contributor"], as_user="curator")
    counts = {}
    for name in ("reader", "contributor", "curator"):
        auth.login(name)
        text = client.get("/").get_data(as_text=True)
        counts[name] = int(re.search(r'kind=routine">Routines</a> <span class="count">(\d+)</span>', text).group(1))
        auth.logout()
    assert counts == {"reader": 2, "contributor": 3, "curator": 3}
