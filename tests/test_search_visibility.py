"""Search never shows what a reader may no longer see, even before the index has caught up.

A page made restricted, taken from a reader's `readers`, or deleted vanishes from that reader's results, snippets,
suggestions, "did you mean", facet counts, totals and "Tried before" as soon as the save is committed, while its
queue entry still waits (a paused worker: the saves below do not kick the index) and after a rebuild that ran
while the save was made. The app fixture runs no background worker (SEARCH_BACKGROUND=False).
"""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from kb import pages, search
from kb.models import IndexQueueEntry, Page
from kb.search.whoosh import maintenance
from conftest import viewer_for

TITLE = "Quokkaplan mentoring for principals"
SLUG = "quokkaplan-mentoring-for-principals"
INITIATIVE = {"kind": "initiative", "fields": {"status": "active", "started": "2009"}, "tags": ["mentoring"],
              "body": "Each new principal meets a quokkaplan mentor every week."}


def _save_without_indexing(app, slug: str, **changes) -> None:
    """Save through the domain layer as a curator and commit, without kicking the index (a paused worker)."""
    curator = viewer_for(app, "curator")
    with app.extensions["kb_db"].writing() as s:
        page = s.scalar(select(Page).where(Page.slug == slug))
        state = pages.PageState.of(page)
        for name, value in changes.items():
            setattr(state, name, value)
        pages.save_page(s, curator, slug, state, page.revision, "narrowed")


def _delete_without_indexing(app, slug: str) -> None:
    curator = viewer_for(app, "curator")
    with app.extensions["kb_db"].writing() as s:
        pages.delete_page(s, curator, s.scalar(select(Page).where(Page.slug == slug)))


def _queued(app) -> int:
    with app.extensions["kb_db"].reading() as s:
        return s.scalar(select(func.count()).select_from(IndexQueueEntry))


def _answers(app, name: str) -> dict:
    """Everything search tells this user about the page."""
    backend, viewer = search.backend_for(app), viewer_for(app, name)
    found = backend.query(viewer, "quokkaplan")
    mentoring = backend.query(viewer, "mentoring")
    return {
        "hits": [h.slug for h in found.hits],
        "total": found.total,
        "snippet": any("<mark>quokkaplan</mark>" in h.snippet for h in found.hits),
        "facets": found.facets["kind"],
        "mentoring total": mentoring.total,
        "mentoring facets": mentoring.facets,
        "tag": backend.query(viewer, "", filters={"tag": "mentoring"}).total,
        "did you mean": backend.query(viewer, "quokkaplam").suggestion,
        "suggest": [s["slug"] for s in backend.suggest(viewer, "quokkap")],
        "tried before": [h.slug for h in backend.tried_before(viewer, "Quokkaplan mentoring").initiatives],
    }


SEEN = {"hits": [SLUG], "total": 1, "snippet": True, "facets": {"initiative": 1}, "mentoring total": 2,
        "tag": 2, "did you mean": "quokkaplan", "suggest": [SLUG], "tried before": [SLUG]}
GONE = {"hits": [], "total": 0, "snippet": False, "facets": {}, "mentoring total": 1, "tag": 1,
        "did you mean": None, "suggest": [], "tried before": []}


def _check(answers: dict, expected: dict) -> None:
    got = {k: v for k, v in answers.items() if k != "mentoring facets"}
    assert got == expected
    kinds = answers["mentoring facets"]["kind"]
    assert kinds == ({"initiative": 1, "lesson": 1} if expected["total"] else {"lesson": 1})


NARROWINGS = {
    # name: (how the page starts, how it is narrowed, does a curator still find it)
    "made restricted": ({"visibility": "public"}, lambda app: _save_without_indexing(app, SLUG, visibility="restricted"),
                        True),
    "reader removed": ({"visibility": "restricted", "readers": ["reader"]},
                       lambda app: _save_without_indexing(app, SLUG, readers=["someone-else"]), True),
    "deleted": ({"visibility": "public"}, lambda app: _delete_without_indexing(app, SLUG), False),
}


@pytest.fixture
def start(app, make_page):
    def factory(**visibility):
        make_page(TITLE, **INITIATIVE, **visibility, as_user="curator")  # indexed: make_page kicks the index
        make_page("Mentoring lesson", kind="lesson", fields={"occurred": "2011", "maturity": "lesson",
                                                             "lesson": "Mentors need time."},
                  tags=["mentoring"], body="What mentoring taught us.")
        assert _queued(app) == 0
        _check(_answers(app, "reader"), SEEN)
        _check(_answers(app, "curator"), SEEN)

    return factory


@pytest.mark.parametrize("narrowing", list(NARROWINGS))
def test_a_narrowed_page_vanishes_before_the_index_catches_up(app, start, narrowing):
    before, narrow, curator_finds = NARROWINGS[narrowing]
    start(**before)
    narrow(app)
    assert _queued(app) == 1  # the worker has not done it: the index still holds the old visibility
    _check(_answers(app, "reader"), GONE)
    _check(_answers(app, "contributor"), GONE)
    _check(_answers(app, "curator"), SEEN if curator_finds else GONE)
    # Once the index has caught up, the same answers.
    search.backend_for(app).flush()
    assert _queued(app) == 0
    _check(_answers(app, "reader"), GONE)
    _check(_answers(app, "curator"), SEEN if curator_finds else GONE)


def test_a_page_narrowed_while_a_rebuild_runs_stays_hidden_after_the_swap(app, start, monkeypatch):
    start(visibility="public")
    real = maintenance._index_every_page

    def index_then_save(*args, **kwargs):
        out = real(*args, **kwargs)  # the rebuild has read every page: this save comes after its snapshot
        _save_without_indexing(app, SLUG, visibility="restricted")
        _check(_answers(app, "reader"), GONE)  # the old build, still in use
        return out

    monkeypatch.setattr(maintenance, "_index_every_page", index_then_save)
    search.backend_for(app).rebuild()
    assert _queued(app) == 1  # the rebuild cleared only the entries its build holds
    _check(_answers(app, "reader"), GONE)  # the new build has the page as public, the queue says otherwise
    _check(_answers(app, "curator"), SEEN)
    search.backend_for(app).flush()
    assert _queued(app) == 0
    _check(_answers(app, "reader"), GONE)
    _check(_answers(app, "curator"), SEEN)


def test_widening_shows_nothing_until_it_is_indexed(app, start):
    """The overlay only narrows: a page the index hides is not shown from the database's copy (stale text)."""
    start(visibility="restricted", readers=["reader"])
    _save_without_indexing(app, SLUG, readers=["reader", "contributor"])
    assert _answers(app, "contributor")["hits"] == []
    assert _answers(app, "reader")["hits"] == [SLUG]
    search.backend_for(app).flush()
    assert _answers(app, "contributor")["hits"] == [SLUG]


def test_over_http_a_restricted_page_is_gone_from_every_search_answer_at_once(app, client, auth, start):
    start(visibility="public")
    auth.login("reader")

    def everything() -> str:
        return "".join(client.get(path, query_string={"q": q, "title": q}).get_data(as_text=True)
                       for path in ("/search", "/api/search", "/api/suggest", "/api/tried-before")
                       for q in ("quokkaplan", "quokkap", "quokkaplam", "Quokkaplan mentoring"))

    assert SLUG in everything() and "Quokkaplan" in everything()
    _save_without_indexing(app, SLUG, visibility="restricted")
    assert _queued(app) == 1
    page = everything()
    assert SLUG not in page and TITLE not in page  # (the typed query itself is echoed back)
