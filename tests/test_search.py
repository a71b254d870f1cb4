"""Search: ranking, stemming, facets and filters, "did you mean", privacy, the index queue, repair, odd queries."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from kb import create_app, instance
from kb.search import whoosh as search
from kb.access import Viewer
from kb.db import Database
from kb.models import IndexQueueEntry, Page
from conftest import viewer_for

READER = Viewer(user_id=900, name="someone", role="reader")


# --- Domain-level helpers: a database on tmp_path with Page rows inserted directly ------------------------------

@pytest.fixture
def db(database_url):
    database = Database(database_url)
    database.upgrade()
    yield database
    database.dispose()


def add_pages(db, *pages: dict) -> list[int]:
    """Insert pages (with an index queue entry each, as the save path does)."""
    ids = []
    with db.writing() as s:
        for spec in pages:
            spec = dict(spec)
            spec.setdefault("slug", spec["title"].lower().replace(" ", "-"))
            spec.setdefault("kind", "page")
            spec.setdefault("revision", 1)
            page = Page(**spec)
            s.add(page)
            s.flush()
            s.add(IndexQueueEntry(page_id=page.id))
            ids.append(page.id)
    return ids


def slugs(results) -> list[str]:
    return [h.slug for h in results.hits]


@pytest.fixture
def index(db, tmp_path):
    search.rebuild(db, str(tmp_path))
    ix = search.open_index(str(tmp_path))
    yield ix
    ix.close()


def indexed(db, ix, *pages: dict) -> list[int]:
    ids = add_pages(db, *pages)
    assert search.process_queue(db, ix) == len(ids)
    return ids


# --- Ranking, stemming, snippets --------------------------------------------------------------------------------

def test_title_match_outranks_body_only_match(db, index):
    indexed(db, index,
            {"title": "Budget calendar", "body": "Writing assessment, writing assessment and the writing assessment "
                                                 "again: this page mentions it often but is about the budget."},
            {"title": "District writing assessment", "body": "Teachers scored samples together."},
            {"title": "Other", "body": "Nothing to see.", "tags": ["writing-assessment"]})
    found = search.search(index, READER, "writing assessment")
    assert slugs(found)[:2] in (["district-writing-assessment", "other"], ["other", "district-writing-assessment"])
    assert slugs(found)[0] == "district-writing-assessment"
    assert slugs(found)[-1] == "budget-calendar"


def test_tag_match_outranks_body_only_match(db, index):
    indexed(db, index, {"title": "Notes one", "body": "induction induction induction of new principals"},
            {"title": "Notes two", "body": "A short page.", "tags": ["induction"]})
    assert slugs(search.search(index, READER, "induction")) == ["notes-two", "notes-one"]


def test_stemming_finds_other_forms_of_a_word(db, index):
    indexed(db, index, {"title": "New principals", "body": "How we onboard a principal in August."},
            {"title": "Unrelated", "body": "Bus schedules."})
    assert slugs(search.search(index, READER, "onboarding")) == ["new-principals"]
    assert slugs(search.search(index, READER, "onboarded principals")) == ["new-principals"]


def test_phrase_needs_the_words_in_order_and_minus_excludes(db, index):
    indexed(db, index, {"title": "A", "body": "the writing assessment of 2003"},
            {"title": "B", "body": "assessment of writing, in that order"},
            {"title": "C", "body": "writing assessment rubric"})
    assert sorted(slugs(search.search(index, READER, '"writing assessment"'))) == ["a", "c"]
    assert sorted(slugs(search.search(index, READER, 'writing assessment -rubric'))) == ["a", "b"]
    assert sorted(slugs(search.search(index, READER, '"writing assessment" -"rubric"'))) == ["a"]


def test_snippet_highlights_matches_and_escapes_page_text(db, index):
    indexed(db, index, {"title": "Tricky", "body": "Intro <script>alert('x')</script> & the **assessment** rubric."})
    hit = search.search(index, READER, "assessment").hits[0]
    assert "<mark>assessment</mark>" in hit.snippet
    assert "<script>" not in hit.snippet and "&lt;script&gt;" not in hit.snippet  # tags are stripped, not shown
    assert "&amp;" in hit.snippet
    indexed(db, index, {"title": "Angle", "body": "Compare a < b and b > c in the rubric."})
    hit = search.search(index, READER, "rubric compare").hits[0]
    assert "a &lt; b" in hit.snippet and "<mark>rubric</mark>" in hit.snippet


def test_strip_markdown_keeps_words_and_link_labels():
    text = search.strip_markdown("# Title\n\nSee [[fresno-long-beach|the Partnership]] and [[writing-assessment]],"
                                 " **bold** `code` [site](https://x.org).\n\n| a | b |\n|---|---|\n| c | d |")
    assert text == "Title See the Partnership and writing assessment, bold code site. a b c d"


# --- Facets and filters -----------------------------------------------------------------------------------------

@pytest.fixture
def district(db, index):
    indexed(
        db, index,
        {"title": "Writing assessment", "kind": "initiative", "status": "ended", "tags": ["writing", "assessment"],
         "fields": {"status": "ended", "started": "2002", "ended": "2004", "ended_reason": "assumed-failed"},
         "body": "Teachers built rubrics for the writing assessment."},
        {"title": "New writing assessment", "kind": "initiative", "status": "active", "tags": ["writing"],
         "fields": {"status": "active", "started": "2009"}, "body": "A new director designs a writing assessment."},
        {"title": "Scoring writing together", "kind": "routine", "tags": ["writing"],
         "fields": {"cadence": "each spring"}, "body": "Teachers score writing samples together each spring."},
        {"title": "Assessment ended too soon", "kind": "lesson", "status": "lesson", "tags": ["assessment"],
         "fields": {"occurred": "2005", "maturity": "lesson", "lesson": "Ask teachers before ending an assessment."},
         "body": "The writing assessment died because nobody asked."},
    )
    return index


def test_facet_counts_match_the_pages(district):
    found = search.search(district, READER, "writing")
    assert found.total == 4
    assert found.facets["kind"] == {"initiative": 2, "lesson": 1, "routine": 1}
    assert found.facets["tag"] == {"writing": 3, "assessment": 2}
    assert found.facets["status"] == {"active": 1, "ended": 1, "lesson": 1}
    assert found.facets["decade"] == {"2000s": 3, "2010s": 1, "2020s": 1}  # the active one runs to today


@pytest.mark.parametrize("query, params, expected", [
    ("writing kind:initiative", {}, {"writing-assessment", "new-writing-assessment"}),
    ("writing", {"kind": "routine"}, {"scoring-writing-together"}),
    ("writing tag:assessment", {}, {"writing-assessment", "assessment-ended-too-soon"}),
    ("writing", {"tag": "assessment"}, {"writing-assessment", "assessment-ended-too-soon"}),
    ("writing status:ended", {}, {"writing-assessment"}),
    ("writing", {"status": "active"}, {"new-writing-assessment"}),
    ("writing year:2003", {}, {"writing-assessment"}),
    ("writing year:2004-2006", {}, {"writing-assessment", "assessment-ended-too-soon"}),
    ("writing", {"year": "2005"}, {"assessment-ended-too-soon"}),
    ("kind:lesson", {}, {"assessment-ended-too-soon"}),
    ("", {"kind": "initiative", "status": "ended"}, {"writing-assessment"}),
])
def test_each_filter_narrows_from_the_box_and_as_a_parameter(district, query, params, expected):
    found = search.search(district, READER, query, **params)
    assert set(slugs(found)) == expected
    assert found.total == len(expected)


def test_facet_counts_follow_the_filters(district):
    found = search.search(district, READER, "writing", kind="initiative")
    assert found.facets["kind"] == {"initiative": 2}
    assert found.facets["status"] == {"active": 1, "ended": 1}


def test_sort_by_last_update_and_pagination(db, index):
    base = datetime(2024, 1, 1)
    indexed(db, index, *({"title": f"Mentor note {i}", "body": "mentor", "updated_at": base + timedelta(days=i)}
                         for i in range(25)))
    first = search.search(index, READER, "mentor", sort="updated", page=1)
    assert first.total == 25 and first.pages == 3
    assert slugs(first)[:3] == ["mentor-note-24", "mentor-note-23", "mentor-note-22"]
    third = search.search(index, READER, "mentor", sort="updated", page=3)
    assert slugs(third) == [f"mentor-note-{i}" for i in range(4, -1, -1)]
    assert len(search.search(index, READER, "mentor", per_page=7, offset=21).hits) == 4


# --- Did you mean, suggestions, tried before --------------------------------------------------------------------

def test_misspelling_gets_the_word_from_the_index(district):
    found = search.search(district, READER, "writting asessment")
    assert found.suggestion == "writing assessment"
    assert search.search(district, READER, "rubricks").suggestion == "rubrics"
    assert search.search(district, READER, "writing").suggestion is None


def test_suggest_titles_as_you_type(district):
    assert [s["slug"] for s in search.suggest(district, READER, "writ")] == [
        "writing-assessment", "new-writing-assessment", "scoring-writing-together"]
    assert [s["slug"] for s in search.suggest(district, READER, "new wri")] == ["new-writing-assessment"]
    assert search.suggest(district, READER, "") == []
    assert set(search.suggest(district, READER, "asse")[0]) == {"slug", "title", "kind"}


def test_tried_before_lists_ended_initiatives_first_and_lessons(district):
    tried = search.tried_before(district, READER, "District-wide writing assessment")
    assert [h.slug for h in tried.initiatives] == ["writing-assessment", "new-writing-assessment"]
    assert tried.initiatives[0].ended_reason == "assumed-failed"
    assert tried.initiatives[0].period == "2002–2004"
    assert [h.slug for h in tried.lessons] == ["assessment-ended-too-soon"]
    assert not search.tried_before(district, READER, "bus routes")
    excluded = search.tried_before(district, READER, "writing assessment", exclude="new-writing-assessment")
    assert [h.slug for h in excluded.initiatives] == ["writing-assessment"]


# --- Visibility inside the search layer -------------------------------------------------------------------------

CANARY = {"title": "Canary handover", "kind": "handover", "visibility": "restricted", "readers": ["named"],
          "tags": ["canarytag"], "body": "Personnel notes: zebraquokka marmoset assessment."}


def test_restricted_canary_never_leaks_to_someone_who_may_not_read_it(district, db):
    before = search.search(district, READER, "assessment")
    indexed(db, district, CANARY)
    viewers_without = [READER, Viewer(901, "staffer", "contributor"), Viewer(anonymous_read=True), Viewer()]
    for v in viewers_without:
        found = search.search(district, v, "assessment")
        assert "canary-handover" not in slugs(found)
        if v.signed_in:
            assert found.total == before.total and found.facets == before.facets
        assert search.search(district, v, "zebraquokka").total == 0
        assert search.search(district, v, "zebraquokka").facets == {f: {} for f in search.FACET_NAMES}
        assert search.search(district, v, "zebraquoka").suggestion is None  # did you mean: nothing to offer
        assert search.search(district, v, "", tag="canarytag").total == 0
        assert search.suggest(district, v, "cana") == []
        assert not search.tried_before(district, v, "zebraquokka handover")
    for v in (Viewer(902, "named", "reader"), Viewer(903, "boss", "curator"), Viewer(904, "root", "admin")):
        found = search.search(district, v, "zebraquokka")
        assert slugs(found) == ["canary-handover"] and "<mark>zebraquokka</mark>" in found.hits[0].snippet
        assert found.facets["kind"] == {"handover": 1}
        assert search.search(district, v, "zebraquoka").suggestion == "zebraquokka"
        assert [s["slug"] for s in search.suggest(district, v, "cana")] == ["canary-handover"]


def test_anonymous_viewer_without_anonymous_reading_sees_nothing(district):
    assert search.search(district, Viewer(), "writing").total == 0
    assert search.search(district, Viewer(anonymous_read=True), "writing").total == 4


# --- Queue, concurrency, repair ---------------------------------------------------------------------------------

def test_locked_index_leaves_the_queue_for_later(db, index):
    add_pages(db, {"title": "Queued page", "body": "mentoring"})
    writer = index.open().writer()  # another process holds the write lock
    try:
        assert search.process_queue(db, index) == 0
        assert search.queue_length(db) == 1
    finally:
        writer.cancel()
    assert search.process_queue(db, index) == 1
    assert search.queue_length(db) == 0
    assert slugs(search.search(index, READER, "mentoring")) == ["queued-page"]


def test_worker_indexes_a_save_within_two_seconds_once_the_lock_is_free(db, index):
    worker = search.Worker(db, index, interval=0.1).start()
    try:
        writer = index.open().writer()
        add_pages(db, {"title": "Late page", "body": "cadence"})
        time.sleep(0.3)
        writer.cancel()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not search.search(index, READER, "cadence").total:
            time.sleep(0.05)
        assert slugs(search.search(index, READER, "cadence")) == ["late-page"]
    finally:
        worker.stop()


SAVER = textwrap.dedent("""
    import sys
    from kb.search import whoosh as search
    from kb.db import Database
    from kb.models import IndexQueueEntry, Page
    url, data_dir, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    db = Database(url)
    index = search.open_index(data_dir)
    for i in range(n):
        with db.writing() as s:
            page = Page(slug=f"{prefix}-{i}", title=f"{prefix} {i}", kind="page", body=f"concurrent {prefix}",
                        revision=1)
            s.add(page)
            s.flush()
            s.add(IndexQueueEntry(page_id=page.id))
        search.process_queue(db, index)  # often finds the index locked by the other process: that is the point
    db.dispose()
""")


def test_saves_from_two_processes_at_once_are_all_indexed(db, index, tmp_path):
    url = db.url
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, url, str(tmp_path), name, "15"], env=env)
             for name in ("alpha", "beta")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    search.process_queue(db, index)  # what was left while the index was locked
    assert search.queue_length(db) == 0
    assert search.search(index, READER, "concurrent alpha").total == 15
    assert search.search(index, READER, "concurrent beta").total == 15
    assert search.check(db, index).ok


def test_check_reports_drift_and_repair_fixes_it(db, index):
    ids = indexed(db, index, {"title": "Kept", "body": "routine"}, {"title": "Changed", "body": "routine"},
                  {"title": "Gone", "body": "routine"})
    with db.writing() as s:
        s.get(Page, ids[1]).revision = 2
        s.get(Page, ids[1]).body = "routine renamed everything"
        s.delete(s.get(Page, ids[2]))
        s.add(Page(slug="unindexed", title="Unindexed", kind="page", body="routine", revision=1))
        s.execute(IndexQueueEntry.__table__.delete())
    report = search.check(db, index)
    assert report.stale == [ids[1]] and report.extra == [ids[2]] and len(report.missing) == 1
    assert report.drift and "1 missing, 1 stale, 1 extra" in report.describe()
    fixed = search.repair(db, index, report)
    assert fixed.ok and fixed.repaired
    assert sorted(slugs(search.search(index, READER, "routine"))) == ["changed", "kept", "unindexed"]


def test_rebuild_swaps_in_a_new_directory(db, index, tmp_path):
    indexed(db, index, {"title": "First", "body": "tenure"})
    old = index.current_build()
    report = search.rebuild(db, str(tmp_path))
    assert report.pages == 1 and index.current_build() != old
    assert slugs(search.search(index, READER, "tenure")) == ["first"]
    search.rebuild(db, str(tmp_path))
    builds = [n for n in os.listdir(tmp_path / "index") if n.startswith("b-")]
    assert len(builds) == 2  # the current one and the one just replaced (another process may read it)


# --- Through the app: start-up repair, the CLI, HTTP ------------------------------------------------------------

def _restart(app):
    """A new app (a new server process) on the same data directory."""
    config = {k: app.config[k] for k in ("TESTING", "DATA_DIR", "SECRET_KEY", "WTF_CSRF_ENABLED", "DATABASE_URL",
                                         "SEARCH_BACKGROUND")}
    app.extensions["kb_search"].close()
    restarted = create_app(config)
    instance.prepare(restarted)  # what kb serve does before serving
    return restarted


def _search(app, name, q, **kw):
    return search.search(search.index_for(app), viewer_for(app, name), q, **kw)


def test_deleted_index_directory_comes_back_with_check_repair(app, make_page, runner):
    import shutil

    make_page("Writing assessment", body="Teachers scored samples.")
    shutil.rmtree(os.path.join(app.config["DATA_DIR"], "index"))
    assert _search(app, "reader", "samples").total == 0
    result = runner.invoke(args=["check"])
    assert result.exit_code == 1 and "unusable" in result.output
    result = runner.invoke(args=["check", "--repair"])
    assert result.exit_code == 0, result.output
    assert [h.slug for h in _search(app, "reader", "samples").hits] == ["writing-assessment"]


def test_damaged_index_at_start_up_is_rebuilt(app, make_page):
    make_page("Induction routine", body="Every August the cohort meets.")
    root = os.path.join(app.config["DATA_DIR"], "index")
    build_dir = os.path.join(root, search.SearchIndex(root).current_build())
    for name in os.listdir(build_dir):
        with open(os.path.join(build_dir, name), "wb") as f:
            f.write(b"\x00garbage\xff" * 100)
    again = _restart(app)
    try:
        assert [h.slug for h in _search(again, "reader", "cohort").hits] == ["induction-routine"]
    finally:
        again.extensions["kb_search"].close()
        again.extensions["kb_db"].dispose()


def test_broken_pointer_at_start_up_is_rebuilt(app, make_page):
    make_page("Budget routine", body="The budget cycle.")
    with open(os.path.join(app.config["DATA_DIR"], "index", search.POINTER), "w") as f:
        f.write("../../etc")
    again = _restart(app)
    try:
        assert _search(again, "reader", "budget").total == 1
    finally:
        again.extensions["kb_search"].close()
        again.extensions["kb_db"].dispose()


def test_saved_page_is_findable_right_away(app, make_page):
    make_page("Principal supervisors", body="Instructional rounds with principal supervisors.")
    assert [h.slug for h in _search(app, "reader", "rounds").hits] == ["principal-supervisors"]
    make_page("Principal supervisors", body="Now about coaching.")
    assert _search(app, "reader", "rounds").total == 0
    assert _search(app, "reader", "coaching").total == 1


ODD_QUERIES = [
    '"', '"unbalanced', 'a "b', "((", ")", "(writing OR", "*", "**", "?", "-", "--", "-writing", "kind:", "year:",
    "year:abc", "year:2001-", "year:99999-1", "tag:", ":", "AND", "OR NOT", "title:x", "body:[a TO", "\\", "%", "_",
    "x" * 10_000, "writing " * 2000, "écriture évaluation", "Оценка письма", "写作评估", "評価", "تقييم الكتابة",
    "🙂🙂", "wr🙂iting", "\x00", "\ud800", "<script>alert(1)</script>", "' OR 1=1 --", "a*b*c", "writ*",
]


@pytest.mark.parametrize("q", ODD_QUERIES)
def test_odd_queries_all_get_an_answer(district, q):
    found = search.search(district, READER, q)
    assert found.total >= 0 and isinstance(found.facets, dict)
    search.suggest(district, READER, q)
    search.tried_before(district, READER, q)


def test_odd_queries_over_http(client, auth, make_page):
    make_page("Writing assessment", body="Teachers scored samples.")
    auth.login("reader")
    queries = [q for q in ODD_QUERIES[::3] if q != "\ud800"] + ["x" * 10_000, "🙂", '"(', "\x00"]
    for q in queries:
        for path in ("/search", "/api/search", "/api/suggest", "/api/tried-before"):
            response = client.get(path, query_string={"q": q, "title": q})
            assert response.status_code == 200, (path, q)


def test_api_search_answers_exactly_the_documented_shape(client, auth, make_page):
    make_page("Writing assessment", kind="initiative", tags=["writing"],
              fields={"status": "ended", "started": "2002", "ended": "2004", "ended_reason": "assumed-failed"},
              body="Teachers scored samples together.")
    make_page("Scoring routine", kind="routine", body="Teachers score writing samples.")
    auth.login("reader")
    data = client.get("/api/search?q=samples&limit=1").get_json()
    assert set(data) == {"total", "results", "facets", "suggestion"}
    assert data["total"] == 2 and len(data["results"]) == 1
    assert set(data["results"][0]) == {"slug", "title", "kind", "snippet", "score"}
    assert set(data["facets"]) == {"kind", "tag", "status", "decade"}
    assert data["facets"]["kind"] == {"initiative": 1, "routine": 1}
    assert client.get("/api/search?q=samples&kind=routine").get_json()["total"] == 1
    assert client.get("/api/search?q=samples&offset=1&limit=1").get_json()["results"][0]["slug"] != \
        data["results"][0]["slug"]
    assert client.get("/api/search?q=sampels").get_json()["suggestion"] == "samples"
    bad = client.get("/api/search?q=x&limit=many")
    assert bad.status_code == 400 and set(bad.get_json()) == {"error", "details"}
    assert client.get("/api/search?q=x&year=soon").status_code == 400
    suggestions = client.get("/api/suggest?q=scor").get_json()
    assert suggestions == {"suggestions": [{"slug": "scoring-routine", "title": "Scoring routine", "kind": "routine"}]}
    tried = client.get("/api/tried-before?title=A new writing assessment").get_json()
    assert tried["initiatives"][0]["slug"] == "writing-assessment"
    assert tried["initiatives"][0]["ended_reason"] == "assumed-failed"


def test_results_page_shows_snippets_facets_tried_before_and_did_you_mean(client, auth, make_page):
    make_page("Writing assessment", kind="initiative", tags=["writing"],
              fields={"status": "ended", "started": "2002", "ended": "2004", "ended_reason": "assumed-failed"},
              body="Teachers <b>scored</b> samples together.")
    make_page("Scoring routine", kind="routine", tags=["writing"], body="Teachers score writing samples.")
    auth.login("reader")
    html = client.get("/search?q=writing").get_data(as_text=True)
    assert "Tried before" in html and "assumed failed" in html
    assert "<mark>writing</mark>" in html and "<b>scored</b>" not in html
    assert 'href="/search?q=writing&amp;kind=routine"' in html  # a facet link narrows
    narrowed = client.get("/search?q=writing&kind=routine").get_data(as_text=True)
    assert "Scoring routine" in narrowed and "/wiki/writing-assessment" not in narrowed
    assert "Did you mean" in client.get("/search?q=writting").get_data(as_text=True)
    by_date = client.get("/search?q=writing&sort=updated").get_data(as_text=True).split('class="result-list"')[1]
    assert by_date.index("Scoring routine") < by_date.index("Writing assessment</a>")


def test_restricted_canary_never_leaks_over_http(client, auth, make_page):
    make_page("Canary handover", kind="handover", visibility="restricted", readers=["contributor"], tags=["canarytag"],
              body="zebraquokka personnel notes")
    make_page("Public page", body="ordinary notes")
    for name, sees in (("reader", False), ("contributor", True), ("curator", True)):
        auth.login(name)
        for path, marker in (("/search?q=zebraquokka", "canary-handover"), ("/search?q=notes", "canary-handover"),
                             ("/api/search?q=notes", "canary-handover"), ("/api/search?tag=canarytag", "canary"),
                             ("/api/suggest?q=canary", "canary-handover"), ("/search?q=zebraquoka", "zebraquokka"),
                             ("/api/search?q=zebraquoka", "zebraquokka"), ("/search?q=notes", "canarytag")):
            body = client.get(path).get_data(as_text=True)
            assert (marker in body) is sees, (name, path)
        auth.logout()


def test_under_the_server_a_save_returns_before_indexing_and_is_findable_within_two_seconds(app, runner):
    """With the per-process index worker on (as under kb serve), kick() only wakes it; the worker indexes."""
    import time

    from kb.search import whoosh as kb_search
    from kb.access import Viewer

    token = runner.invoke(args=["token", "create", "contributor"]).output.strip()
    app.config.update(SEARCH_WORKER=True, SEARCH_BACKGROUND=True)
    try:
        client = app.test_client()
        r = client.put("/api/pages/quokka-routine", json={"title": "Quokka routine", "body": "zebrafinch notes"},
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201
        worker = app.extensions["kb_search"].worker
        assert worker is not None and worker.alive()
        deadline = time.monotonic() + 2
        viewer = Viewer(None, "contributor", "contributor", anonymous_read=True)
        while kb_search.search(kb_search.index_for(app), viewer, "zebrafinch").total == 0:
            assert time.monotonic() < deadline, "a saved page must be findable within 2 seconds"
            time.sleep(0.02)
    finally:
        app.config.update(SEARCH_WORKER=False, SEARCH_BACKGROUND=False)
        worker = app.extensions["kb_search"].worker
        if worker is not None:
            worker.stop()


# --- The column files beside each segment -----------------------------------------------------------------------

from kb.search.whoosh import columns  # noqa: E402


def _column_files(ix) -> dict[str, str]:
    """Segment id -> column file path, for the segments of the current build."""
    folder = ix.build_dir(ix.current_build())
    return {seg.segment_id(): os.path.join(folder, columns.file_name(seg.segment_id()))
            for seg in ix.open()._segments()}


def _whoosh_bm25(view, term: str) -> dict[int, float]:
    """The combined score of a word computed the plain way: Whoosh's postings and field lengths, one by one."""
    import math
    reader = view.reader
    out: dict[int, float] = {}
    for fieldname, boost in search.BOOSTS.items():
        df = reader.doc_frequency(fieldname, term)
        if not df:
            continue
        idf = math.log(view.doc_count / (df + 1)) + 1.0
        avgdl = (reader.field_length(fieldname) or 0) / view.doc_count or 1.0
        m = reader.postings(fieldname, term)
        while m.is_active():
            d, w = m.id(), m.weight()
            length = reader.doc_field_length(d, fieldname, 0) or 0
            score = boost * idf * (1.2 + 1) * w / (w + 1.2 * (1 - 0.75) + 1.2 * 0.75 * length / avgdl)
            out[d] = out.get(d, 0.0) + score
            m.next()
    return out


def test_column_files_agree_with_whoosh_postings_positions_and_scores(db, district):
    indexed(db, district, {"title": "Writing writing assessment", "body": "Writing assessment " * 40,
                           "tags": ["writing"]})
    view = district.view()
    assert len(view.leaves) > 1  # several segments: the queue added small ones
    for leaf, offset, seg in view.leaves:
        for fieldname in columns.POSTING_FIELDS:
            inv = seg.fields[fieldname]
            terms = list(leaf.lexicon(fieldname))
            if inv is None:  # no document of this segment has the field
                assert terms == []
                continue
            assert [inv.term(i) for i in range(inv.count)] == terms
            for i, term in enumerate(terms):
                docs, tf = inv.postings(i)
                m = leaf.postings(fieldname, term)
                expected = []
                while m.is_active():
                    expected.append((m.id(), m.weight(),
                                     list(m.value_as("positions")) if fieldname in columns.POSITION_FIELDS else None))
                    m.next()
                assert [(d, w) for d, w, _ in expected] == list(zip(docs.tolist(), tf.tolist()))
                if fieldname in columns.POSITION_FIELDS:
                    starts, pos = inv.positions(i)
                    got = [pos[starts[k]:starts[k + 1]].tolist() for k in range(len(docs))]
                    assert got == [p for _, _, p in expected]
        for fieldname in columns.LENGTH_FIELDS:
            lengths = search.view.LENGTHS[seg.lengths[fieldname]]
            assert lengths.tolist() == [float(leaf.doc_field_length(d, fieldname, 0) or 0) for d in range(seg.n)]
    for term in ("write", "assess", "teacher", "spring", "lesson", "nowhere"):
        ids, scores = view.combined(term)
        plain = _whoosh_bm25(view, term)
        assert ids.tolist() == sorted(plain)
        assert scores.tolist() == pytest.approx([plain[d] for d in ids.tolist()], rel=1e-12)


def test_column_files_are_written_by_rebuild_and_follow_updates_and_deletes(db, index, tmp_path):
    ids = indexed(db, index, {"title": "Cohort routine", "body": "The August cohort meets."},
                  {"title": "Budget cycle", "body": "The budget cohort."})
    search.rebuild(db, str(tmp_path))
    files = _column_files(index)
    assert files and all(os.path.exists(p) for p in files.values())
    assert search.search(index, READER, "cohort").total == 2
    with db.writing() as s:
        s.get(Page, ids[0]).body = "Now about mentoring."
        s.get(Page, ids[0]).revision = 2
        s.add(IndexQueueEntry(page_id=ids[0]))
        s.get(Page, ids[1]).deleted_at = datetime(2024, 1, 1)
        s.add(IndexQueueEntry(page_id=ids[1]))
    assert search.process_queue(db, index) == 2
    after = _column_files(index)
    assert set(after) > set(files) and all(os.path.exists(p) for p in after.values())
    assert search.search(index, READER, "august").total == 0  # the old text is gone
    assert slugs(search.search(index, READER, "cohort")) == ["cohort-routine"]  # the deleted page is gone
    assert slugs(search.search(index, READER, '"about mentoring"')) == ["cohort-routine"]
    for i in range(search.MERGE_AT + 1):
        indexed(db, index, {"title": f"Extra {i}", "body": "mentoring"})
    assert search.merge_segments(index)
    merged = _column_files(index)
    assert all(os.path.exists(p) for p in merged.values())
    assert search.search(index, READER, "mentoring").total == search.MERGE_AT + 2
    columns.remove_unused(index.build_dir(index.current_build()), merged)
    folder = index.build_dir(index.current_build())
    assert sorted(n for n in os.listdir(folder) if n.startswith(columns.PREFIX)) == \
        sorted(os.path.basename(p) for p in merged.values())


@pytest.mark.parametrize("damage", ["delete", "truncate", "flip", "garbage"])
def test_missing_or_damaged_column_file_is_rebuilt_not_a_crash(db, district, damage):
    before = search.search(district, READER, '"writing assessment" kind:initiative')
    assert before.total == 2
    path = next(iter(_column_files(district).values()))
    if damage == "delete":
        os.remove(path)
    elif damage == "truncate":
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    elif damage == "flip":
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) - 20)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0xFF]))
    else:
        with open(path, "wb") as f:
            f.write(b"\x00garbage\xff" * 100)
    fresh = search.open_index(district.data_dir)  # another process, opening the index afresh
    try:
        again = search.search(fresh, READER, '"writing assessment" kind:initiative')
        assert (again.total, slugs(again), again.facets) == (before.total, slugs(before), before.facets)
        # ... and the file was written again, whole.
        columns.Columns(path, os.path.basename(path)[len(columns.PREFIX):-len(columns.SUFFIX)],
                        _doc_count(fresh, path))
    finally:
        fresh.close()


def _doc_count(ix, path: str) -> int:
    segment_id = os.path.basename(path)[len(columns.PREFIX):-len(columns.SUFFIX)]
    return next(seg.doc_count_all() for seg in ix.open()._segments() if seg.segment_id() == segment_id)


# --- Threads: one process answers several queries at once -------------------------------------------------------

def test_a_query_blocked_inside_scoring_does_not_hold_up_other_queries_or_saves(db, district, monkeypatch, caplog):
    import threading

    from kb.search.whoosh import queries

    entered, release = threading.Event(), threading.Event()
    original = queries._scores

    def scores(view, parsed):
        if "rubric" in parsed.words:
            entered.set()
            assert release.wait(10)
        return original(view, parsed)

    monkeypatch.setattr(queries, "_scores", scores)
    slow: list = []
    first = threading.Thread(target=lambda: slow.append(search.search(district, READER, "rubrics")))
    first.start()
    try:
        assert entered.wait(10)
        # While it waits: a save replaces a segment the blocked query reads, and other queries are answered.
        with db.writing() as s:
            page = s.scalar(select(Page).where(Page.slug == "scoring-writing-together"))
            page.body, page.revision = "Teachers score writing samples together each autumn.", 2
            s.add(IndexQueueEntry(page_id=page.id))
        assert search.process_queue(db, district) == 1
        other: list = []
        second = threading.Thread(target=lambda: other.append(search.search(district, READER, "autumn")))
        second.start()
        second.join(10)
        assert not second.is_alive() and slugs(other[0]) == ["scoring-writing-together"]
        assert first.is_alive()  # still inside scoring
    finally:
        release.set()
        first.join(10)
    assert slugs(slow[0]) == ["writing-assessment"] and "<mark>rubrics</mark>" in slow[0].hits[0].snippet
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]  # no failed read, no retry


# --- Whoosh's private internals: one test for each thing kb.search.whoosh.internals relies on -----------------

from kb.search.whoosh import internals  # noqa: E402


def test_whoosh_length_shortcuts_answer_as_whoosh_does(db, district):
    from whoosh.codec import whoosh3

    original = whoosh3.W3PerDocReader.doc_field_length.kb_original
    indexed(db, district, {"title": "Lengths", "body": "one two three " * 50, "tags": ["x"]})
    view = district.view()
    for leaf, _, seg in view.leaves:
        perdoc = internals.per_document_reader(leaf)
        for fieldname in search.SCHEMA.names():
            for d in range(seg.n):
                assert perdoc.doc_field_length(d, fieldname, 0) == original(perdoc, d, fieldname, 0)
        for fieldname in columns.LENGTH_FIELDS:
            raw = internals.raw_lengths(perdoc, fieldname)  # None: no document of the segment has the field
            decoded = [internals.WHOOSH_LENGTHS[b] or 0 for b in raw] if raw is not None else [0] * seg.n
            assert decoded == [original(perdoc, d, fieldname, 0) for d in range(seg.n)]
        assert internals.raw_lengths(perdoc, "kind") is None  # an ID field keeps no lengths


def test_compound_segment_files_are_read_from_the_map_without_a_copy():
    from whoosh.filedb.structfile import BufferFile

    data = bytes(range(256)) * 4
    mapped = BufferFile(memoryview(data))
    assert isinstance(mapped.file, internals.MappedFile)
    assert mapped.get(10, 5) == data[10:15]
    mapped.seek(1000)
    assert mapped.read(10) == data[1000:1010]
    assert BufferFile(b"plain bytes").read(5) == b"plain"  # anything else is read as Whoosh always did


def test_a_save_reopens_only_the_segment_readers_it_changed(db, district):
    indexed(db, district, {"title": "Steady", "body": "A segment of its own, left alone."})
    before = district.view()
    with db.writing() as s:
        page = s.scalar(select(Page).where(Page.slug == "scoring-writing-together"))
        page.revision = 2
        s.add(IndexQueueEntry(page_id=page.id))
    add_pages(db, {"title": "Another", "body": "new segment"})
    assert search.process_queue(db, district) == 2
    after = district.view()
    assert after is not before
    now = {id(leaf) for leaf, _, _ in after.leaves}
    kept = [leaf for leaf, _, _ in before.leaves if id(leaf) in now]
    dropped = [leaf for leaf, _, _ in before.leaves if id(leaf) not in now]
    assert len(kept) == 1 and len(dropped) == 1  # the segment with a deletion now is read afresh
    assert dropped[0].is_closed and not any(leaf.is_closed for leaf, _, _ in after.leaves)
    assert search.search(district, READER, "scoring").total == 1


def test_reading_postings_a_block_at_a_time_agrees_with_the_matcher(db, district):
    with db.writing() as s:  # a deletion, so that a segment's postings come wrapped in a filter
        page = s.scalar(select(Page).where(Page.slug == "new-writing-assessment"))
        page.revision = 2
        s.add(IndexQueueEntry(page_id=page.id))
    assert search.process_queue(db, district) == 1
    view = district.view()
    assert any(leaf.has_deletions() for leaf, _, _ in view.leaves)
    for leaf, _, _ in view.leaves:
        for fieldname in ("title", "body", "kind", "id"):
            positional = fieldname in columns.POSITION_FIELDS
            for term in leaf.lexicon(fieldname):
                ids, weights, values = internals.read_postings(leaf, fieldname, term, values=True)
                live = [k for k, d in enumerate(ids) if not leaf.is_deleted(d)]
                m = leaf.postings(fieldname, term)
                expected = []
                while m.is_active():
                    expected.append((m.id(), m.weight(), list(m.value_as("positions")) if positional else None))
                    m.next()
                got = [(ids[k], weights[k], internals.decode_positions(values[k]) if positional else None)
                       for k in live]
                assert got == expected


def test_an_index_built_under_the_old_directory_name_is_read_and_later_removed(db, index, tmp_path):
    indexed(db, index, {"title": "Old layout", "body": "superintendent"})
    root = tmp_path / "index"
    current = index.current_build()
    old_name = "g-" + current[len("b-"):]
    index.close()
    os.rename(root / current, root / old_name)
    (root / search.POINTER).write_text(old_name + "\n")
    fresh = search.open_index(str(tmp_path))
    try:
        assert slugs(search.search(fresh, READER, "superintendent")) == ["old-layout"]
        search.rebuild(db, str(tmp_path))
        search.rebuild(db, str(tmp_path))
        assert not [n for n in os.listdir(root) if n.startswith("g-")]
        assert slugs(search.search(fresh, READER, "superintendent")) == ["old-layout"]
    finally:
        fresh.close()


# --- The interface: the app searches through its backend, and only the backend knows Whoosh ------------------

def test_the_app_keeps_its_backend_current_and_answers_through_it(app):
    from kb import search as kb_search
    from kb.search.backend import SearchBackend

    backend: SearchBackend = kb_search.backend_for(app)
    reader = viewer_for(app, "reader")
    with app.extensions["kb_db"].writing() as s:
        page = Page(slug="cadre-routine", title="Cadre routine", kind="routine", body="The cadre meets monthly.",
                    revision=1)
        s.add(page)
        s.flush()
        backend.page_saved(s, page)
    assert backend.flush() >= 1
    found = backend.query(reader, "cadre", {"kind": "routine"}, limit=5)
    assert slugs(found) == ["cadre-routine"] and "<mark>cadre</mark>" in found.hits[0].snippet
    assert [s["slug"] for s in backend.suggest(reader, "cadr")] == ["cadre-routine"]
    assert backend.check().ok and backend.ready()
    with app.extensions["kb_db"].writing() as s:
        page = s.scalar(select(Page).where(Page.slug == "cadre-routine"))
        page.deleted_at = datetime(2024, 1, 1)
        backend.page_deleted(s, page)
    backend.flush()
    assert backend.query(reader, "cadre").total == 0
    assert backend.rebuild() == backend.check().pages


def test_only_the_whoosh_backend_imports_whoosh_and_search_has_no_import_circle():
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "kb"
    paths = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in root.rglob("*.py")}
    imports: dict[str, set[str]] = {}
    for name, path in paths.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # "from package import module" depends on the module, not on everything the package holds
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths else node.module
                          for a in node.names}
        imports[name] = found
    outside = [m for m, found in imports.items() if not m.startswith("kb.search.whoosh")
               and any(i == "whoosh" or i.startswith("whoosh.") for i in found)]
    assert outside == []
    graph = {m: {i for i in found if i in imports and i != m} for m, found in imports.items()
             if m.startswith("kb.search")}

    def reaches(start: str, goal: str, seen: set) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    circles = [m for m in graph if reaches(m, m, set())]
    assert circles == []


def test_highlight_escapes_page_text_and_marks_the_matches():
    from markupsafe import Markup

    from kb.render import highlight

    text = "Compare a < b & \"c\" in the rubric."
    marked = highlight(text, [(8, 9), (27, 33)])
    assert isinstance(marked, Markup)
    assert marked == 'Compare <mark>a</mark> &lt; b &amp; &quot;c&quot; in the <mark>rubric</mark>.'
    assert highlight("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"
