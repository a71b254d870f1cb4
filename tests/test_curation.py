"""Curation and succession: queues, verification, watching, reassignment, the feed, knowledge at risk, handovers."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from kb import pages
from kb.access import Viewer
from kb.curation import handover, queues, reassignment, risk, summaries, verification, watching
from kb.errors import InvalidFields, NotAllowed
from kb.models import AuditEntry, Draft, Page, Revision, Tour, TourStop, User

T0 = datetime(2024, 1, 15, 9, 0)
ATOM = "{http://www.w3.org/2005/Atom}"


def viewer(app, name: str) -> Viewer:
    with app.extensions["kb_db"].reading() as s:
        user = s.scalar(select(User).where(User.name == name))
        return Viewer(user.id, user.name, user.role)


def page_by_slug(s, slug: str) -> Page:
    return s.scalar(select(Page).where(Page.slug == slug))


def add_user(app, name: str, role: str = "contributor", active: bool = True, leaving: bool = False) -> int:
    with app.extensions["kb_db"].writing() as s:
        user = User(name=name, role=role, display_name=name.capitalize(), active=active, leaving=leaving)
        s.add(user)
        s.flush()
        return user.id


def add_tour(app, slug: str, page_slugs: list[str], owner: str | None = None) -> None:
    with app.extensions["kb_db"].writing() as s:
        owner_id = s.scalar(select(User.id).where(User.name == owner)) if owner else None
        tour = Tour(slug=slug, title=slug.replace("-", " ").title(), owner_id=owner_id)
        s.add(tour)
        s.flush()
        for i, p in enumerate(page_slugs):
            s.add(TourStop(tour_id=tour.id, position=i, page_id=page_by_slug(s, p).id))


def edit_page(app, slug: str, as_user: str = "admin", **changes) -> None:
    with app.extensions["kb_db"].writing() as s:
        page = page_by_slug(s, slug)
        state = pages.PageState.of(page)
        for k, v in changes.items():
            setattr(state, k, v)
        pages.save_page(s, viewer(app, as_user), slug, state, page.revision, "edit")


def set_page(app, slug: str, **attrs) -> None:
    with app.extensions["kb_db"].writing() as s:
        page = page_by_slug(s, slug)
        for k, v in attrs.items():
            setattr(page, k, v)


def verify(app, slug: str, when: datetime, as_user: str = "curator") -> None:
    with app.extensions["kb_db"].writing() as s:
        verification.verify(s, viewer(app, as_user), page_by_slug(s, slug), when)


def queue_slugs(app, name: str, as_user: str = "curator", now: datetime = T0) -> list[str]:
    with app.extensions["kb_db"].reading() as s:
        return [i.slug for i in queues.queues(s, viewer(app, as_user), now, [name])[name]]


# ---------------------------------------------------------------------------------------------------------------
# The queues


@pytest.fixture
def curated(app, make_page):
    """A small knowledge base with exactly one reason for each page to be (or not be) on each queue."""
    add_user(app, "gone", active=False)
    src = ["Board minutes, 2019"]
    make_page("Hub", body="See [[Linked Page]], [[Second Hub]], [[Missing A]] and [[Missing B]].", sources=src)
    make_page("Second Hub", body="Back to [[Hub]]; also [[Missing A]].", sources=src)
    make_page("Linked Page", body="Linked from the hub.", sources=src)
    make_page("Lonely", body="Nobody links here.")
    make_page("Toured", body="Only a tour visits this.", sources=src)
    make_page("Secret Notes", body="Mentions [[Missing C]].", visibility="restricted", sources=src)
    add_tour(app, "first-weeks", ["toured"])
    set_page(app, "lonely", owner_id=None)
    with app.extensions["kb_db"].writing() as s:
        gone = s.scalar(select(User.id).where(User.name == "gone"))
        page_by_slug(s, "linked-page").owner_id = gone
    # Verified long ago (due), verified then changed (needs review), verified recently (fine).
    verify(app, "hub", T0 - timedelta(days=200))
    verify(app, "second-hub", T0 - timedelta(days=10))
    edit_page(app, "second-hub", body="Back to [[Hub]]; also [[Missing A]]. A new paragraph.")
    verify(app, "toured", T0 - timedelta(days=10))
    edit_page(app, "toured", tags=["onboarding"])  # tags are not substance: still verified
    return app


def test_needs_review_queue_has_exactly_the_due_and_changed_pages(curated):
    assert queue_slugs(curated, "needs_review") == ["hub", "second-hub"]


def test_unowned_queue_has_pages_without_owner_or_with_a_closed_owner(curated):
    assert sorted(queue_slugs(curated, "unowned")) == ["linked-page", "lonely"]


def test_orphaned_queue_skips_linked_pages_and_pages_in_a_tour(curated):
    assert sorted(queue_slugs(curated, "orphaned")) == ["lonely", "secret-notes"]
    # A contributor cannot read the restricted page, so it is neither listed nor counted.
    assert sorted(queue_slugs(curated, "orphaned", as_user="contributor")) == ["lonely"]


def test_wanted_queue_is_most_linked_first_and_counts_only_readable_links(curated):
    assert queue_slugs(curated, "wanted") == ["missing-a", "missing-b", "missing-c"]
    assert queue_slugs(curated, "wanted", as_user="contributor") == ["missing-a", "missing-b"]


def test_unsourced_queue_has_pages_without_sources(curated):
    assert queue_slugs(curated, "unsourced") == ["lonely"]


def test_api_curation_returns_every_queue_filtered_by_visibility(curated, client, auth):
    curated.config["CLOCK"] = lambda: T0
    auth.login("contributor")
    data = client.get("/api/curation").get_json()
    assert set(data) == {"needs_review", "unowned", "orphaned", "wanted", "unsourced", "at_risk"}
    assert all(set(item) == {"slug", "title", "reason"} for items in data.values() for item in items)
    assert [i["slug"] for i in data["needs_review"]] == ["hub", "second-hub"]
    assert [i["slug"] for i in data["wanted"]] == ["missing-a", "missing-b"]
    assert "secret-notes" not in str(data) and "missing-c" not in str(data)
    assert data["wanted"][0]["reason"].startswith("Linked from 2 pages")


def test_api_curation_needs_a_reader(curated, client):
    response = client.get("/api/curation")
    assert response.status_code == 401
    assert response.get_json()["error"]


def test_curate_page_shows_each_queue(curated, client, auth):
    curated.config["CLOCK"] = lambda: T0
    auth.login("curator")
    html = client.get("/curate").get_data(as_text=True)
    assert "Needs review" in html and "Second Hub" in html and "Lonely" not in html
    html = client.get("/curate?queue=wanted").get_data(as_text=True)
    assert "Missing a" in html and "Linked from 2 pages" in html


def test_bulk_actions_assign_verify_and_add_to_review(curated, client, auth):
    auth.login("curator")
    curated.config["CLOCK"] = lambda: T0
    r = client.post("/curate/bulk", data={"action": "assign", "owner": "contributor", "page": ["lonely", "linked-page"]})
    assert r.status_code == 302
    assert queue_slugs(curated, "unowned") == []
    client.post("/curate/bulk", data={"action": "verify", "page": ["hub", "second-hub"]})
    assert queue_slugs(curated, "needs_review") == []
    client.post("/curate/bulk", data={"action": "review", "page": ["lonely"]})
    assert queue_slugs(curated, "needs_review") == ["lonely"]
    with curated.extensions["kb_db"].reading() as s:
        assert page_by_slug(s, "lonely").owner.name == "contributor"
        assert s.scalar(select(AuditEntry).where(AuditEntry.action == verification.REVIEW_REQUESTED)) is not None


def test_bulk_actions_are_for_curators(curated, client, auth):
    curated.config["CLOCK"] = lambda: T0
    auth.login("contributor")
    assert client.post("/curate/bulk", data={"action": "verify", "page": ["hub"]}).status_code == 403
    assert queue_slugs(curated, "needs_review") == ["hub", "second-hub"]


# ---------------------------------------------------------------------------------------------------------------
# The lists read page summaries (a few columns), not whole pages: the same items and reasons for every viewer, and
# no column a list did not load


# Page name: (visibility, readers). Each name gets a routine that is on every queue that needs no verification
# (never verified, unowned, orphaned, unsourced, at risk), a page that is due for review and owned by someone
# who is leaving (needs review, orphaned, at risk), which links to a page not written yet (wanted), and a page that
# changed since it was verified (needs review, orphaned).
SORTS = {"Open": ("public", []), "Staff": ("staff", []), "Named": ("restricted", ["reader"]),
         "Closed": ("restricted", []), "Deleted": ("public", [])}
SEES = {"reader": ["Named", "Open", "Staff"], "contributor": ["Open", "Staff"],
        "curator": ["Closed", "Named", "Open", "Staff"], "admin": ["Closed", "Named", "Open", "Staff"]}
VERIFIED_ON = T0 - timedelta(days=200)
DUE = f"{(VERIFIED_ON + timedelta(days=180)):%Y-%m-%d}"


def add_sorts(app, make_page, suffix: str = "") -> None:
    leaver = add_user(app, "leaver" + suffix.lower(), leaving=True)
    for name, (visibility, readers) in SORTS.items():
        routine = make_page(f"{name} Routine{suffix}", kind="routine", fields={"people_who_can_run_it": 1},
                            visibility=visibility, readers=readers)
        due = make_page(f"{name} Due{suffix}", body=f"See [[Missing From {name}{suffix}]].", visibility=visibility,
                        readers=readers, sources=["Board minutes"])
        changed = make_page(f"{name} Changed{suffix}", body="Before.", visibility=visibility, readers=readers,
                            sources=["Board minutes"])
        set_page(app, routine, owner_id=None)
        verify(app, due, VERIFIED_ON)
        set_page(app, due, owner_id=leaver)
        verify(app, changed, T0 - timedelta(days=10))
        edit_page(app, changed, body="After.")
        if name == "Deleted":
            for slug in (routine, due, changed):
                set_page(app, slug, deleted_at=T0)


@pytest.fixture
def every_sort(app, make_page):
    add_sorts(app, make_page)
    return app


def expected_items(who: str) -> dict[str, list[tuple[str, str]]]:
    """(slug, reason) of every queue for a viewer, in order."""
    seen = [n.lower() for n in SEES[who]]
    routines, dues, changed = ([f"{n}-{what}" for n in seen] for what in ("routine", "due", "changed"))
    return {
        "needs_review": ([(slug, f"Review was due on {DUE} (every 180 days)") for slug in dues]
                         + [(slug, "Changed since it was verified (revision 1, now 2)") for slug in changed]),
        "never_verified": [(slug, "Nobody has verified it yet") for slug in routines],
        "unowned": [(slug, "No owner") for slug in routines],
        "unsourced": [(slug, "No sources cited") for slug in routines],
        "orphaned": [(slug, "No page links here and no tour visits it") for slug in sorted(routines + dues + changed)],
        "wanted": [(f"missing-from-{n}", "Linked from 1 page, not written yet") for n in seen],
        "at_risk": ([(slug, "Only one person can run it; not verified") for slug in routines]
                    + [(slug, "Its owner, Leaver, is leaving and nobody else owns it; needs review") for slug in dues]),
    }


@pytest.mark.parametrize("who", ["reader", "contributor", "curator", "admin"])
def test_queues_list_what_the_viewer_may_read_with_their_reasons(every_sort, who):
    with every_sort.extensions["kb_db"].reading() as s:
        found = queues.queues(s, viewer(every_sort, who), T0)
        assert {name: [(i.slug, i.reason) for i in items] for name, items in found.items()} == expected_items(who)
        for item in (item for items in found.values() for item in items if item.page is not None):
            p = item.page  # what the templates read of a listed page
            assert (p.slug, p.title) == (item.slug, item.title) and p.deleted_at is None
            assert p.kind in ("routine", "page") and p.visibility in ("public", "staff", "restricted")
            assert p.owner is None or p.owner.name in ("leaver", "admin")
            assert p.updated_at is not None


@pytest.mark.parametrize("who", ["reader", "contributor", "curator", "admin"])
def test_curation_pages_show_only_what_the_viewer_may_read(every_sort, client, auth, who):
    every_sort.config["CLOCK"] = lambda: T0
    auth.login(who)
    expected = expected_items(who)
    hidden = [f"{n} {what}" for n in SORTS if n not in SEES[who] for what in ("Routine", "Due", "Changed")]
    for name, _, _ in queues.QUEUES:
        html = client.get(f"/curate?queue={name}").get_data(as_text=True)
        listed = re.findall(r'<a (?:class="wanted" )?href="/wiki/([^"]+)"', html.split('id="queue-title"', 1)[1])
        assert listed == [slug for slug, _ in expected[name]], name
        assert all(reason in html for _, reason in expected[name])
        assert not any(title in html for title in hidden), name
        assert f'class="count">{len(expected[name])}</span>' in html
        if name == "needs_review":
            assert html.count('Leaver <span class="muted">(leaving)</span>') == len(SEES[who])
    html = client.get("/curate/risk").get_data(as_text=True)
    assert re.findall(r'class="risk__title" href="/wiki/([^"]+)"', html) == [slug for slug, _ in expected["at_risk"]]
    assert html.count("/curate/people?departing=leaver#reassign") == len(SEES[who])
    assert not any(title in html for title in hidden)
    api = client.get("/api/curation").get_json()
    assert {name: [(i["slug"], i["reason"]) for i in items] for name, items in api.items()} == {
        name: items for name, items in expected.items() if name != "never_verified"}


def count_statements(app, fn) -> int:
    from sqlalchemy import event

    engine = app.extensions["kb_db"].engine
    seen = []

    def count(*_args):
        seen.append(1)

    event.listen(engine, "before_cursor_execute", count)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def test_curation_pages_ask_the_database_the_same_number_of_times_for_more_pages(app, make_page, client, auth):
    """A list that read a column per page (a lazy load) would ask once more for each page added."""
    add_sorts(app, make_page)
    app.config["CLOCK"] = lambda: T0
    auth.login("curator")
    paths = [f"/curate?queue={name}" for name, _, _ in queues.QUEUES] + ["/curate/risk", "/api/curation"]
    for path in paths:
        client.get(path)  # anything done once per process or per session happens here
    before = {path: count_statements(app, lambda: client.get(path)) for path in paths}
    add_sorts(app, make_page, suffix=" Two")
    after = {path: count_statements(app, lambda: client.get(path)) for path in paths}
    assert after == before
    assert client.get("/curate?queue=orphaned").get_data(as_text=True).count("Routine Two</a>") == 4


def test_a_list_that_reads_a_column_it_did_not_load_fails_loudly(every_sort):
    from flask import render_template_string

    with every_sort.extensions["kb_db"].reading() as s:
        items = queues.queues(s, viewer(every_sort, "reader"), T0, ["unowned"])["unowned"]
        summary = next(i.page for i in items if i.slug == "named-routine")
        assert summary.readers == ["reader"] and summary.owner is None  # read on demand / looked up in one query
        with pytest.raises(summaries.NotLoaded):
            summary.body
        with every_sort.test_request_context(), pytest.raises(summaries.NotLoaded):
            render_template_string("{{ p.title }}: {{ p.body }}", p=summary)  # not an empty string


def test_orphaned_queue_follows_renames_and_ignores_links_from_deleted_pages(app, make_page):
    make_page("First Name", body="Renamed later.")
    make_page("Points Back", body="See [[First Name]].")
    make_page("Gone Linker", body="See [[Only From Gone]].")
    make_page("Only From Gone", body="Only a deleted page links here.")
    with app.extensions["kb_db"].writing() as s:
        page = page_by_slug(s, "first-name")
        pages.rename(s, viewer(app, "admin"), page, "Second Name", page.revision)
    set_page(app, "gone-linker", deleted_at=T0)
    # "second-name" is linked through its old address; "points-back" has no links at all.
    assert queue_slugs(app, "orphaned") == ["only-from-gone", "points-back"]


def test_a_handover_the_viewer_cannot_read_still_counts_as_written(app, make_page):
    make_page("Dr Sitting", kind="leader", fields={"tenures": [{"role": "Superintendent", "from": "2021"}]})
    make_page("Dr Open", kind="leader", fields={"tenures": [{"role": "Principal", "from": "2020"}]})
    make_page("Sitting Handover", kind="handover", visibility="restricted", fields={"outgoing": "dr-sitting"})
    with app.extensions["kb_db"].reading() as s:
        assert [r.page.slug for r in risk.at_risk(s, viewer(app, "contributor"), T0)] == ["dr-open"]


# ---------------------------------------------------------------------------------------------------------------
# Verification


def state_of(app, slug: str, now: datetime) -> verification.Verification:
    with app.extensions["kb_db"].reading() as s:
        return verification.verification(s, page_by_slug(s, slug), now)


def test_verification_expires_after_its_interval_and_renews(app, make_page):
    make_page("Budget calendar", body="Each October.")
    assert state_of(app, "budget-calendar", T0).state == "never-verified"
    verify(app, "budget-calendar", T0)
    assert state_of(app, "budget-calendar", T0 + timedelta(days=179)).state == "verified"
    expired = state_of(app, "budget-calendar", T0 + timedelta(days=180))
    assert expired.state == "needs-review" and "due" in expired.reason
    verify(app, "budget-calendar", T0 + timedelta(days=200))
    renewed = state_of(app, "budget-calendar", T0 + timedelta(days=201))
    assert renewed.state == "verified"
    assert renewed.due_on == (T0 + timedelta(days=380)).date()


def test_review_interval_is_per_page(app, make_page):
    make_page("Board retreat", body="Every summer.")
    set_page(app, "board-retreat", review_every=30)
    verify(app, "board-retreat", T0)
    assert state_of(app, "board-retreat", T0 + timedelta(days=29)).state == "verified"
    assert state_of(app, "board-retreat", T0 + timedelta(days=30)).state == "needs-review"


def test_a_material_change_needs_review_but_a_new_tag_does_not(app, make_page):
    make_page("Data team", body="Meets monthly.", kind="community", fields={"coordinator": "Ms. Rivera"})
    verify(app, "data-team", T0)
    edit_page(app, "data-team", tags=["data"], body="Meets   monthly.\n")
    assert state_of(app, "data-team", T0).state == "verified"
    edit_page(app, "data-team", fields={"coordinator": "Mr. Okafor"})
    changed = state_of(app, "data-team", T0)
    assert changed.state == "needs-review" and "changed since" in changed.reason


def test_verification_records_who_when_and_which_revision(app, make_page):
    make_page("Enrollment count", body="In September.", as_user="contributor")
    verify(app, "enrollment-count", T0, as_user="contributor")  # the owner
    with app.extensions["kb_db"].reading() as s:
        page = page_by_slug(s, "enrollment-count")
        assert (page.verified_by.name, page.verified_on, page.verified_revision) == ("contributor", T0, 1)


def test_only_the_owner_the_verifier_or_a_curator_may_verify(app, make_page):
    make_page("Principal meetings", body="Weekly.")  # owned by admin
    with app.extensions["kb_db"].writing() as s:
        page = page_by_slug(s, "principal-meetings")
        with pytest.raises(NotAllowed):
            verification.verify(s, viewer(app, "contributor"), page, T0)
        page.verifier_id = viewer(app, "contributor").user_id
        verification.verify(s, viewer(app, "contributor"), page, T0)
        assert page.verified_by_id == viewer(app, "contributor").user_id


def test_review_request_keeps_a_page_on_the_queue_until_verified(app, make_page):
    make_page("Title I plan", body="Every spring.")
    verify(app, "title-i-plan", T0)
    with app.extensions["kb_db"].writing() as s:
        verification.request_review(s, viewer(app, "curator"), page_by_slug(s, "title-i-plan"))
    assert state_of(app, "title-i-plan", T0 + timedelta(days=2)).state == "needs-review"
    verify(app, "title-i-plan", T0 + timedelta(days=3))
    assert state_of(app, "title-i-plan", T0 + timedelta(days=4)).state == "verified"


def test_review_request_on_a_page_never_verified_puts_it_on_the_queue(app, make_page):
    make_page("Bell schedule", body="x")
    assert queue_slugs(app, "never_verified") == ["bell-schedule"]
    with app.extensions["kb_db"].writing() as s:
        verification.request_review(s, viewer(app, "curator"), page_by_slug(s, "bell-schedule"))
    assert queue_slugs(app, "needs_review") == ["bell-schedule"]
    assert queue_slugs(app, "never_verified") == []


def test_page_shows_its_verification_state_and_the_verify_button(app, make_page, client, auth):
    make_page("Writing rubric", body="Scored together.")
    auth.login("curator")
    app.config["CLOCK"] = lambda: T0
    html = client.get("/wiki/writing-rubric").get_data(as_text=True)
    assert "Never verified" in html and ">Verify</button>" in html
    assert client.post("/curate/verify/writing-rubric").status_code == 302
    html = client.get("/wiki/writing-rubric").get_data(as_text=True)
    assert "Verified" in html and "2024-01-15" in html and "2024-07-13" in html
    app.config["CLOCK"] = lambda: T0 + timedelta(days=181)
    assert "Needs review" in client.get("/wiki/writing-rubric").get_data(as_text=True)


def test_readers_see_the_state_but_cannot_verify(app, make_page, client, auth):
    make_page("Bus routes", body="Set in August.")
    auth.login("reader")
    html = client.get("/wiki/bus-routes").get_data(as_text=True)
    assert "Never verified" in html and ">Verify</button>" not in html
    assert client.post("/curate/verify/bus-routes").status_code == 403


def test_owner_sets_the_verifier_and_interval(app, make_page, client, auth):
    make_page("Course catalog", body="Each winter.", as_user="contributor")
    auth.login("contributor")
    r = client.post("/curate/page/course-catalog", data={"verifier": "curator", "review_every": "90"})
    assert r.status_code == 302
    with app.extensions["kb_db"].reading() as s:
        page = page_by_slug(s, "course-catalog")
        assert (page.verifier.name, page.review_every, page.owner.name) == ("curator", 90, "contributor")


# ---------------------------------------------------------------------------------------------------------------
# Reassignment


def test_reassignment_moves_pages_tours_and_verifications_and_is_logged(app, make_page, client, auth):
    add_user(app, "departing", role="contributor")
    add_user(app, "successor", role="contributor")
    make_page("Budget process", body="x", as_user="departing")
    make_page("Staffing notes", body="x", as_user="curator", visibility="restricted")
    set_page(app, "staffing-notes", owner_id=viewer(app, "departing").user_id)
    make_page("Grant reports", body="x", as_user="admin")
    set_page(app, "grant-reports", verifier_id=viewer(app, "departing").user_id)
    make_page("Untouched", body="x", as_user="admin")
    verify(app, "budget-process", T0, as_user="departing")
    add_tour(app, "budget-tour", ["budget-process"], owner="departing")

    auth.login("curator")
    r = client.post("/curate/reassign", data={"departing": "departing", "successor": "successor"})
    assert r.status_code == 302
    with app.extensions["kb_db"].reading() as s:
        succ = viewer(app, "successor").user_id
        dep = viewer(app, "departing").user_id
        assert page_by_slug(s, "budget-process").owner_id == succ
        assert page_by_slug(s, "staffing-notes").owner_id == succ
        assert page_by_slug(s, "grant-reports").verifier_id == succ
        assert page_by_slug(s, "grant-reports").owner_id != succ
        assert page_by_slug(s, "untouched").owner_id != succ
        assert s.scalar(select(Tour).where(Tour.slug == "budget-tour")).owner_id == succ
        assert page_by_slug(s, "budget-process").verified_by_id == dep  # history stays
        assert reassignment.holdings(s, [dep])[dep].total == 0
        entries = list(s.scalars(select(AuditEntry).where(AuditEntry.action == "user.reassign")))
        assert len(entries) == 1
        entry = entries[0]
        assert entry.target == "departing" and entry.actor.name == "curator"
        assert entry.details["successor"] == "successor"
        assert entry.details["pages"] == ["budget-process", "staffing-notes"]
        assert entry.details["tours"] == ["budget-tour"]
        assert entry.details["verifications"] == ["grant-reports"]


def test_only_curators_reassign(app, make_page, client, auth):
    auth.login("contributor")
    r = client.post("/curate/reassign", data={"departing": "admin", "successor": "contributor"})
    assert r.status_code == 403
    assert client.get("/curate/people").status_code == 403


def test_reassignment_refuses_a_closed_successor(app):
    add_user(app, "closed", active=False)
    with app.extensions["kb_db"].writing() as s:
        users = {u.name: u for u in s.scalars(select(User))}
        with pytest.raises(InvalidFields):
            reassignment.reassign(s, viewer(app, "curator"), users["admin"], users["closed"])


# ---------------------------------------------------------------------------------------------------------------
# Recent changes and the feed


@pytest.fixture
def mixed_visibility(app, make_page):
    make_page("Open Agenda", body="Everyone may read this.", tags=["board"])
    make_page("Staff Calendar", body="Staff only.", visibility="staff", tags=["board"], kind="routine")
    make_page("Personnel Handover", body="Restricted.", visibility="restricted", kind="handover")
    make_page("Named Reader Note", body="Restricted, but contributor is named.", visibility="restricted",
              readers=["contributor"])
    return app


def feed_titles(response) -> list[str]:
    root = ET.fromstring(response.data)
    assert root.tag == f"{ATOM}feed"
    return [e.findtext(f"{ATOM}title") for e in root.findall(f"{ATOM}entry")]


def test_feed_token_shows_what_its_owner_may_read_and_never_restricted_pages(mixed_visibility, client, auth):
    auth.login("contributor")
    html = client.post("/curate/feed-token", data={"action": "create"}).get_data(as_text=True)
    url = re.search(r'value="(http://[^"]+/recent\.atom\?token=[^"]+)"', html).group(1)
    token = url.split("token=", 1)[1]
    with mixed_visibility.extensions["kb_db"].reading() as s:
        stored = s.scalar(select(User.feed_token_hash).where(User.name == "contributor"))
        assert stored and token not in stored
    auth.logout()
    titles = " ".join(feed_titles(client.get(f"/recent.atom?token={token}")))
    assert "Open Agenda" in titles and "Staff Calendar" in titles and "Named Reader Note" in titles
    assert "Personnel Handover" not in titles
    assert "Personnel" not in client.get(f"/recent.atom?token={token}&kind=handover").get_data(as_text=True)


def test_feed_without_a_valid_token_shows_only_what_anonymous_visitors_see(mixed_visibility, client, auth):
    assert feed_titles(client.get("/recent.atom")) == []  # anonymous reading is off
    assert feed_titles(client.get("/recent.atom?token=kbf_wrong")) == []
    auth.login("admin")  # a browser session is not a feed token
    assert feed_titles(client.get("/recent.atom")) == []
    mixed_visibility.config["ANONYMOUS_READ"] = True
    titles = feed_titles(client.get("/recent.atom"))
    assert titles == ["Open Agenda (New page)"]


def test_revoked_feed_token_stops_working(mixed_visibility, client, auth):
    auth.login("curator")
    html = client.post("/curate/feed-token", data={"action": "create"}).get_data(as_text=True)
    token = re.search(r"token=([\w-]+)", html).group(1)
    assert any("Personnel" in t for t in feed_titles(client.get(f"/recent.atom?token={token}")))
    client.post("/curate/feed-token", data={"action": "revoke"})
    assert feed_titles(client.get(f"/recent.atom?token={token}")) == []


def test_recent_changes_filter_by_kind_tag_and_user(mixed_visibility, make_page, client, auth):
    make_page("Reading Routine", body="x", kind="routine", as_user="curator")
    auth.login("contributor")
    html = client.get("/recent").get_data(as_text=True)
    assert "Open Agenda" in html and "Staff Calendar" in html and "Personnel Handover" not in html
    html = client.get("/recent?kind=routine").get_data(as_text=True)
    assert "Staff Calendar" in html and "Reading Routine" in html and "Open Agenda" not in html
    html = client.get("/recent?tag=board").get_data(as_text=True)
    assert "Open Agenda" in html and "Reading Routine" not in html
    html = client.get("/recent?user=curator").get_data(as_text=True)
    assert "Reading Routine" in html and "Open Agenda" not in html
    assert feed_titles(client.get("/recent.atom?kind=routine")) == []  # the feed is anonymous without a token


def test_recent_changes_need_a_reader(app, client):
    r = client.get("/recent")
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/recent"


# ---------------------------------------------------------------------------------------------------------------
# Watching and "since your last visit"


def test_changes_since_last_visit_show_watched_pages_tags_and_followed_kinds(app, make_page, client, auth):
    make_page("Literacy Plan", body="v1")
    make_page("Math Plan", body="v1", tags=["math"])
    make_page("Unwatched", body="v1")
    auth.login("contributor")
    client.post("/curate/watch", data={"page": "literacy-plan", "on": "1"})
    client.post("/curate/watch", data={"tag": "math", "on": "1"})
    client.post("/changes/follow", data={"kind": ["lesson"]})
    client.post("/changes/seen")
    edit_page(app, "literacy-plan", body="v2")
    edit_page(app, "math-plan", body="v2")
    edit_page(app, "unwatched", body="v2")
    make_page("Pilot Lesson", kind="lesson", body="New.")
    make_page("Own Edit", body="x", as_user="contributor")
    client.post("/curate/watch", data={"page": "own-edit", "on": "1"})
    edit_page(app, "own-edit", body="mine", as_user="contributor")

    html = client.get("/changes").get_data(as_text=True).split("<h1>", 1)[1]
    assert "Literacy Plan" in html and "you watch this page" in html
    assert "Math Plan" in html and "#math" in html
    assert "Pilot Lesson" in html and "a kind you follow" in html
    assert "Unwatched" not in html.split("Pages you watch")[0]
    assert "Own Edit" not in html.split("Pages you watch")[0]
    home = client.get("/").get_data(as_text=True)
    assert "Since your last visit" in home and "Literacy Plan" in home


def test_watched_page_that_becomes_hidden_disappears_from_changes(app, make_page, client, auth):
    make_page("Reorg Notes", body="v1")
    auth.login("contributor")
    client.post("/curate/watch", data={"page": "reorg-notes", "on": "1"})
    client.post("/changes/seen")
    edit_page(app, "reorg-notes", body="now secret", visibility="restricted", as_user="curator")
    assert "Reorg Notes" not in client.get("/changes").get_data(as_text=True).split("<h1>", 1)[1]


def test_a_visit_moves_last_visit_forward_and_keeps_the_previous_one():
    user = User(name="x")
    assert watching.record_visit(user, T0) is None
    assert watching.record_visit(user, T0 + timedelta(minutes=5)) is None  # the same visit
    assert watching.record_visit(user, T0 + timedelta(hours=3)) == T0 + timedelta(minutes=5)
    assert user.last_visit_at == T0 + timedelta(hours=3)


def test_unwatching_a_page(app, make_page, client, auth):
    make_page("Safety Drill", body="x")
    auth.login("reader")
    client.post("/curate/watch", data={"page": "safety-drill", "on": "1"})
    assert "Stop watching" in client.get("/wiki/safety-drill").get_data(as_text=True)
    client.post("/curate/watch", data={"page": "safety-drill", "on": "0"})
    assert "Stop watching" not in client.get("/wiki/safety-drill").get_data(as_text=True)


# ---------------------------------------------------------------------------------------------------------------
# Knowledge at risk


def test_risk_ranking_matches_the_rules(app, make_page):
    add_user(app, "leaver", leaving=True)
    make_page("Scoring Day", kind="routine", fields={"people_who_can_run_it": 1})
    make_page("Budget Build", kind="routine", fields={"people_who_can_run_it": 3})
    make_page("Unknown Routine", kind="routine")
    make_page("Dr Sitting", kind="leader", fields={"tenures": [{"role": "Superintendent", "from": "2021"}]})
    make_page("Dr Covered", kind="leader", fields={"tenures": [{"role": "Director", "from": "2020"}]})
    make_page("Dr Past", kind="leader", fields={"tenures": [{"role": "Principal", "from": "2001", "to": "2005"}]})
    make_page("Covered Handover", kind="handover", fields={"outgoing": "dr-covered", "risk":
                                                           {"attrition": 2, "criticality": 2}})
    make_page("Risky Handover", kind="handover", fields={"risk": {"attrition": 4, "criticality": 5}})
    make_page("Checked Handover", kind="handover", fields={"risk": {"attrition": 5, "criticality": 5},
                                                           "successor_checked": "2024-01-02"})
    make_page("Math Teachers", kind="community", fields={"stage": "active"})
    make_page("Coached Group", kind="community", fields={"coordinator": "Ms. Lee"})
    make_page("Writing Pilot", kind="initiative", fields={"status": "active"})
    make_page("Old Pilot", kind="initiative", fields={"status": "ended", "ended_reason": "funding"})
    make_page("Known Pilot", kind="initiative", fields={"status": "active", "experts": ["Ms. Park"]})
    make_page("Leavers Page", body="x")
    set_page(app, "leavers-page", owner_id=viewer(app, "leaver").user_id)
    verify(app, "scoring-day", T0)

    with app.extensions["kb_db"].reading() as s:
        rows = risk.at_risk(s, viewer(app, "curator"), T0)
    found = [(r.rule, r.page.slug) for r in rows]
    assert found == [
        ("no-handover", "dr-sitting"),             # 60, +5 as it is not verified
        ("unchecked-handover", "risky-handover"),  # 35 + 4 × 5, +5
        ("bus-factor", "scoring-day"),             # 55, verified
        ("owner-leaving", "leavers-page"),         # 45, +5
        ("no-experts", "writing-pilot"),           # 35, +5
        ("no-coordinator", "math-teachers"),       # 30, +5
    ]
    assert rows[0].score > rows[-1].score


def test_risk_rows_link_to_where_they_are_fixed(app, make_page, client, auth):
    make_page("Scoring Day", kind="routine", fields={"people_who_can_run_it": 1})
    make_page("Dr Sitting", kind="leader", fields={"tenures": [{"role": "Superintendent", "from": "2021"}]})
    make_page("Risky Handover", kind="handover", fields={"risk": {"attrition": 4, "criticality": 5}})
    auth.login("curator")
    html = client.get("/curate/risk").get_data(as_text=True)
    assert "/wiki/scoring-day/edit#field-people_who_can_run_it" in html
    assert "/curate/handover?leader=dr-sitting" in html
    assert "/curate/handover/risky-handover/confirm" in html
    api = client.get("/api/curation").get_json()["at_risk"]
    assert [i["slug"] for i in api] == ["dr-sitting", "risky-handover", "scoring-day"]


def test_risk_list_hides_pages_the_viewer_cannot_read(app, make_page):
    make_page("Secret Routine", kind="routine", fields={"people_who_can_run_it": 1}, visibility="restricted")
    with app.extensions["kb_db"].reading() as s:
        assert risk.at_risk(s, viewer(app, "contributor"), T0) == []
        assert len(risk.at_risk(s, viewer(app, "curator"), T0)) == 1


# ---------------------------------------------------------------------------------------------------------------
# The handover wizard


def test_new_handover_opens_the_wizard(app, client, auth):
    auth.login("contributor")
    r = client.get("/new?kind=handover")
    assert r.status_code == 302 and "/curate/handover" in r.headers["Location"]
    assert "Whose handover is it?" in client.get(r.headers["Location"]).get_data(as_text=True)


def wizard_post(client, step: int, action: str = "next", **answers):
    data = {"step": str(step), "action": action}
    data.update({f"q.{k}" if not k.startswith("q.") else k: v for k, v in answers.items()})
    return client.post("/curate/handover", data=data)


def test_wizard_saves_progress_links_the_leader_and_the_successor_confirms(app, make_page, client, auth):
    make_page("Dr Rivera", kind="leader", fields={"tenures": [{"role": "Superintendent", "from": "2019"}]})
    make_page("Dr Chen", kind="leader")
    make_page("Writing Assessment", kind="initiative", fields={"status": "active"})
    make_page("Board Report", kind="routine")
    auth.login("contributor")
    client.post("/curate/handover", data={"action": "start", "leader": "dr-rivera"})
    html = client.get("/curate/handover?step=1").get_data(as_text=True)
    assert "Which role are you handing over?" in html and 'value="Superintendent"' in html

    wizard_post(client, 0, role="Superintendent", outgoing="dr-rivera", incoming="dr-chen", overlap="Two weeks")
    with app.extensions["kb_db"].reading() as s:
        draft = s.scalar(select(Draft))
        assert draft.step == 1 and draft.data["overlap"] == "Two weeks"
    wizard_post(client, 1, **{"in_flight": "writing-assessment", "in_flight.other": "Math Pilot",
                              "decisions_pending": "Renew the MOU by June"})
    wizard_post(client, 2, routines_owned="board-report", where_things_are="Shared drive, folder Board")
    # Leaving and coming back: the answers are still there.
    auth.logout()
    auth.login("contributor")
    html = client.get("/curate/handover").get_data(as_text=True)
    assert "Whom should your successor call, and when?" in html
    wizard_post(client, 3, relationships="Call the union president before the budget.")
    html = client.get("/curate/handover?step=5").get_data(as_text=True)
    assert "What will break first when you leave?" in html
    wizard_post(client, 4, will_break="The partner meetings, which only I call.", taboos="")
    r = wizard_post(client, 5, **{"risk.attrition": "4", "risk.criticality": ""})
    assert r.status_code == 422 and "answer both questions" in r.get_data(as_text=True)
    wizard_post(client, 5, **{"risk.attrition": "4", "risk.criticality": "5", "body": "Good luck."})
    html = client.get("/curate/handover").get_data(as_text=True)
    assert "Check and save" in html and "Call the union president" in html and "Handover: Superintendent (Dr Rivera)" in html
    r = wizard_post(client, 6, action="finish", title="Handover: Superintendent, 2024", visibility="staff")
    assert r.status_code == 200 and "Your handover is saved" in r.get_data(as_text=True)

    with app.extensions["kb_db"].reading() as s:
        assert s.scalar(select(Draft)) is None
        handover = page_by_slug(s, "handover-superintendent-2024")
        f = handover.fields
        assert (handover.kind, handover.visibility, handover.owner.name) == ("handover", "staff", "contributor")
        assert f["outgoing"] == "dr-rivera" and f["incoming"] == "dr-chen"
        assert f["in_flight"] == ["writing-assessment", "math-pilot"]
        assert f["routines_owned"] == ["board-report"]
        assert f["risk"] == {"attrition": 4, "criticality": 5}
        assert f["will_break"].startswith("The partner meetings")
        assert "taboos" not in f and "successor_checked" not in f
        leader = page_by_slug(s, "dr-rivera")
        assert leader.fields["handover"] == handover.slug and leader.revision == 2
        assert page_by_slug(s, "dr-chen").fields["handover"] == handover.slug

    auth.logout()
    auth.login("curator")  # the successor
    app.config["CLOCK"] = lambda: T0
    html = client.get(f"/curate/handover/{handover.slug}/confirm").get_data(as_text=True)
    assert "Is this handover usable?" in html
    assert client.post(f"/curate/handover/{handover.slug}/confirm").status_code == 302
    with app.extensions["kb_db"].reading() as s:
        handover = page_by_slug(s, "handover-superintendent-2024")
        assert handover.fields["successor_checked"] == "2024-01-15" and handover.revision == 2
        assert s.scalar(select(Revision.comment).where(Revision.page_id == handover.id, Revision.number == 2)) \
            .startswith("Confirmed usable")
    assert "Successor checked" in client.get(f"/wiki/{handover.slug}").get_data(as_text=True)


def test_wizard_is_for_contributors(app, client, auth):
    auth.login("reader")
    assert client.get("/curate/handover").status_code == 403


def test_read_step_turns_ticked_pages_and_typed_names_into_links():
    step = handover.HANDOVER_STEPS[1]
    form = MultiDict([("q.in_flight", "writing-assessment"), ("q.in_flight.other", "Math Pilot\n\nwriting assessment"),
                      ("q.decisions_pending", "One\n\nTwo ")])
    assert handover.read_step(step, form) == {"in_flight": ["writing-assessment", "math-pilot"],
                                              "decisions_pending": ["One", "Two"]}


def test_wizard_step_checks_catch_bad_answers_but_allow_empty_ones():
    risk = handover.HANDOVER_STEPS[5]
    assert handover.step_errors(risk, {}) == {}
    assert "risk.attrition" in handover.step_errors(risk, {"risk.attrition": "9", "risk.criticality": "2"})
    review = handover.HANDOVER_STEPS[-1]
    assert "title" in handover.step_errors(review, {"visibility": "staff"})


def test_contributor_cannot_make_a_handover_restricted_through_the_wizard(app, client, auth):
    auth.login("contributor")
    client.post("/curate/handover", data={"action": "start"})
    for i in range(6):
        wizard_post(client, i)
    wizard_post(client, 6, action="finish", title="Handover: Director", visibility="restricted")
    with app.extensions["kb_db"].reading() as s:
        assert page_by_slug(s, "handover-director").visibility == "staff"
