"""Onboarding tours: import/export, curating, reading with progress, change flags, visibility, the binder and the API."""
from __future__ import annotations

import re
import textwrap

import pytest
from sqlalchemy import func, select

from conftest import PASSWORD, viewer_for
from kb import tours, transfer
from kb.errors import EditConflict, ImportFailed, InvalidFields, NotAllowed
from kb.models import Page, Tour, User


# ---------------------------------------------------------------------------------------------------------------
# Helpers

viewer = viewer_for


def make_tour(app, title="First weeks", stops=(), audience=("superintendent",), description="Start **here**.",
              minutes=30, as_user="curator") -> str:
    data = {"title": title, "description": description, "audience": list(audience), "minutes": minutes,
            "stops": [s if isinstance(s, dict) else {"page": s} for s in stops]}
    with app.extensions["kb_db"].writing() as s:
        return tours.save_tour(s, viewer(app, as_user), tours.clean_spec(data, ""), "test").slug


@pytest.fixture
def three_stops(app, make_page):
    """A tour of three public pages; returns (tour slug, [page slugs])."""
    slugs = [make_page("Writing assessment", kind="initiative", fields={"status": "active", "started": "1998"},
                       body="Teachers scored together.", sources=["Seed 001, section III"]),
             make_page("Leadership churn", body="Leaders leave every 3 years."),
             make_page("Scoring routine", kind="routine", fields={"cadence": "each June"}, body="Steps.")]
    slug = make_tour(app, stops=[{"page": p, "note": f"Why {p} matters.", "question": f"Ask about {p}?"}
                                 for p in slugs])
    return slug, slugs


def page_text(response) -> str:
    return response.get_data(as_text=True)


# ---------------------------------------------------------------------------------------------------------------
# The model: import and export, all or nothing

def write_content(tmp_path, tour_yaml: str):
    root = tmp_path / "content"
    (root / "tours").mkdir(parents=True)
    (root / "writing-assessment.md").write_text("---\ntitle: Writing assessment\n---\nTeachers loved it.\n")
    (root / "leadership-churn.md").write_text("---\ntitle: Leadership churn\n---\nLeaders leave.\n")
    (root / "tours" / "first-weeks.yaml").write_text(textwrap.dedent(tour_yaml))
    return root


def test_tour_import_fails_naming_the_file_and_the_stop_when_a_page_is_missing(app, tmp_path):
    root = write_content(tmp_path, """\
        title: First weeks
        audience: [superintendent]
        stops:
          - page: writing-assessment
            note: Start here.
          - page: no-such-page
            note: This page was never written.
        """)
    with pytest.raises(ImportFailed) as failure:
        with app.extensions["kb_db"].writing() as s:
            transfer.import_tree(s, viewer(app, "admin"), root)
    message = failure.value.message
    assert "tours/first-weeks.yaml:6" in message
    assert "stop 2" in message and "no-such-page" in message
    with app.extensions["kb_db"].reading() as s:  # all or nothing: not even the pages were written
        assert s.scalar(select(func.count(Page.id))) == 0
        assert s.scalar(select(func.count(Tour.id))) == 0


def test_tour_file_with_an_unknown_key_names_the_file_and_line(app, tmp_path):
    root = write_content(tmp_path, "title: First weeks\nstops:\n  - page: writing-assessment\n    nots: typo\n")
    with pytest.raises(ImportFailed) as failure:
        with app.extensions["kb_db"].writing() as s:
            transfer.import_tree(s, viewer(app, "admin"), root)
    assert "tours/first-weeks.yaml:3" in failure.value.message and "nots" in failure.value.message


def test_a_stop_may_not_repeat_a_page(app, tmp_path):
    root = write_content(tmp_path, "title: T\nstops: [writing-assessment, leadership-churn, writing-assessment]\n")
    with pytest.raises(ImportFailed, match="stop 3 repeats"):
        with app.extensions["kb_db"].writing() as s:
            transfer.import_tree(s, viewer(app, "admin"), root)


def test_tours_import_and_export_round_trip(app, tmp_path, make_app, new_database_url):
    root = write_content(tmp_path, """\
        slug: first-weeks
        title: First weeks
        description: |
          For a **new** superintendent.
        audience: [superintendent, director]
        minutes: 45
        stops:
          - page: writing-assessment
            note: |
              Teachers *loved* it.
            question: What did they love?
          - page: leadership-churn
        """)
    with app.extensions["kb_db"].writing() as s:
        report = transfer.import_tree(s, viewer(app, "admin"), root)
    assert report.tours == 1
    out = tmp_path / "export"
    with app.extensions["kb_db"].reading() as s:
        transfer.export_tree(s, viewer(app, "admin"), out)
        original = tours.tour_spec(tours.get_tour(s, "first-weeks")).snapshot()
    other = make_app(DATA_DIR=str(tmp_path / "other"), DATABASE_URL=new_database_url("other"))
    with other.extensions["kb_db"].writing() as s:
        transfer.import_tree(s, viewer(other, "admin"), out)
    with other.extensions["kb_db"].reading() as s:
        assert tours.tour_spec(tours.get_tour(s, "first-weeks")).snapshot() == original
    # Importing the same files again changes nothing and writes no revision.
    with app.extensions["kb_db"].writing() as s:
        assert transfer.import_tree(s, viewer(app, "admin"), out).tours == 0


def test_the_bundled_tours_import(app):
    from pathlib import Path

    content = Path(app.config["CONTENT_DIR"])
    bundled = list((content / "tours").glob("*.yaml"))
    assert bundled, f"no bundled tours in {content / 'tours'}"
    with app.extensions["kb_db"].writing() as s:
        report = transfer.import_tree(s, viewer(app, "admin"), content, workers=1)
    assert report.tours == len(bundled)


# ---------------------------------------------------------------------------------------------------------------
# Reading a tour, progress and "changed since you read it"

def test_a_reader_follows_a_tour_from_overview_to_the_last_stop(client, auth, three_stops):
    slug, pages_ = three_stops
    auth.login("reader")
    overview = page_text(client.get(f"/tours/{slug}"))
    assert "Start the tour" in overview and "0</strong> of 3 stops read" in overview
    stop = page_text(client.get(f"/tours/{slug}/stops/1"))
    assert "Why writing-assessment matters." in stop and "Ask about writing-assessment?" in stop
    assert "Teachers scored together." in stop  # the page itself, below the note
    assert "field-panel" in stop and "each June" not in stop  # this page's own fields only
    assert "Seed 001, section III" in stop
    assert stop.index("Why writing-assessment matters.") < stop.index("Teachers scored together.")
    r = client.post(f"/tours/{slug}/stops/1/read", data={"then": "next"})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/tours/{slug}/stops/2")
    client.post(f"/tours/{slug}/stops/2/read", data={"then": "next"})
    r = client.post(f"/tours/{slug}/stops/3/read", data={"then": "next"})
    assert r.headers["Location"].endswith(f"/tours/{slug}")
    overview = page_text(client.get(f"/tours/{slug}"))
    assert "3</strong> of 3 stops read" in overview and "You have read every stop" in overview
    assert client.get(f"/tours/{slug}/stops/4").status_code == 404


def test_progress_persists_across_sign_out_and_sign_in(client, auth, three_stops):
    slug, _ = three_stops
    auth.login("reader")
    client.post(f"/tours/{slug}/stops/1/read")
    client.post(f"/tours/{slug}/stops/3/read")
    auth.logout()
    assert client.get(f"/api/tours/{slug}").status_code == 401
    auth.login("reader")
    data = client.get(f"/api/tours/{slug}").get_json()
    assert [s["read"] for s in data["stops"]] == [True, False, True]
    assert data["progress"]["read"] == 2 and data["progress"]["next_stop"] == 2
    assert "2</strong> of 3 stops read" in page_text(client.get(f"/tours/{slug}"))
    # Progress is per person: the contributor has read nothing.
    auth.logout()
    auth.login("contributor")
    assert client.get(f"/api/tours/{slug}").get_json()["progress"]["read"] == 0


def test_changed_flag_appears_after_an_edit_and_clears_after_re_reading(client, auth, make_page, three_stops):
    slug, pages_ = three_stops
    auth.login("reader")
    client.post(f"/tours/{slug}/stops/2/read")
    assert "Changed since you read it" not in page_text(client.get(f"/tours/{slug}/stops/2"))

    make_page("Leadership churn", body="Leaders leave every 2.5 to 4 years.", as_user="contributor")

    stop = page_text(client.get(f"/tours/{slug}/stops/2"))
    assert "Changed since you read it" in stop and "Mark as read again" in stop
    assert f"/wiki/{pages_[1]}/diff?from=1&amp;to=2" in stop
    overview = page_text(client.get(f"/tours/{slug}"))
    assert "1 stop has changed since you read it" in overview
    assert client.get(f"/api/tours/{slug}").get_json()["progress"]["changed"] == 1

    client.post(f"/tours/{slug}/stops/2/read")  # re-reading clears the flag
    assert "Changed since you read it" not in page_text(client.get(f"/tours/{slug}/stops/2"))
    data = client.get(f"/api/tours/{slug}").get_json()
    assert data["progress"]["changed"] == 0 and data["stops"][1]["read_revision"] == 2


def test_start_again_clears_only_my_progress(client, auth, three_stops):
    slug, _ = three_stops
    auth.login("reader")
    client.post(f"/tours/{slug}/stops/1/read")
    client.post(f"/tours/{slug}/restart")
    assert client.get(f"/api/tours/{slug}").get_json()["progress"]["read"] == 0


def test_tours_for_the_users_role_come_first(app, client, auth, make_page):
    page = make_page("Leadership churn")
    make_tour(app, "A for principals", [page], audience=["principal"])
    make_tour(app, "B for readers", [page], audience=["reader", "superintendent"])
    auth.login("reader")
    listing = page_text(client.get("/tours"))
    assert listing.index("Tours for you") < listing.index("B for readers") < listing.index("Other tours") \
        < listing.index("A for principals")
    chosen = page_text(client.get("/tours?for=principal"))
    assert chosen.index("Tours for principal") < chosen.index("A for principals") < chosen.index("B for readers")
    api = client.get("/api/tours").get_json()["tours"]
    assert [(t["title"], t["for_you"]) for t in api] == [("B for readers", True), ("A for principals", False)]


def test_job_title_in_the_display_name_counts_as_audience():
    tour = Tour(slug="t", title="T", audience=["principal", "central-office specialist"])
    assert tours.is_for(tour, "reader", "Ana Ruiz, Principal of Lake High")
    assert tours.is_for(tour, "contributor", "Central-office specialist")
    assert not tours.is_for(tour, "reader", "Assistant superintendent")


def test_home_page_offers_to_continue_the_tour_at_the_next_unread_stop(client, auth, three_stops):
    slug, _ = three_stops
    auth.login("reader")
    client.post(f"/tours/{slug}/stops/1/read")
    home = page_text(client.get("/"))
    assert "Continue your tour" in home and f"/tours/{slug}/stops/2" in home and "Leadership churn" in home


def test_home_page_suggests_a_tour_for_my_role_before_i_start(app, client, auth, make_page):
    make_tour(app, "Readers start here", [make_page("Leadership churn")], audience=["reader"])
    auth.login("reader")
    home = page_text(client.get("/"))
    assert "A tour for you" in home and "Readers start here" in home


def test_a_curators_note_is_sanitised(app, client, auth, make_page):
    page = make_page("Leadership churn")
    slug = make_tour(app, stops=[{"page": page, "note": "<script>alert(1)</script> *why* [x](javascript:alert(1))"}])
    auth.login("reader")
    stop = page_text(client.get(f"/tours/{slug}/stops/1"))
    assert "<script>alert(1)" not in stop and "javascript:" not in stop and "<em>why</em>" in stop


# ---------------------------------------------------------------------------------------------------------------
# Visibility

def test_a_restricted_stop_is_skipped_and_leaks_neither_title_nor_note(app, client, auth, make_page):
    public_a = make_page("Leadership churn", body="Public text.")
    secret = make_page("Personnel handover for Dr Secretname", visibility="restricted", readers=["contributor"],
                       body="Secret body.")
    public_b = make_page("Scoring routine", body="Public routine.")
    slug = make_tour(app, stops=[{"page": public_a, "note": "First."},
                                 {"page": secret, "note": "CONFIDENTIAL-NOTE", "question": "HIDDEN-QUESTION?"},
                                 {"page": public_b, "note": "Third."}])
    leaks = ("Secretname", "CONFIDENTIAL-NOTE", "HIDDEN-QUESTION", secret)

    auth.login("reader")
    surfaces = [client.get(u) for u in (
        "/tours", f"/tours/{slug}", f"/tours/{slug}/stops/1", f"/tours/{slug}/stops/2", f"/tours/{slug}/print",
        "/api/tours", f"/api/tours/{slug}", "/")]
    for r in surfaces:
        assert r.status_code == 200
        for leak in leaks:
            assert leak not in page_text(r), (r.request.path, leak)
    # The numbering and counts skip it too: stop 2 is the second public page and there is no stop 3.
    assert "Scoring routine" in page_text(client.get(f"/tours/{slug}/stops/2"))
    assert "Stop 2 of 2" in page_text(client.get(f"/tours/{slug}/stops/2"))
    assert client.get(f"/tours/{slug}/stops/3").status_code == 404
    assert client.get(f"/api/tours/{slug}").get_json()["progress"]["total"] == 2
    r = client.post(f"/api/tours/{slug}/progress", json={"stop": secret})
    assert r.status_code == 422 and secret in r.get_json()["details"]["stop"]  # only echoes what was sent
    client.post(f"/tours/{slug}/stops/1/read")
    client.post(f"/tours/{slug}/stops/2/read")
    assert client.get(f"/api/tours/{slug}").get_json()["progress"]["finished"] is True

    # A named reader of the restricted page and curators see all three stops.
    auth.logout()
    auth.login("contributor")
    assert client.get(f"/api/tours/{slug}").get_json()["progress"]["total"] == 3
    assert "CONFIDENTIAL-NOTE" in page_text(client.get(f"/tours/{slug}/stops/2"))


def test_export_leaves_out_stops_the_exporter_may_not_read(app, tmp_path, make_page):
    public = make_page("Leadership churn")
    secret = make_page("Personnel notes", visibility="restricted")
    make_tour(app, "First weeks", [{"page": public}, {"page": secret, "note": "CONFIDENTIAL"}])
    with app.extensions["kb_db"].reading() as s:
        tours.export_tours(s, viewer(app, "reader"), tmp_path / "tours")
    text = (tmp_path / "tours" / "first-weeks.yaml").read_text()
    assert "leadership-churn" in text and "personnel-notes" not in text and "CONFIDENTIAL" not in text


# ---------------------------------------------------------------------------------------------------------------
# Curating: who may edit, the editor's buttons, revisions

def test_a_reader_cannot_edit_tours(app, client, auth, three_stops):
    slug, pages_ = three_stops
    for name in ("reader", "contributor"):
        auth.login(name)
        assert client.get(f"/tours/{slug}/edit").status_code == 403
        assert client.post(f"/tours/{slug}/edit", data={"title": "Hijacked", "action": "save"}).status_code == 403
        assert client.get("/tours/new").status_code == 403
        assert client.post("/tours/new", data={"title": "Mine", "action": "save"}).status_code == 403
        assert client.get(f"/tours/{slug}/history").status_code == 403
        assert client.get(f"/tours/{slug}/readers").status_code == 403
        assert client.post(f"/tours/{slug}/revisions/1/restore").status_code == 403
        overview = page_text(client.get(f"/tours/{slug}"))
        assert f"/tours/{slug}/edit" not in overview and "/tours/new" not in page_text(client.get("/tours"))
        auth.logout()
    with pytest.raises(NotAllowed):
        with app.extensions["kb_db"].writing() as s:
            tours.save_tour(s, viewer(app, "reader"), tours.clean_spec({"title": "Hijacked", "slug": slug}, ""))
    with app.extensions["kb_db"].reading() as s:
        tour = tours.get_tour(s, slug)
        assert tour.title == "First weeks" and tour.revision == 1


def test_a_curator_builds_a_tour_with_the_form_alone(client, auth, make_page):
    """The editor without JavaScript: add stops by address or title, then save."""
    first = make_page("Writing assessment")
    make_page("Leadership churn")
    auth.login("curator")
    form = {"title": "Principals start here", "audience": "principal, coach", "minutes": "20",
            "description": "Read these *first*.", "comment": "first draft"}
    r = client.post("/tours/new", data={**form, "action": "add", "add_page": first})
    assert r.status_code == 200 and 'name="stop_page" value="writing-assessment"' in page_text(r)
    r = client.post("/tours/new", data={**form, "stop_page": first, "stop_note": "Why it matters.",
                                         "stop_question": "", "action": "add", "add_page": "leadership churn"})
    assert 'value="leadership-churn"' in page_text(r)
    r = client.post("/tours/new", data={**form, "action": "add", "add_page": "No such page at all"})
    assert r.status_code == 422 and "there is no page called" in page_text(r)
    r = client.post("/tours/new", data={**form, "stop_page": [first, "leadership-churn"],
                                         "stop_note": ["Why it matters.", "Churn *hurts*."],
                                         "stop_question": ["", "Who leaves next?"], "action": "save"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/tours/principals-start-here")
    data = client.get("/api/tours/principals-start-here").get_json()
    assert data["audience"] == ["principal", "coach"] and data["minutes"] == 20
    assert [s["page"]["slug"] for s in data["stops"]] == [first, "leadership-churn"]
    assert data["stops"][1]["question"] == "Who leaves next?" and "<em>hurts</em>" in data["stops"][1]["note_html"]


def test_move_and_remove_buttons_work_without_javascript(client, auth, three_stops):
    slug, pages_ = three_stops
    auth.login("curator")
    base = {"title": "First weeks", "audience": "superintendent", "minutes": "30", "description": "",
            "base_revision": "1", "stop_page": pages_, "stop_note": ["a", "b", "c"], "stop_question": ["", "", ""]}
    r = client.post(f"/tours/{slug}/edit", data={**base, "action": "up:2"})
    order = re.findall(r'name="stop_page" value="([^"]+)"', page_text(r))
    assert order == [pages_[0], pages_[2], pages_[1]]
    assert "not saved yet" in page_text(r)
    r = client.post(f"/tours/{slug}/edit", data={**base, "action": "down:0"})
    assert re.findall(r'name="stop_page" value="([^"]+)"', page_text(r)) == [pages_[1], pages_[0], pages_[2]]
    r = client.post(f"/tours/{slug}/edit", data={**base, "action": "remove:1"})
    assert re.findall(r'name="stop_page" value="([^"]+)"', page_text(r)) == [pages_[0], pages_[2]]
    # Nothing is stored until Save.
    assert [s["page"]["slug"] for s in client.get(f"/api/tours/{slug}").get_json()["stops"]] == pages_
    reordered = {**base, "stop_page": [pages_[2], pages_[0]], "stop_note": ["c", "a"], "stop_question": ["", ""]}
    assert client.post(f"/tours/{slug}/edit", data={**reordered, "action": "save"}).status_code == 302
    data = client.get(f"/api/tours/{slug}").get_json()
    assert [s["page"]["slug"] for s in data["stops"]] == [pages_[2], pages_[0]] and data["revision"] == 2


def test_saving_from_a_stale_revision_is_a_conflict_not_an_overwrite(app, client, auth, three_stops):
    slug, pages_ = three_stops
    auth.login("curator")
    form = {"title": "Renamed", "audience": "", "minutes": "", "description": "", "base_revision": "1",
            "stop_page": pages_[:1], "stop_note": [""], "stop_question": [""], "action": "save"}
    assert client.post(f"/tours/{slug}/edit", data=form).status_code == 302
    r = client.post(f"/tours/{slug}/edit", data={**form, "title": "Someone else's"})
    assert r.status_code == 409 and "Someone else saved this tour" in page_text(r)
    with app.extensions["kb_db"].reading() as s:
        assert tours.get_tour(s, slug).title == "Renamed"
    with pytest.raises(EditConflict):
        with app.extensions["kb_db"].writing() as s:
            tours.save_tour(s, viewer(app, "curator"), tours.clean_spec({"title": "X"}, ""), base_revision=1,
                            slug=slug)


def test_a_new_tour_cannot_take_an_existing_tours_address(client, auth, three_stops):
    auth.login("curator")
    r = client.post("/tours/new", data={"title": "First weeks", "action": "save"})
    assert r.status_code == 422 and "already a tour" in page_text(r)


def test_tour_revisions_are_kept_and_an_old_one_can_be_restored(app, client, auth, three_stops):
    slug, pages_ = three_stops
    auth.login("curator")
    form = {"title": "Shorter", "audience": "", "minutes": "", "description": "", "base_revision": "1",
            "stop_page": pages_[:1], "stop_note": ["only"], "stop_question": [""], "comment": "trimmed",
            "action": "save"}
    client.post(f"/tours/{slug}/edit", data=form)
    history = page_text(client.get(f"/tours/{slug}/history"))
    assert "trimmed" in history and f"/tours/{slug}/revisions/1" in history
    rev = page_text(client.get(f"/tours/{slug}/revisions/2"))
    assert "Shorter" in rev and "-title: First weeks" in rev
    r = client.post(f"/tours/{slug}/revisions/1/restore", data={"base_revision": "2"})
    assert r.status_code == 302
    data = client.get(f"/api/tours/{slug}").get_json()
    assert data["title"] == "First weeks" and len(data["stops"]) == 3 and data["revision"] == 3


def test_curators_see_who_started_how_far_and_when_finished(app, client, auth, three_stops):
    slug, _ = three_stops
    auth.login("reader")
    for n in (1, 2, 3):
        client.post(f"/tours/{slug}/stops/{n}/read")
    auth.logout()
    auth.login("contributor")
    client.post(f"/tours/{slug}/stops/1/read")
    auth.logout()
    with app.extensions["kb_db"].reading() as s:
        report = {r.user.name: r for r in tours.readers(s, viewer(app, "curator"), tours.get_tour(s, slug))}
    assert set(report) == {"reader", "contributor"}
    assert (report["reader"].read, report["reader"].total) == (3, 3) and report["reader"].finished_at
    assert report["contributor"].read == 1 and report["contributor"].finished_at is None
    auth.login("curator")
    page = page_text(client.get(f"/tours/{slug}/readers"))
    assert "Reader" in page and "Contributor" in page and "3 of 3" in page and "not yet" in page


# ---------------------------------------------------------------------------------------------------------------
# The transition binder

def test_the_binder_has_intro_contents_every_stop_with_fields_and_sources(client, auth, three_stops):
    slug, pages_ = three_stops
    auth.login("reader")
    binder = page_text(client.get(f"/tours/{slug}/print"))
    assert "Transition binder" in binder and "Start <strong>here</strong>." in binder
    assert 'id="binder-toc-title"' in binder
    for n, title in enumerate(("Writing assessment", "Leadership churn", "Scoring routine"), 1):
        assert f'href="#stop-{n}"' in binder and title in binder and f"Why {pages_[n - 1]} matters." in binder
    assert "Teachers scored together." in binder and "each June" in binder  # bodies and field panels
    assert binder.count("field-panel--initiative") == 1 and "field-panel--routine" in binder
    assert 'id="binder-sources"' in binder and "Seed 001, section III" in binder
    assert "tours.css" in binder


# ---------------------------------------------------------------------------------------------------------------
# The API

def test_api_lists_tours_and_gives_a_tour_with_stops(client, auth, three_stops):
    slug, pages_ = three_stops
    auth.login("reader")
    listing = client.get("/api/tours").get_json()
    assert listing["count"] == 1 and listing["tours"][0]["slug"] == slug and listing["tours"][0]["stops"] == 3
    data = client.get(f"/api/tours/{slug}").get_json()
    assert data["description_html"] == "<p>Start <strong>here</strong>.</p>"
    assert [s["number"] for s in data["stops"]] == [1, 2, 3]
    assert data["stops"][0]["page"] == {"slug": pages_[0], "title": "Writing assessment", "kind": "initiative",
                                        "revision": 1, "url": f"/wiki/{pages_[0]}"}


def test_api_progress_takes_a_stop_number_or_a_page_slug(client, auth, three_stops):
    slug, pages_ = three_stops
    auth.login("reader")
    r = client.post(f"/api/tours/{slug}/progress", json={"stop": 2})
    assert r.status_code == 200 and r.get_json()["stop"]["read"] is True
    r = client.post(f"/api/tours/{slug}/progress", json={"stop": pages_[2]})
    assert r.get_json()["progress"] == {**r.get_json()["progress"], "read": 2, "total": 3, "next_stop": 1}


@pytest.mark.parametrize("body, status, key", [
    ({"stop": 9}, 422, "stop"), ({"stop": "not-a-stop"}, 422, "stop"), ({}, 422, "stop"), ({"stop": True}, 422, "stop"),
])
def test_api_progress_errors_are_json(client, auth, three_stops, body, status, key):
    slug, _ = three_stops
    auth.login("reader")
    r = client.post(f"/api/tours/{slug}/progress", json=body)
    assert r.status_code == status and r.is_json and key in r.get_json()["details"] and r.get_json()["error"]


def test_api_errors_for_unknown_tours_bad_json_and_anonymous_writes(client, auth, three_stops):
    slug, _ = three_stops
    r = client.post(f"/api/tours/{slug}/progress", json={"stop": 1})
    assert r.status_code == 401 and r.get_json()["error"]
    auth.login("reader")
    r = client.get("/api/tours/no-such-tour")
    assert r.status_code == 404 and set(r.get_json()) == {"error", "details"}
    r = client.post(f"/api/tours/{slug}/progress", data="{nope", content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"]


def test_api_progress_with_a_token_needs_no_csrf_but_a_cookie_does(make_app, tmp_path, new_database_url):
    from kb import accounts, pages

    app = make_app(WTF_CSRF_ENABLED=True, DATA_DIR=str(tmp_path / "csrf"),
                   DATABASE_URL=new_database_url("csrf"))
    with app.extensions["kb_db"].writing() as s:
        pages.save_page(s, viewer(app, "admin"), None, pages.PageState(title="Leadership churn"), None)
        token = accounts.create_token(s, s.scalar(select(User).where(User.name == "reader")), "test")
    slug = make_tour(app, stops=["leadership-churn"])
    client = app.test_client()
    r = client.post(f"/api/tours/{slug}/progress", json={"stop": 1}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200

    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page_text(client.get("/login"))).group(1)
    client.post("/login", data={"name": "reader", "password": PASSWORD, "csrf_token": csrf})
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page_text(client.get(f"/tours/{slug}"))).group(1)
    r = client.post(f"/api/tours/{slug}/progress", json={"stop": "leadership-churn"})
    assert r.status_code == 400 and r.is_json
    r = client.post(f"/api/tours/{slug}/progress", json={"stop": "leadership-churn"}, headers={"X-CSRFToken": csrf})
    assert r.status_code == 200 and r.get_json()["progress"]["read"] == 1


def test_domain_checks_refuse_bad_tours():
    with pytest.raises(InvalidFields, match="title"):
        tours.clean_spec({"stops": []}, "")
    with pytest.raises(InvalidFields, match="minutes"):
        tours.clean_spec({"title": "T", "minutes": "soon"}, "")
    with pytest.raises(InvalidFields):
        tours.clean_spec({"title": "T", "stops": [{"page": "a", "colour": "red"}]}, "")


def test_anonymous_visitors_read_tours_only_when_anonymous_reading_is_on(make_app, tmp_path, new_database_url):
    for anonymous_read in (False, True):
        app = make_app(ANONYMOUS_READ=anonymous_read, DATA_DIR=str(tmp_path / f"anon{anonymous_read}"),
                       DATABASE_URL=new_database_url(f"anon{int(anonymous_read)}"))
        from kb import pages

        with app.extensions["kb_db"].writing() as s:
            pages.save_page(s, viewer(app, "admin"), None, pages.PageState(title="Leadership churn"), None)
            pages.save_page(s, viewer(app, "admin"), None, pages.PageState(title="Staff only", visibility="staff"),
                            None)
        slug = make_tour(app, stops=["leadership-churn", {"page": "staff-only", "note": "STAFF-NOTE"}])
        client = app.test_client()
        r = client.get(f"/tours/{slug}")
        if not anonymous_read:
            assert r.status_code == 302 and r.headers["Location"] == f"/login?next=/tours/{slug}"
            assert client.get(f"/api/tours/{slug}").status_code == 401
            continue
        assert r.status_code == 200 and "Staff only" not in page_text(r)
        stop = page_text(client.get(f"/tours/{slug}/stops/1"))
        assert "Sign in</a> to keep your place" in stop and "Stop 1 of 1" in stop
        assert client.get(f"/tours/{slug}/stops/2").status_code == 404
        assert client.post(f"/tours/{slug}/stops/1/read").status_code == 401
        assert client.get(f"/api/tours/{slug}").get_json()["progress"] is None
