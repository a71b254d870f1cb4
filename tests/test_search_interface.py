"""Saves tell the search backend of each change through the SearchBackend interface, in their own transaction."""
from __future__ import annotations

from sqlalchemy import select

from kb import pages, search
from kb.models import Page

from conftest import viewer_for


class Recorder:
    """Stands in for the app's backend and records what it is told, and whether it was told inside a transaction."""

    def __init__(self):
        self.calls = []

    def _record(self, name, session, detail):
        self.calls.append((name, detail, session.in_transaction()))

    def page_saved(self, session, page):
        self._record("saved", session, page.slug)

    def pages_written(self, session, page_ids):
        self._record("written", session, len(page_ids))

    def page_deleted(self, session, page):
        self._record("deleted", session, page.slug)

    def page_renamed(self, session, page, old_slug):
        self._record("renamed", session, (old_slug, page.slug))


def test_every_change_to_a_page_reaches_the_backend_inside_its_transaction(app):
    db = app.extensions["kb_db"]
    assert db.search is search.backend_for(app)
    recorder = db.search = Recorder()
    admin = viewer_for(app, "admin")
    state = pages.PageState(title="Budget Calendar", body="Dates.")
    with db.writing() as s:
        pages.save_page(s, admin, None, state, None, "first")
    with db.writing() as s:
        page = s.scalar(select(Page).where(Page.slug == "budget-calendar"))
        pages.rename(s, admin, page, "Budget Year", page.revision)
    with db.writing() as s:
        page = s.scalar(select(Page).where(Page.slug == "budget-year"))
        pages.delete_page(s, admin, page)
        page_id = page.id
    with db.writing() as s:
        pages.restore_page(s, admin, page_id)
    assert [(name, detail) for name, detail, _ in recorder.calls] == [
        ("saved", "budget-calendar"), ("saved", "budget-year"), ("renamed", ("budget-calendar", "budget-year")),
        ("deleted", "budget-year"), ("saved", "budget-year")]
    assert all(inside for _, _, inside in recorder.calls)
